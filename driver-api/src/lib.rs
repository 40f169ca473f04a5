//! What a Trove datastore driver is, with no I/O.
//!
//! The agent binary speaks Trove's RPC and drives one [`Datastore`]; a
//! datastore crate (K2HDKC) implements it. This crate holds that trait and
//! the wire types both sides share:
//!
//! - [`envelope`]: the oslo.messaging 2.0 envelope, calls, casts, replies;
//! - [`secure`]: Trove's secure-RPC codec (AES-256-CBC under the instance key);
//! - [`exception`]: failures as Trove exception classes;
//! - [`request`]: the guest API's methods and typed arguments;
//! - [`guest_request`]: a request decoded once, method and arguments;
//! - [`ring`]: the ring methods of the K2HDKC cluster strategy, typed;
//! - [`status`]: Trove's service statuses;
//! - [`secret`]: a value `Debug` and `Display` mask;
//! - [`host`]: what a driver asks of the host (containers);
//! - [`storage`]: what a driver asks of object storage (backups);
//! - [`backup_info`]: Trove's description of a backup, typed.
//!
//! The trait mirrors Trove's `trove/guestagent/datastore/manager.py`: one
//! method per guest API operation a datastore owns, each defaulting to
//! "not supported" so a driver implements what its datastore has. Host
//! operations (ping, filesystem stats, diagnostics, volumes) belong to the
//! agent and are not here.
#![deny(missing_docs)]

pub mod backup_info;
pub mod envelope;
pub mod exception;
pub mod guest_request;
pub mod host;
pub mod request;
pub mod ring;
pub mod secret;
pub mod secure;
pub mod status;
pub mod storage;

use async_trait::async_trait;
use serde_json::{Map, Value};

pub use backup_info::BackupInfo;
pub use exception::TroveException;
pub use guest_request::GuestRequest;
pub use request::{GuestMethod, Kind};
pub use secret::Secret;
pub use status::ServiceStatus;
pub use storage::BackupAccess;

use request::{
    ApplyOverridesRequest, CreateBackupRequest, PrepareRequest, RebuildRequest,
    ResetConfigurationRequest, StartWithConfRequest, StopDbRequest, UpdateOverridesRequest,
    UpgradeRequest,
};

/// A driver's failure, by what the caller can do about it. The agent maps
/// it to a Trove exception class in one place ([`DatastoreError::to_trove`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatastoreError {
    /// The datastore has no such operation.
    #[error("the {0} operation is not supported")]
    NotSupported(GuestMethod),
    /// Not a guest API method, and the driver has no custom method so named.
    #[error("no such method {0}")]
    NoSuchMethod(String),
    /// The request is invalid (e.g. a bad configuration value); nothing changed.
    #[error("{0}")]
    BadRequest(String),
    /// Something the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the current state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// The operation failed. `context` says what was being done, `cause` why.
    #[error("{context}: {cause}")]
    Failed {
        /// What was being done ("register node with K2HR3").
        context: String,
        /// Why it failed, without secrets.
        cause: String,
    },
}

impl DatastoreError {
    /// Shorthand for [`DatastoreError::Failed`].
    pub fn failed(context: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        Self::Failed {
            context: context.into(),
            cause: cause.to_string(),
        }
    }

    /// The Trove exception an RPC caller receives for this error.
    pub fn to_trove(&self, datastore: &str) -> TroveException {
        match self {
            Self::NotSupported(method) => TroveException::NotSupported {
                operation: method.name().to_owned(),
                datastore: datastore.to_owned(),
            },
            Self::NoSuchMethod(name) => TroveException::NotSupported {
                operation: name.clone(),
                datastore: datastore.to_owned(),
            },
            Self::BadRequest(m) => TroveException::BadRequest(m.clone()),
            Self::NotFound(m) => TroveException::NotFound(m.clone()),
            Self::Conflict(m) => TroveException::Unprocessable(m.clone()),
            Self::Failed { .. } => TroveException::Error(self.to_string()),
        }
    }
}

