//! The Trove guest API (`trove/guestagent/api.py`, API 1.0–1.3) as typed
//! requests: every method name, whether Trove calls or casts it, which
//! timeout Trove waits with, and typed arguments for the methods a driver
//! implements.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backup_info::BackupInfo;

/// How the control plane sends a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `call`: Trove waits for a reply.
    Call,
    /// `cast`: fire and forget.
    Cast,
}

/// Which of Trove's timeouts the caller waits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `agent_call_low_timeout` (default 15 s).
    Low,
    /// `agent_call_high_timeout` (default 60 s).
    High,
    /// `agent_replication_snapshot_timeout`.
    Snapshot,
    /// Nobody waits (a cast).
    None,
}

/// The newest guest API version this agent serves.
pub const API_LATEST_VERSION: (u32, u32) = (1, 3);

macro_rules! guest_methods {
    ($( $variant:ident => $name:literal, $kind:ident, $wait:ident; )*) => {
        /// Every method of Trove's guest API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum GuestMethod { $( #[doc = concat!("`", $name, "`")] $variant, )* }

        impl GuestMethod {
            /// Every method.
            pub const ALL: &'static [GuestMethod] = &[ $( GuestMethod::$variant, )* ];

            /// The wire name.
            pub fn name(self) -> &'static str {
                match self { $( GuestMethod::$variant => $name, )* }
            }

            /// Call or cast, as `trove/guestagent/api.py` sends it.
            pub fn kind(self) -> Kind {
                match self { $( GuestMethod::$variant => Kind::$kind, )* }
            }

            /// The timeout the control plane waits with.
            pub fn wait(self) -> Wait {
                match self { $( GuestMethod::$variant => Wait::$wait, )* }
            }

            /// Looks a wire name up.
            pub fn from_name(name: &str) -> Option<GuestMethod> {
                match name { $( $name => Some(GuestMethod::$variant), )* _ => None }
            }
        }
    };
}

guest_methods! {
    RpcPing => "rpc_ping", Call, Low;
    Prepare => "prepare", Cast, None;
    Restart => "restart", Call, High;
    StopDb => "stop_db", Call, Low;
    StartDbWithConfChanges => "start_db_with_conf_changes", Call, High;
    ResetConfiguration => "reset_configuration", Call, High;
    UpdateOverrides => "update_overrides", Call, High;
    ApplyOverrides => "apply_overrides", Call, High;
    GetFilesystemStats => "get_filesystem_stats", Call, Low;
    GetDiagnostics => "get_diagnostics", Call, Low;
    GetHwinfo => "get_hwinfo", Call, Low;
    MountVolume => "mount_volume", Call, Low;
    UnmountVolume => "unmount_volume", Call, Low;
    ResizeFs => "resize_fs", Call, High;
    CreateBackup => "create_backup", Cast, None;
    PreCreateBackup => "pre_create_backup", Call, High;
    PostCreateBackup => "post_create_backup", Call, High;
    PreUpgrade => "pre_upgrade", Call, High;
    PostUpgrade => "post_upgrade", Call, High;
    Upgrade => "upgrade", Cast, None;
    Rebuild => "rebuild", Cast, None;
    UpdateGuest => "update_guest", Call, High;
    ClusterComplete => "cluster_complete", Call, High;
    GuestLogList => "guest_log_list", Call, High;
    GuestLogAction => "guest_log_action", Call, High;
    ModuleList => "module_list", Call, High;
    ModuleApply => "module_apply", Call, High;
    ModuleRemove => "module_remove", Call, High;
    ChangePasswords => "change_passwords", Cast, None;
    UpdateAttributes => "update_attributes", Cast, None;
    CreateUser => "create_user", Cast, None;
    GetUser => "get_user", Call, Low;
    ListAccess => "list_access", Call, Low;
    GrantAccess => "grant_access", Call, Low;
    RevokeAccess => "revoke_access", Call, Low;
    ListUsers => "list_users", Call, High;
    DeleteUser => "delete_user", Cast, None;
    CreateDatabase => "create_database", Cast, None;
    ListDatabases => "list_databases", Call, Low;
    DeleteDatabase => "delete_database", Cast, None;
    GetRootPassword => "get_root_password", Call, High;
    EnableRoot => "enable_root", Call, High;
    EnableRootWithPassword => "enable_root_with_password", Call, High;
    DisableRoot => "disable_root", Call, Low;
    IsRootEnabled => "is_root_enabled", Call, Low;
    BackupRequiredForReplication => "backup_required_for_replication", Call, Low;
    GetReplicationSnapshot => "get_replication_snapshot", Call, Snapshot;
    AttachReplicationSlave => "attach_replication_slave", Cast, None;
    DetachReplica => "detach_replica", Call, High;
    GetReplicaContext => "get_replica_context", Call, High;
    AttachReplica => "attach_replica", Call, High;
    MakeReadOnly => "make_read_only", Call, High;
    EnableAsMaster => "enable_as_master", Call, High;
    GetTxnCount => "get_txn_count", Call, High;
    GetLastTxn => "get_last_txn", Call, High;
    GetLatestTxnId => "get_latest_txn_id", Call, High;
    WaitForTxn => "wait_for_txn", Call, High;
    CleanupSourceOnReplicaDetach => "cleanup_source_on_replica_detach", Call, High;
    DemoteReplicationMaster => "demote_replication_master", Call, High;
    SslShow => "ssl_show", Call, High;
    SslAction => "ssl_action", Call, High;
    SslRollback => "ssl_rollback", Call, High;
}

