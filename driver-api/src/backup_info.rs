//! Trove's `backup_info`: what `create_backup` and a restoring `prepare`
//! carry about a backup (`trove/backup/models.py`, `Backup`'s fields as the
//! taskmanager sends them). Decoded once, with the request; every key
//! Trove sends that no driver reads is kept as it came, so a request kept
//! on disk and read again is the same request.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `backup_info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The backup's id (Trove's UUID). Empty when Trove sent none; see
    /// [`BackupInfo::check_id`].
    #[serde(default)]
    pub id: String,
    /// An incremental backup's parent (`create_backup`); null or absent
    /// for a full backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Value>,
    /// The datastore's name (`create_backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<String>,
    /// The datastore version's name (`create_backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_version: Option<String>,
    /// The Swift container the request names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swift_container: Option<String>,
    /// The caller's Swift endpoint (its catalog's `object-store`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swift_url: Option<String>,
    /// Where the backup is (restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Its ETag when it was taken (restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Trove's other keys (`type`, `name`, `state`, ...), unread.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Why a backup's id cannot name its objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupIdError {
    /// `backup_info` came without one.
    #[error("backup_info has no id")]
    Missing,
    /// Not letters, digits, `-` and `_` only.
    #[error("backup id {0:?} is not a plain id")]
    NotPlain(String),
}

impl BackupInfo {
    /// Whether it is incremental (has a parent).
    pub fn is_incremental(&self) -> bool {
        self.parent.as_ref().is_some_and(|p| !p.is_null())
    }

    /// The container the request names, if it names one.
    pub fn swift_container(&self) -> Option<&str> {
        given(&self.swift_container)
    }

    /// The caller's Swift endpoint, if given.
    pub fn swift_url(&self) -> Option<&str> {
        given(&self.swift_url)
    }

    /// Where the backup is, if given.
    pub fn location(&self) -> Option<&str> {
        given(&self.location)
    }

    /// The recorded checksum, if given.
    pub fn checksum(&self) -> Option<&str> {
        given(&self.checksum)
    }

    /// The id, which names the objects of the backup: it must be there and
    /// plain (letters, digits, `-`, `_`).
    pub fn check_id(&self) -> Result<&str, BackupIdError> {
        if self.id.is_empty() {
            return Err(BackupIdError::Missing);
        }
        if !self
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(BackupIdError::NotPlain(self.id.clone()));
        }
        Ok(&self.id)
    }

    /// The manifest's name: `<id>.gz`, `<id>.gz.enc` when encrypted.
    pub fn object_name(&self, encrypted: bool) -> String {
        if encrypted {
            format!("{}.gz.enc", self.id)
        } else {
            format!("{}.gz", self.id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trove_s_map_is_read_and_written_back_the_same() {
        let sent = json!({"id": "b-1", "parent": null, "datastore": "k2hdkc", "datastore_version": "1.0.17",
            "swift_container": "", "swift_url": "http://swift/v1/AUTH_t", "type": "k2hdkc", "name": "nightly"});
        let info: BackupInfo = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(info.check_id(), Ok("b-1"));
        assert!(!info.is_incremental());
        assert_eq!(
            info.swift_container(),
            None,
            "an empty container is no container"
        );
        assert_eq!(info.swift_url(), Some("http://swift/v1/AUTH_t"));
        assert_eq!(info.other["name"], "nightly");
        let again: BackupInfo =
            serde_json::from_value(serde_json::to_value(&info).unwrap()).unwrap();
        assert_eq!(again, info);
        assert_eq!(info.object_name(true), "b-1.gz.enc");
    }

    #[test]
    fn an_id_must_be_there_and_plain() {
        let info = |v: Value| serde_json::from_value::<BackupInfo>(v).unwrap();
        assert!(info(json!({})).check_id().is_err());
        for bad in ["../x", "a/b", "", "a b"] {
            assert!(info(json!({ "id": bad })).check_id().is_err(), "{bad}");
        }
        assert!(info(json!({"id": "b1", "parent": {"id": "b0"}})).is_incremental());
        assert!(
            serde_json::from_value::<BackupInfo>(json!({"id": 5})).is_err(),
            "a typed field stays typed"
        );
    }
}
