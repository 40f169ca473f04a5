//! Backups of a node through Trove's backup API, and restores in prepare.
//!
//! - [`crypt`]: openssl-compatible encryption of the stream;
//! - [`stream`]: the stream itself (tar → gzip → encryption) and the
//!   chunk channels between it and the object store;
//! - [`take`] and [`restore`]: what the node does with Trove's
//!   `backup_info` (typed in `driver_api::BackupInfo`) (the k2hash archive in
//!   the k2hdkc container, `ar load` before the node serves), with
//!   [`tool`] (k2hlinetool on a private work directory).
//!
//! What is stored: `backup.json` ([`Meta`]) then `k2hdkc.ar`, the archive
//! `k2hlinetool`'s `ar put` writes of the node's K2HFILE, in one tar,
//! gzipped, encrypted when `backup_aes_cbc_key` is set, in Swift as
//! Trove lays backups out (segments `<id>_00000001`... and a manifest
//! `<id>.gz` or `<id>.gz.enc`).

use serde::{Deserialize, Serialize};

pub mod crypt;
pub mod restore;
pub mod stream;
pub mod take;
pub mod tool;

/// The stream's format version this agent writes and reads.
pub const FORMAT: u32 = 1;
/// The metadata entry, first in the tar.
pub const META_NAME: &str = "backup.json";
/// The k2hash archive entry.
pub const ARCHIVE_NAME: &str = "k2hdkc.ar";

/// `backup.json`: what a restore checks before it loads anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// [`FORMAT`].
    pub format: u32,
    /// Always `k2hdkc`.
    pub datastore: String,
    /// Trove's datastore version name.
    pub datastore_version: String,
    /// The backup's id.
    pub backup_id: String,
    /// The configuration group's cluster name, if set.
    pub cluster_name: Option<String>,
    /// The node's CUK.
    pub cuk: String,
    /// Bytes of the archive.
    pub archive_bytes: u64,
    /// When it was taken (seconds since the epoch, UTC).
    pub created: u64,
}

impl Meta {
    /// Whether this agent can restore it.
    pub fn check(&self) -> Result<(), MetaError> {
        if self.datastore != crate::paths::MANAGER {
            return Err(MetaError::Datastore(self.datastore.clone()));
        }
        if self.format == 0 || self.format > FORMAT {
            return Err(MetaError::Format(self.format));
        }
        Ok(())
    }
}

/// Why this agent cannot restore a backup it reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// Another datastore's backup.
    #[error("the backup is of datastore {0:?}, not {MANAGER}", MANAGER = crate::paths::MANAGER)]
    Datastore(String),
    /// A format this agent does not read.
    #[error("the backup's format {0} is not one this agent reads (1..={FORMAT})")]
    Format(u32),
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_of_another_datastore_or_a_newer_format_is_refused() {
        let mut m = Meta {
            format: FORMAT,
            datastore: "k2hdkc".into(),
            datastore_version: "1.0.17".into(),
            backup_id: "b".into(),
            cluster_name: None,
            cuk: "c".into(),
            archive_bytes: 0,
            created: 0,
        };
        assert!(m.check().is_ok());
        m.format = FORMAT + 1;
        assert!(m.check().unwrap_err().to_string().contains("format"));
        m.format = FORMAT;
        m.datastore = "redis".into();
        assert!(m.check().unwrap_err().to_string().contains("redis"));
    }
}
