//! The K2HDKC datastore driver: what the agent calls for `datastore_manager
//! = k2hdkc`. Node lifecycle (K2HR3 registration, the k2hdkc.ini, the
//! server container, chmpx health), clusters and backups arrive here in
//! later steps; until a method is implemented the trait's default answers
//! the caller with `DatastoreOperationNotSupported`.

use async_trait::async_trait;
use driver_api::{Datastore, ServiceStatus};

pub mod chmpx;
pub mod ini;
pub mod overrides;

/// The `datastore_manager` name Trove uses for K2HDKC.
pub const MANAGER: &str = "k2hdkc";

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
    "api_strategy",
    "taskmanager_strategy",
    "guestagent_strategy",
    "default_password_length",
    "ctrl_port",
    "docker_image",
    "backup_docker_image",
    "guest_datastore_manager",
];

/// Where the data volume is mounted unless `[k2hdkc] mount_point` says.
pub const DEFAULT_MOUNT_POINT: &str = "/var/lib/antpickax/k2hdkc";

/// The K2HDKC driver.
#[derive(Debug, Default)]
pub struct K2hdkc {}

impl K2hdkc {
    /// A driver with nothing prepared yet.
    pub fn new() -> Self {
        Self {}
    }
}

#[async_trait]
impl Datastore for K2hdkc {
    fn manager(&self) -> &'static str {
        MANAGER
    }

    async fn status(&self) -> ServiceStatus {
        // No server is managed yet, so nothing can be said about it.
        ServiceStatus::Unknown
    }
}