/// Result of a driver operation.
pub type Result<T> = std::result::Result<T, DatastoreError>;

/// What a finished backup reports to the conductor (`update_backup` fields).
#[derive(Debug, Clone, PartialEq)]
pub struct BackupOutcome {
    /// Where the backup was stored.
    pub location: String,
    /// Checksum of the stored object, if the store gives one.
    pub checksum: Option<String>,
    /// Size in GiB, as Trove stores it.
    pub size_gb: f64,
}

/// Whether a sample only goes up (until its source restarts) or moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A value that goes up and down.
    Gauge,
    /// A count since its source started (exposed with `_total`).
    Counter,
}

/// One sample of the datastore for the agent's Prometheus endpoint, read
/// at scrape time (e.g. `k2hdkc_ring_servers{state="service_in"} 3`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// The metric's name, with its unit as Prometheus names them (a
    /// counter's without `_total`).
    pub name: String,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// Its `# HELP` text.
    pub help: String,
    /// Its labels.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

/// A log the datastore offers through Trove's guest log API (a SYS log:
/// always on, published or discarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLogFile {
    /// Its name in Trove (`openstack database log show <instance> <name>`).
    pub name: String,
    /// The file that holds its text; it only grows until it is rotated.
    pub file: std::path::PathBuf,
    /// A USER log: the tenant turns it on and off
    /// ([`Datastore::set_guest_log`]); else a SYS log, always on.
    pub user: bool,
}

