//! A guest API request, decoded once where the envelope is: the method
//! with its typed arguments. The agent matches on this; nothing after the
//! boundary reads a raw argument map of a method Trove defines.

use serde_json::{Map, Value};

use crate::request::{
    parse_args, ApplyOverridesRequest, CreateBackupRequest, FilesystemStatsRequest,
    GuestLogActionRequest, GuestMethod, PrepareRequest, RebuildRequest, RequestError,
    ResetConfigurationRequest, ResizeFsRequest, StartWithConfRequest, StopDbRequest,
    UpdateOverridesRequest, UpgradeRequest, VolumeRequest,
};

/// One request of Trove's guest API.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestRequest {
    /// `rpc_ping`.
    RpcPing,
    /// `get_filesystem_stats`.
    GetFilesystemStats(FilesystemStatsRequest),
    /// `get_diagnostics`.
    GetDiagnostics,
    /// `get_hwinfo`.
    GetHwinfo,
    /// `prepare`.
    Prepare(Box<PrepareRequest>),
    /// `restart`.
    Restart,
    /// `stop_db`.
    StopDb(StopDbRequest),
    /// `start_db_with_conf_changes`.
    StartDbWithConfChanges(StartWithConfRequest),
    /// `reset_configuration`.
    ResetConfiguration(ResetConfigurationRequest),
    /// `update_overrides`.
    UpdateOverrides(UpdateOverridesRequest),
    /// `apply_overrides`.
    ApplyOverrides(ApplyOverridesRequest),
    /// `create_backup`.
    CreateBackup(CreateBackupRequest),
    /// `cluster_complete`.
    ClusterComplete,
    /// `pre_upgrade`.
    PreUpgrade,
    /// `upgrade`.
    Upgrade(UpgradeRequest),
    /// `post_upgrade`.
    PostUpgrade(UpgradeRequest),
    /// `rebuild`.
    Rebuild(RebuildRequest),
    /// `guest_log_list`.
    GuestLogList,
    /// `guest_log_action`.
    GuestLogAction(GuestLogActionRequest),
    /// `mount_volume`.
    MountVolume(VolumeRequest),
    /// `unmount_volume`.
    UnmountVolume(VolumeRequest),
    /// `resize_fs`.
    ResizeFs(ResizeFsRequest),
    /// Every other method of the guest API (users, databases, root,
    /// replication, modules, SSL, `update_guest`): no datastore here has
    /// them, so their arguments are handed on as they came, for the
    /// driver's answer (by default `DatastoreOperationNotSupported`).
    Other(GuestMethod, Map<String, Value>),
}

impl GuestRequest {
    /// Decodes `args` as `method`'s arguments. Methods whose arguments no
    /// one reads take whatever came, as upstream's do.
    pub fn decode(method: GuestMethod, args: Map<String, Value>) -> Result<Self, RequestError> {
        use GuestMethod as M;
        use GuestRequest as R;
        Ok(match method {
            M::RpcPing => R::RpcPing,
            M::GetFilesystemStats => R::GetFilesystemStats(parse_args(method, args)?),
            M::GetDiagnostics => R::GetDiagnostics,
            M::GetHwinfo => R::GetHwinfo,
            M::Prepare => R::Prepare(Box::new(parse_args(method, args)?)),
            M::Restart => R::Restart,
            M::StopDb => R::StopDb(parse_args(method, args)?),
            M::StartDbWithConfChanges => R::StartDbWithConfChanges(parse_args(method, args)?),
            M::ResetConfiguration => R::ResetConfiguration(parse_args(method, args)?),
            M::UpdateOverrides => R::UpdateOverrides(parse_args(method, args)?),
            M::ApplyOverrides => R::ApplyOverrides(parse_args(method, args)?),
            M::CreateBackup => R::CreateBackup(parse_args(method, args)?),
            M::ClusterComplete => R::ClusterComplete,
            M::PreUpgrade => R::PreUpgrade,
            M::Upgrade => R::Upgrade(parse_args(method, args)?),
            M::PostUpgrade => R::PostUpgrade(parse_args(method, args)?),
            M::Rebuild => R::Rebuild(parse_args(method, args)?),
            M::GuestLogList => R::GuestLogList,
            M::GuestLogAction => R::GuestLogAction(parse_args(method, args)?),
            M::MountVolume => R::MountVolume(parse_args(method, args)?),
            M::UnmountVolume => R::UnmountVolume(parse_args(method, args)?),
            M::ResizeFs => R::ResizeFs(parse_args(method, args)?),
            other => R::Other(other, args),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn each_method_gets_its_typed_arguments() {
        let r = GuestRequest::decode(
            GuestMethod::StopDb,
            args(json!({"do_not_start_on_reboot": true})),
        );
        assert!(
            matches!(
                r,
                Ok(GuestRequest::StopDb(StopDbRequest {
                    do_not_start_on_reboot: true,
                    ..
                }))
            ),
            "{r:?}"
        );
        let r = GuestRequest::decode(
            GuestMethod::Prepare,
            args(json!({"config_contents": "x", "backup_info": {"id": "b1", "swift_url": "http://s/v1/AUTH_t"}})),
        )
        .unwrap();
        let GuestRequest::Prepare(p) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            p.backup_info.unwrap().swift_url(),
            Some("http://s/v1/AUTH_t")
        );
        assert_eq!(
            GuestRequest::decode(GuestMethod::RpcPing, args(json!({"any": 1}))),
            Ok(GuestRequest::RpcPing)
        );
        assert!(matches!(
            GuestRequest::decode(GuestMethod::ListUsers, args(json!({"limit": 5}))),
            Ok(GuestRequest::Other(GuestMethod::ListUsers, m)) if m["limit"] == 5
        ));
    }

    #[test]
    fn bad_arguments_are_refused_at_the_boundary() {
        let e = GuestRequest::decode(
            GuestMethod::StopDb,
            args(json!({"do_not_start_on_reboot": "s3cret"})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("stop_db"), "{e}");
        assert!(
            !e.to_string().contains("s3cret"),
            "values never reach the message: {e}"
        );
        assert!(GuestRequest::decode(GuestMethod::Prepare, args(json!({"no_such": 1}))).is_err());
    }

    /// Trove's taskmanager: `pre_upgrade`'s dict with `datastore_version`.
    #[test]
    fn upgrade_takes_the_new_version_and_keeps_the_rest() {
        let r = GuestRequest::decode(
            GuestMethod::Upgrade,
            args(json!({"upgrade_info": {"datastore_version": "1.0.17", "from": "x"}})),
        )
        .unwrap();
        let GuestRequest::Upgrade(u) = r else {
            panic!("{r:?}")
        };
        assert_eq!(u.upgrade_info.datastore_version, "1.0.17");
        assert_eq!(u.upgrade_info.from_pre_upgrade["from"], "x");
        let e = GuestRequest::decode(GuestMethod::Upgrade, args(json!({"upgrade_info": {}})))
            .unwrap_err();
        assert!(e.to_string().contains("datastore_version"), "{e}");
    }
}