impl GuestMethod {
    /// Whether the method changes the datastore. Such methods run one at a
    /// time; read-only ones (ping, stats, lists) run beside them.
    pub fn mutates(self) -> bool {
        !matches!(
            self,
            GuestMethod::RpcPing
                | GuestMethod::GetFilesystemStats
                | GuestMethod::GetDiagnostics
                | GuestMethod::GetHwinfo
                | GuestMethod::GuestLogList
                | GuestMethod::ModuleList
                | GuestMethod::GetUser
                | GuestMethod::ListAccess
                | GuestMethod::ListUsers
                | GuestMethod::ListDatabases
                | GuestMethod::IsRootEnabled
                | GuestMethod::GetRootPassword
                | GuestMethod::BackupRequiredForReplication
                | GuestMethod::GetTxnCount
                | GuestMethod::GetLastTxn
                | GuestMethod::GetLatestTxnId
                | GuestMethod::GetReplicaContext
                | GuestMethod::SslShow
        )
    }
}

impl std::fmt::Display for GuestMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request could not be built from a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The version's major part is not 1 or its minor part is newer than
    /// [`API_LATEST_VERSION`].
    #[error("guest API version {0} is not supported (this agent serves 1.0 to 1.3)")]
    UnsupportedVersion(String),
    /// The arguments do not fit the method's signature.
    #[error("bad arguments for {method}: {reason}")]
    BadArguments {
        /// The method.
        method: &'static str,
        /// serde's explanation (names the field, never echoes values).
        reason: String,
    },
}

/// Checks an RPC version against what this agent serves. `None` means the
/// sender did not say (oslo then treats it as 1.0).
pub fn check_version(version: Option<&str>) -> Result<(), RequestError> {
    let Some(text) = version else { return Ok(()) };
    let bad = || RequestError::UnsupportedVersion(text.to_owned());
    let (major, minor) = text.split_once('.').unwrap_or((text, "0"));
    let major: u32 = major.parse().map_err(|_| bad())?;
    let minor: u32 = minor.parse().map_err(|_| bad())?;
    if major != API_LATEST_VERSION.0 || minor > API_LATEST_VERSION.1 {
        return Err(bad());
    }
    Ok(())
}

/// `prepare`: everything the control plane sends to set a guest up.
/// Serialize: the agent keeps it on disk until prepare ends.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrepareRequest {
    /// Flavor memory in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Packages to install (unused by container datastores).
    #[serde(default)]
    pub packages: Option<Value>,
    /// Initial databases.
    #[serde(default)]
    pub databases: Option<Value>,
    /// Initial users.
    #[serde(default)]
    pub users: Option<Value>,
    /// The data volume's device.
    #[serde(default)]
    pub device_path: Option<String>,
    /// Where to mount the data volume.
    #[serde(default)]
    pub mount_point: Option<String>,
    /// Restore from this backup.
    #[serde(default)]
    pub backup_info: Option<BackupInfo>,
    /// The rendered configuration template.
    #[serde(default)]
    pub config_contents: Option<String>,
    /// Root password (unused by K2HDKC).
    #[serde(default)]
    pub root_password: Option<String>,
    /// Configuration-group values.
    #[serde(default)]
    pub overrides: Option<Map<String, Value>>,
    /// Present when the instance is a cluster member.
    #[serde(default)]
    pub cluster_config: Option<Value>,
    /// Replication snapshot.
    #[serde(default)]
    pub snapshot: Option<Value>,
    /// Modules to apply.
    #[serde(default)]
    pub modules: Option<Value>,
    /// Datastore version name (API 1.1+).
    #[serde(default)]
    pub ds_version: Option<String>,
}

