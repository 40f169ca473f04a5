//! The K2HDKC datastore driver: what the agent calls for `datastore_manager
//! = k2hdkc`. A method it does not implement gets the trait's default
//! answer, `DatastoreOperationNotSupported`.
//!
//! The map, from the top down (a module imports only from below it):
//!
//! | module      | what                                                       |
//! |-------------|------------------------------------------------------------|
//! | `lib.rs`    | the `Datastore` trait for K2HDKC: prepare (with a restore), status, stop, restart, overrides, backups, the ring methods |
//! | `cluster`   | the contract of the `k2hdkc_ring_*` guest methods Trove's cluster taskmanager calls |
//! | `node/`     | one server node: prepare, lifecycle, status, waits, containers, files, saved state |
//! | `backup/`   | backups: take, stream (tar, gzip, AES), restore, k2hlinetool |
//! | `ring/`     | this node's place in the ring: view, join, leave, merge, rejoin |
//! | `watcher`   | the K2HR3 role watcher that keeps the ini converged        |
//! | `slave`     | the slave ini an application host's chmpx runs with        |
//! | `chmpx`     | chmpx's control port: commands and their answers           |
//! | `k2hr3`     | K2HR3's REST API and EXTDATA                               |
//! | `ini`, `overrides`, `settings` | the ini's facts, the configuration parameters, the `[k2hdkc]` settings |
//! | `paths`     | the names every part shares (container directories, the ini's name) |
//! | `version`   | datastore versions and the upgrades a node takes            |
//! | `limits`    | RLIMIT_MSGQUEUE for the containers, and running without it where the engine may not raise it |

use std::sync::Arc;

use async_trait::async_trait;
use driver_api::host::Containers;
use driver_api::request::{
    ApplyOverridesRequest, CreateBackupRequest, PrepareRequest, ResetConfigurationRequest,
    StartWithConfRequest, StopDbRequest, UpdateOverridesRequest, UpgradeRequest,
};
use driver_api::ring::RingRequest;
use driver_api::{BackupAccess, BackupOutcome, Datastore, DatastoreError, ServiceStatus};

pub mod backup;
pub mod chmpx;
pub mod cluster;
pub mod ini;
pub mod k2hr3;
mod limits;
pub mod metrics;
pub mod node;
pub mod overrides;
pub mod paths;
pub mod ring;
pub mod settings;
pub mod slave;
#[cfg(test)]
mod testing;
pub mod version;
pub mod watcher;

pub use paths::MANAGER;

/// The `[k2hdkc]` option group: what Trove and the agent know (the
/// Trove-side plugin registers the same names). A key outside it is a typo.
pub const OPTIONS: &[&str] = &[
    "database_service_uname",
    "database_service_uid",
    "database_service_gid",
    "icmp",
    "tcp_ports",
    "udp_ports",
    "backup_strategy",
    "replication_strategy",
    "replication_namespace",
    "mount_point",
    "root_on_create",
    "usage_timeout",
    "volume_support",
    "device_path",
    "root_controller",
    "ignore_users",
    "cluster_support",
    "min_cluster_member_count",
    "cluster_merge_timeout",
    "cluster_merge_rearm_after",
    "cluster_member_timeout",
    "api_strategy",
    "taskmanager_strategy",
    "guestagent_strategy",
    "k2hr3_provision_url",
    "k2hr3_provision_ca_file",
    "default_password_length",
    "ctrl_port",
    "docker_image",
    "backup_docker_image",
    "guest_datastore_manager",
    // Trove's own, read by the agent's guest log API:
    "guest_log_exposed_logs",
    // The agent's Prometheus endpoint:
    "metrics_listen",
    // Agent options (not in the old Trove patch):
    "config_dir",
    "run_dir",
    "k2hr3_api_url",
    "k2hr3_role",
    "k2hr3_role_token",
    "k2hr3_poll_interval_ms",
    "mq_msg_max",
    "msgqueue_bytes",
    "startup_wait",
    "network_mode",
    "docker_registry_username",
    "docker_registry_password",
];

/// Whether a prepare is a cluster member's: Trove's `cluster_config`
/// names the cluster (`id`). A lone instance whose K2HR3 objects the
/// plugin provisioned gets a `cluster_config` with only `extdata_url`.
fn is_cluster_member(cluster_config: Option<&serde_json::Value>) -> bool {
    cluster_config
        .and_then(|c| c.get("id"))
        .is_some_and(|id| id.as_str().is_some_and(|s| !s.is_empty()))
}