/// A Trove datastore driver. All methods take `&self`: the agent serializes
/// operations that change the datastore and runs read-only ones beside them.
#[async_trait]
pub trait Datastore: Send + Sync + 'static {
    /// The `datastore_manager` this driver serves (e.g. `k2hdkc`).
    fn manager(&self) -> &'static str;

    /// The datastore's status now, for heartbeats.
    async fn status(&self) -> ServiceStatus;

    /// Sets the datastore up on a fresh guest. Returns the status to report
    /// when done (`healthy`, or `instance ready` for a cluster member).
    /// Must be safe to run again after an interrupted attempt. `backups`
    /// is given when the request restores a backup (`backup_info`) and
    /// the agent could reach its store.
    async fn prepare(
        &self,
        _request: &PrepareRequest,
        _backups: Option<BackupAccess<'_>>,
    ) -> Result<ServiceStatus> {
        Err(DatastoreError::NotSupported(GuestMethod::Prepare))
    }

    /// The agent restarted on a guest where prepare completed earlier:
    /// pick up where it was (background tasks, containers that should run).
    async fn resume(&self) {}

    /// Restarts the datastore.
    async fn restart(&self) -> Result<()> {
        Err(DatastoreError::NotSupported(GuestMethod::Restart))
    }

    /// Stops the datastore.
    async fn stop_db(&self, _request: &StopDbRequest) -> Result<()> {
        Err(DatastoreError::NotSupported(GuestMethod::StopDb))
    }

    /// Starts the datastore with a new configuration.
    async fn start_db_with_conf_changes(&self, _request: &StartWithConfRequest) -> Result<()> {
        Err(DatastoreError::NotSupported(
            GuestMethod::StartDbWithConfChanges,
        ))
    }

    /// Restores the base configuration.
    async fn reset_configuration(&self, _request: &ResetConfigurationRequest) -> Result<()> {
        Err(DatastoreError::NotSupported(
            GuestMethod::ResetConfiguration,
        ))
    }

    /// Stores configuration-group values (validated first; nothing changes
    /// on a bad value).
    async fn update_overrides(&self, _request: &UpdateOverridesRequest) -> Result<()> {
        Err(DatastoreError::NotSupported(GuestMethod::UpdateOverrides))
    }

    /// Applies configuration-group values to the running datastore.
    async fn apply_overrides(&self, _request: &ApplyOverridesRequest) -> Result<()> {
        Err(DatastoreError::NotSupported(GuestMethod::ApplyOverrides))
    }

    /// Takes a backup and stores it where `backup_info` says. The agent
    /// reports BUILDING before and the outcome after.
    async fn create_backup(
        &self,
        _request: &CreateBackupRequest,
        _backups: BackupAccess<'_>,
    ) -> Result<BackupOutcome> {
        Err(DatastoreError::NotSupported(GuestMethod::CreateBackup))
    }

    /// The cluster is complete: a member may start serving.
    async fn cluster_complete(&self) -> Result<ServiceStatus> {
        Err(DatastoreError::NotSupported(GuestMethod::ClusterComplete))
    }

    /// Before an upgrade: what the new instance needs to know.
    async fn pre_upgrade(&self) -> Result<Value> {
        Err(DatastoreError::NotSupported(GuestMethod::PreUpgrade))
    }

    /// Upgrade to a new datastore version.
    async fn upgrade(&self, _request: &UpgradeRequest) -> Result<()> {
        Err(DatastoreError::NotSupported(GuestMethod::Upgrade))
    }

    /// After an upgrade.
    async fn post_upgrade(&self, _request: &UpgradeRequest) -> Result<()> {
        Err(DatastoreError::NotSupported(GuestMethod::PostUpgrade))
    }

    /// Rebuild on a new image, keeping the data volume.
    async fn rebuild(&self, _request: &RebuildRequest) -> Result<ServiceStatus> {
        Err(DatastoreError::NotSupported(GuestMethod::Rebuild))
    }

    /// The datastore's own logs for Trove's guest log API (the agent
    /// serves `guest_log_list` and `guest_log_action`, and adds its own
    /// log): each a name and the file that holds its text.
    fn guest_logs(&self) -> Vec<GuestLogFile> {
        Vec::new()
    }

    /// The datastore's gauges for a Prometheus scrape (bounded: a scrape
    /// must answer within seconds).
    async fn metric_samples(&self) -> Vec<MetricSample> {
        Vec::new()
    }

    /// Whether USER log `name` is on now.
    async fn guest_log_enabled(&self, _name: &str) -> Result<bool> {
        Ok(false)
    }

    /// Turns USER log `name` on or off.
    async fn set_guest_log(&self, name: &str, _enable: bool) -> Result<()> {
        Err(DatastoreError::BadRequest(format!(
            "log '{name}' cannot be turned on or off on this datastore"
        )))
    }

    /// Brings log `name`'s file up to date before it is shown or
    /// published (a container's output copied out, say).
    async fn refresh_guest_log(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    /// Guest API methods with no dedicated hook (users, databases, root,
    /// replication, modules, SSL): the decoded arguments, as Trove sent them.
    async fn other_method(&self, method: GuestMethod, _args: &Map<String, Value>) -> Result<Value> {
        Err(DatastoreError::NotSupported(method))
    }

    /// Methods outside Trove's guest API that the datastore's own
    /// Trove-side cluster strategy sends (e.g. membership changes).
    async fn custom_method(&self, name: &str, _args: &Map<String, Value>) -> Result<Value> {
        Err(DatastoreError::NoSuchMethod(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    #[async_trait]
    impl Datastore for Nothing {
        fn manager(&self) -> &'static str {
            "nothing"
        }
        async fn status(&self) -> ServiceStatus {
            ServiceStatus::Unknown
        }
    }

    #[test]
    fn defaults_say_not_supported_with_the_operation() {
        let rt = futures_lite_block_on(Nothing.restart());
        let trove = rt.unwrap_err().to_trove("nothing");
        assert_eq!(trove.class_name(), "DatastoreOperationNotSupported");
        assert_eq!(
            trove.message(),
            "The 'restart' operation is not supported for the 'nothing' datastore."
        );
    }

    #[test]
    fn failures_keep_context_and_cause() {
        let e = DatastoreError::failed("register node with K2HR3", "HTTP 503");
        assert_eq!(
            e.to_trove("k2hdkc"),
            TroveException::Error("register node with K2HR3: HTTP 503".into())
        );
    }

    // A ready-future executor so this crate needs no runtime dependency.
    fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut fut = std::pin::pin!(fut);
        loop {
            if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}