/// `get_filesystem_stats`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilesystemStatsRequest {
    /// Ignored by upstream too: the stats are of the datastore's mount point.
    #[serde(default)]
    pub fs_path: Option<String>,
}

/// `stop_db`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StopDbRequest {
    /// API 1.0 only: keep the service from starting at boot.
    #[serde(default)]
    pub do_not_start_on_reboot: bool,
}

/// `start_db_with_conf_changes`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StartWithConfRequest {
    /// The new configuration.
    #[serde(default)]
    pub config_contents: Option<String>,
    /// Datastore version (API 1.1+).
    #[serde(default)]
    pub ds_version: Option<String>,
}

/// `reset_configuration`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResetConfigurationRequest {
    /// `{"config_contents": ...}` as Trove sends it.
    #[serde(default)]
    pub configuration: Option<Value>,
}

/// `update_overrides`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpdateOverridesRequest {
    /// Configuration-group values.
    #[serde(default)]
    pub overrides: Map<String, Value>,
    /// Remove the overrides instead of setting them.
    #[serde(default)]
    pub remove: bool,
}

/// `apply_overrides`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApplyOverridesRequest {
    /// Configuration-group values to apply to the running service.
    #[serde(default)]
    pub overrides: Map<String, Value>,
}

/// `mount_volume` and `unmount_volume`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeRequest {
    /// The device.
    #[serde(default)]
    pub device_path: Option<String>,
    /// The mount point.
    #[serde(default)]
    pub mount_point: Option<String>,
    /// Upstream's manager accepts it for mount_volume.
    #[serde(default)]
    pub write_to_fstab: Option<bool>,
}

/// `resize_fs`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResizeFsRequest {
    /// The device.
    #[serde(default)]
    pub device_path: Option<String>,
    /// The mount point.
    #[serde(default)]
    pub mount_point: Option<String>,
    /// Grow while mounted (API 1.1+).
    #[serde(default)]
    pub online: bool,
}

/// `create_backup`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateBackupRequest {
    /// Trove's backup description (`id`, `location`, `type`, `checksum`,
    /// `datastore`, `datastore_version`, `parent`, ...).
    pub backup_info: BackupInfo,
}

/// `guest_log_action`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuestLogActionRequest {
    /// The log's name.
    pub log_name: String,
    /// Enable it.
    #[serde(default, deserialize_with = "truthy")]
    pub enable: bool,
    /// Disable it.
    #[serde(default, deserialize_with = "truthy")]
    pub disable: bool,
    /// Publish it to object storage.
    #[serde(default, deserialize_with = "truthy")]
    pub publish: bool,
    /// Discard published copies.
    #[serde(default, deserialize_with = "truthy")]
    pub discard: bool,
}

/// A flag of `guest_log_action` as upstream's guest reads it: Python's
/// truth. trove-api passes the request body's values as they came
/// (troveclient sends `1`), and `None` for a flag not given.
fn truthy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => false,
        Value::Bool(b) => b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    })
}

/// `rebuild`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RebuildRequest {
    /// Datastore version.
    #[serde(default)]
    pub ds_version: Option<String>,
    /// Configuration.
    #[serde(default)]
    pub config_contents: Option<String>,
    /// Configuration-group values.
    #[serde(default)]
    pub config_overrides: Option<Value>,
}

/// `upgrade` and `post_upgrade`. Serialize: the agent keeps an upgrade's
/// request on disk until it ends.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// What `pre_upgrade` returned, plus the new version.
    pub upgrade_info: UpgradeInfo,
}

/// Trove's `upgrade_info` (taskmanager `upgrade`): the dict `pre_upgrade`
/// returned with `datastore_version` set to the new version's name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UpgradeInfo {
    /// The datastore version to run (its name, e.g. `1.0.17`).
    pub datastore_version: String,
    /// The rest of what `pre_upgrade` returned.
    #[serde(flatten)]
    pub from_pre_upgrade: Map<String, Value>,
}