/// The configuration-group values a member prepares with. A cluster whose
/// K2HR3 objects the plugin provisioned sends the members' EXTDATA URL in
/// `cluster_config` (`extdata_url`), never in the group, which the tenant
/// reads: it holds the server role's token. An `extdata-url` the group
/// sets itself wins.
fn with_provisioned_extdata<'a>(
    overrides: Option<&'a serde_json::Map<String, serde_json::Value>>,
    cluster_config: Option<&serde_json::Value>,
) -> Option<std::borrow::Cow<'a, serde_json::Map<String, serde_json::Value>>> {
    let url = cluster_config
        .and_then(|c| c.get("extdata_url"))
        .and_then(|u| u.as_str());
    let set = overrides.is_some_and(|o| {
        o.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("extdata-url") && !v.is_null())
    });
    match (url, overrides) {
        (Some(url), o) if !set => {
            let mut map = o.cloned().unwrap_or_default();
            map.insert("extdata-url".into(), url.into());
            Some(std::borrow::Cow::Owned(map))
        }
        (_, o) => o.map(std::borrow::Cow::Borrowed),
    }
}

/// Where the data volume is mounted unless `[k2hdkc] mount_point` says.
pub const DEFAULT_MOUNT_POINT: &str = "/var/lib/antpickax/k2hdkc";

/// The K2HDKC driver.
pub struct K2hdkc {
    node: node::Node,
    /// Serializes the cluster's ring steps on this node.
    ring_steps: tokio::sync::Mutex<()>,
}

impl K2hdkc {
    /// The driver for this guest; `containers` is the host's engine.
    pub fn new(
        ctx: &settings::DriverContext,
        containers: Arc<dyn Containers>,
    ) -> Result<Self, Vec<String>> {
        let settings =
            settings::Settings::new(ctx, std::path::Path::new(settings::CLOUD_INIT_INSTANCE_ID))?;
        let node = node::Node::new(settings, containers);
        // The image it runs: an upgrade saved earlier wins over the config's.
        tracing::info!(cuk = %node.cuk(), image = %node.image(), "K2HDKC driver ready");
        Ok(Self {
            node,
            ring_steps: Default::default(),
        })
    }
}