/// Deserializes decoded keyword arguments into a method's argument struct.
pub fn parse_args<T: DeserializeOwned>(
    method: GuestMethod,
    args: Map<String, Value>,
) -> Result<T, RequestError> {
    serde_json::from_value(Value::Object(args)).map_err(|e| RequestError::BadArguments {
        method: method.name(),
        reason: scrub_serde_message(&e.to_string()),
    })
}

// serde names the offending field, and for type errors quotes the value
// (`invalid type: string "s3cr3t"`); the value could be a secret.
pub(crate) fn scrub_serde_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quotes = false;
    for c in message.chars() {
        match c {
            '"' if !in_quotes => {
                in_quotes = true;
                out.push_str("\"…");
            }
            '"' => {
                in_quotes = false;
                out.push('"');
            }
            _ if in_quotes => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// As trove-api sends `log set --publish`: the flags not given are
    /// `None`, the others as troveclient sent them.
    #[test]
    fn a_log_action_takes_null_flags_as_false() {
        let r: GuestLogActionRequest = serde_json::from_value(json!({
            "log_name": "chmpx", "enable": null, "disable": null, "publish": true, "discard": null
        }))
        .unwrap();
        assert_eq!(
            r,
            GuestLogActionRequest {
                log_name: "chmpx".into(),
                publish: true,
                ..Default::default()
            }
        );
        // troveclient sends 1; Python's truth decides.
        let r: GuestLogActionRequest = serde_json::from_value(json!({
            "log_name": "chmpx", "publish": 1, "discard": 0, "enable": false
        }))
        .unwrap();
        assert!(r.publish && !r.discard && !r.enable);
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        for m in GuestMethod::ALL {
            assert_eq!(GuestMethod::from_name(m.name()), Some(*m));
        }
        assert_eq!(GuestMethod::from_name("drop_everything"), None);
    }

    #[test]
    fn kinds_follow_trove_api() {
        assert_eq!(GuestMethod::Prepare.kind(), Kind::Cast);
        assert_eq!(GuestMethod::CreateBackup.kind(), Kind::Cast);
        assert_eq!(GuestMethod::RpcPing.kind(), Kind::Call);
        assert_eq!(GuestMethod::RpcPing.wait(), Wait::Low);
        assert!(!GuestMethod::RpcPing.mutates());
        assert!(GuestMethod::Restart.mutates());
    }

    #[test]
    fn versions() {
        assert!(check_version(None).is_ok());
        for v in ["1.0", "1.1", "1.3", "1"] {
            assert!(check_version(Some(v)).is_ok(), "{v}");
        }
        for v in ["1.4", "2.0", "x", "1.a", ""] {
            assert!(check_version(Some(v)).is_err(), "{v}");
        }
    }

    #[test]
    fn prepare_args_parse_like_trove_sends_them() {
        let args = json!({
            "packages": [], "databases": [], "memory_mb": 2048, "users": [],
            "device_path": "/dev/vdb", "mount_point": "/var/lib/k2hdkc",
            "backup_info": null, "config_contents": "x", "root_password": null,
            "overrides": {"cluster-name": "c1"}, "cluster_config": null,
            "snapshot": null, "modules": null, "ds_version": "1.0.17"
        });
        let Value::Object(map) = args else {
            unreachable!()
        };
        let p: PrepareRequest = parse_args(GuestMethod::Prepare, map).unwrap();
        assert_eq!(p.memory_mb, Some(2048));
        assert_eq!(p.overrides.unwrap()["cluster-name"], "c1");
    }

    #[test]
    fn wrong_types_name_the_field_but_not_the_value() {
        let Value::Object(map) = json!({"overrides": "s3cr3t", "remove": false}) else {
            unreachable!()
        };
        let err =
            parse_args::<UpdateOverridesRequest>(GuestMethod::UpdateOverrides, map).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("update_overrides"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn unknown_arguments_are_refused() {
        let Value::Object(map) = json!({"fs_path": null, "bogus": 1}) else {
            unreachable!()
        };
        let err =
            parse_args::<FilesystemStatsRequest>(GuestMethod::GetFilesystemStats, map).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