#[async_trait]
impl Datastore for K2hdkc {
    fn manager(&self) -> &'static str {
        MANAGER
    }

    async fn status(&self) -> ServiceStatus {
        self.node.status(true).await
    }

    /// Nothing to hand over: the data volume and the ini stay.
    async fn pre_upgrade(&self) -> driver_api::Result<serde_json::Value> {
        Ok(serde_json::json!({}))
    }

    async fn upgrade(&self, request: &UpgradeRequest) -> driver_api::Result<()> {
        self.node
            .upgrade(&request.upgrade_info.datastore_version)
            .await
    }

    fn guest_logs(&self) -> Vec<driver_api::GuestLogFile> {
        self.node.guest_logs()
    }

    async fn metric_samples(&self) -> Vec<driver_api::MetricSample> {
        self.node.metric_samples().await
    }

    async fn guest_log_enabled(&self, name: &str) -> driver_api::Result<bool> {
        self.node.guest_log_enabled(name).await
    }

    async fn set_guest_log(&self, name: &str, enable: bool) -> driver_api::Result<()> {
        self.node.set_guest_log(name, enable).await
    }

    async fn refresh_guest_log(&self, name: &str) -> driver_api::Result<()> {
        self.node.refresh_guest_log(name).await
    }

    async fn resume(&self) {
        backup::tool::remove_leftover_backups(&self.node.settings().data_dir);
        self.node.resume().await
    }

    async fn prepare(
        &self,
        request: &PrepareRequest,
        backups: Option<BackupAccess<'_>>,
    ) -> driver_api::Result<ServiceStatus> {
        let restore_info = request.backup_info.as_ref();
        if let Some(info) = restore_info {
            info.check_id()
                .map_err(|e| DatastoreError::BadRequest(e.to_string()))?;
        }
        let restore = match (restore_info, backups) {
            (Some(info), Some(access)) => Some(node::Restore { info, access }),
            (Some(info), None) => {
                return Err(DatastoreError::failed(
                    format!("restore backup {}", info.id),
                    "no object store for it (backup_info has no swift_url, or the request carried no token)",
                ))
            }
            (None, _) => None,
        };
        let member = is_cluster_member(request.cluster_config.as_ref());
        // The size of the ring a member joins (our plugin sends it).
        let ring_size = request
            .cluster_config
            .as_ref()
            .and_then(|c| c.get("member_count"))
            .and_then(|n| n.as_u64())
            .map(|n| n as usize);
        let overrides =
            with_provisioned_extdata(request.overrides.as_ref(), request.cluster_config.as_ref());
        self.node
            .prepare(
                request.config_contents.as_deref(),
                overrides.as_deref(),
                member,
                ring_size,
                restore,
            )
            .await?;
        // A cluster member waits for cluster_complete before it reports
        // healthy: the taskmanager puts it into the ring first.
        Ok(if member {
            ServiceStatus::InstanceReady
        } else {
            ServiceStatus::Healthy
        })
    }

    async fn custom_method(
        &self,
        name: &str,
        args: &serde_json::Map<String, serde_json::Value>,
    ) -> driver_api::Result<serde_json::Value> {
        // Decoded here, where the custom method arrives: the ring steps
        // take typed requests.
        let request = RingRequest::decode(name, args)
            .ok_or_else(|| DatastoreError::NoSuchMethod(name.to_owned()))?
            .map_err(|e| DatastoreError::BadRequest(e.to_string()))?;
        // One ring step at a time on a node: they restart containers and
        // read what the previous one left.
        let _one = self.ring_steps.lock().await;
        cluster::handle(&self.node, request).await
    }

    async fn create_backup(
        &self,
        request: &CreateBackupRequest,
        backups: BackupAccess<'_>,
    ) -> driver_api::Result<BackupOutcome> {
        let info = &request.backup_info;
        info.check_id()
            .map_err(|e| DatastoreError::BadRequest(e.to_string()))?;
        backup::take::take(&self.node, info, backups).await
    }

    async fn restart(&self) -> driver_api::Result<()> {
        self.node.restart().await
    }

    async fn stop_db(&self, request: &StopDbRequest) -> driver_api::Result<()> {
        self.node.stop(request.do_not_start_on_reboot).await
    }

    async fn start_db_with_conf_changes(
        &self,
        request: &StartWithConfRequest,
    ) -> driver_api::Result<()> {
        if let Some(text) = &request.config_contents {
            let wanted = overrides::Parameters::from_config_contents(text)
                .map_err(|p| DatastoreError::BadRequest(p.join("; ")))?;
            self.node.update_parameters(&wanted.to_map(), false).await?;
        }
        self.node.restart().await
    }

    async fn update_overrides(&self, request: &UpdateOverridesRequest) -> driver_api::Result<()> {
        self.node
            .update_parameters(&request.overrides, request.remove)
            .await
    }

    async fn apply_overrides(&self, request: &ApplyOverridesRequest) -> driver_api::Result<()> {
        self.node.update_parameters(&request.overrides, false).await
    }

    async fn reset_configuration(
        &self,
        request: &ResetConfigurationRequest,
    ) -> driver_api::Result<()> {
        let text = request
            .configuration
            .as_ref()
            .and_then(|c| c.get("config_contents"))
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let wanted = overrides::Parameters::from_config_contents(text)
            .map_err(|p| DatastoreError::BadRequest(p.join("; ")))?;
        self.node.update_parameters(&wanted.to_map(), false).await
    }

    async fn cluster_complete(&self) -> driver_api::Result<ServiceStatus> {
        Ok(self.node.status(true).await)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use super::{is_cluster_member, with_provisioned_extdata};

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_provisioned_extdata_url_fills_a_group_that_names_none() {
        let group = map(json!({"cluster-name": "c1"}));
        let cc = json!({"id": "x", "extdata_url": "https://k2hr3/v1/extdata/trove/p"});
        let got = with_provisioned_extdata(Some(&group), Some(&cc)).unwrap();
        assert_eq!(got["extdata-url"], "https://k2hr3/v1/extdata/trove/p");
        assert_eq!(got["cluster-name"], "c1");
        // No group at all: the URL alone.
        let got = with_provisioned_extdata(None, Some(&cc)).unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn the_groups_own_extdata_url_wins_and_nothing_is_added_without_one() {
        let group = map(json!({"extdata-url": "https://k2hr3/v1/extdata/trove/own"}));
        let cc = json!({"id": "x", "extdata_url": "https://k2hr3/v1/extdata/trove/p"});
        let got = with_provisioned_extdata(Some(&group), Some(&cc)).unwrap();
        assert_eq!(got["extdata-url"], "https://k2hr3/v1/extdata/trove/own");
        let plain = json!({"id": "x", "member_count": 3});
        let got = with_provisioned_extdata(Some(&group), Some(&plain)).unwrap();
        assert_eq!(*got, group);
        assert!(with_provisioned_extdata(None, Some(&plain)).is_none());
        assert!(with_provisioned_extdata(None, None).is_none());
    }

    #[test]
    fn only_a_cluster_config_that_names_a_cluster_makes_a_member() {
        assert!(is_cluster_member(Some(&json!({"id": "c", "instance_type": "member"}))));
        // A lone instance's provisioned URL, Trove's null, nothing.
        assert!(!is_cluster_member(Some(&json!({"extdata_url": "https://k2hr3/v1/extdata/x"}))));
        assert!(!is_cluster_member(Some(&json!({"id": null}))));
        assert!(!is_cluster_member(Some(&Value::Null)));
        assert!(!is_cluster_member(None));
    }
}
