//! The agent under test, in-process (`agent::run`), with its configuration
//! as Trove injects it, and a test double of a datastore driver.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::config::Config;
use async_trait::async_trait;
use driver_api::request::{PrepareRequest, StopDbRequest};
use driver_api::{Datastore, ServiceStatus};
use tokio::sync::oneshot;

use crate::{guest_id, transport_url};

/// Agent configuration text for `guest_id`, as Trove would inject it.
pub fn config_text(
    guest_id: &str,
    key: Option<&str>,
    state_dir: &std::path::Path,
    mount_point: &std::path::Path,
) -> String {
    format!(
        "[DEFAULT]\nguest_id = {guest_id}\ndatastore_manager = k2hdkc\ndatastore_version = 1.0.17\ntenant_id = tenant1\n\
         instance_rpc_encr_key = {key}\ntransport_url = {url}\ncontrol_exchange = trove\nreport_interval = 1\n\
         state_change_wait_time = 30\ngraceful_shutdown_timeout = 10\nagent_state_dir = {state}\n\
         [oslo_messaging_rabbit]\nrabbit_retry_interval = 1\nrabbit_retry_backoff = 0\n\
         [k2hdkc]\nmount_point = {mount}\ndevice_path = /nonexistent/test-volume\nconfig_dir = {mount}/etc\n",
        key = key.unwrap_or(""),
        url = transport_url(),
        state = state_dir.display(),
        mount = mount_point.display(),
    )
}

/// A test double of a datastore driver (not K2HDKC): it lets the agent's
/// own behaviour be tested without a datastore. Counts calls; `prepare`
/// and `restart` take `delay`; status is what `status` holds.
pub struct FakeDatastore {
    /// How long prepare and restart take.
    pub delay: Duration,
    /// Calls of prepare.
    pub prepares: AtomicUsize,
    /// Calls of restart.
    pub restarts: AtomicUsize,
    /// Status reported.
    pub status: std::sync::Mutex<ServiceStatus>,
}

impl FakeDatastore {
    /// A driver whose operations take `delay`.
    pub fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            delay,
            prepares: AtomicUsize::new(0),
            restarts: AtomicUsize::new(0),
            status: std::sync::Mutex::new(ServiceStatus::Healthy),
        })
    }
}

#[async_trait]
impl Datastore for FakeDatastore {
    fn manager(&self) -> &'static str {
        "k2hdkc"
    }
    async fn status(&self) -> ServiceStatus {
        *self.status.lock().unwrap()
    }
    async fn prepare(
        &self,
        _req: &PrepareRequest,
        _backups: Option<driver_api::BackupAccess<'_>>,
    ) -> driver_api::Result<ServiceStatus> {
        self.prepares.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Ok(ServiceStatus::Healthy)
    }
    async fn restart(&self) -> driver_api::Result<()> {
        self.restarts.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
    async fn stop_db(&self, _req: &StopDbRequest) -> driver_api::Result<()> {
        *self.status.lock().unwrap() = ServiceStatus::Shutdown;
        Ok(())
    }
}

/// The agent running in-process.
pub struct RunningAgent {
    /// Its guest id.
    pub guest_id: String,
    /// Its key.
    pub key: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    ready: tokio::sync::watch::Receiver<bool>,
    _dirs: Vec<tempfile::TempDir>,
    /// The mount point it reports stats for.
    pub mount_point: PathBuf,
    /// Where it keeps its markers.
    pub state_dir: PathBuf,
}

/// Options for [`start_agent`].
pub struct AgentSetup {
    /// Guest id.
    pub guest_id: String,
    /// Instance key (secure RPC) or none.
    pub key: Option<String>,
    /// Extra config lines appended (later wins).
    pub extra: String,
    /// The driver; `None` builds the production one from the config (K2HDKC
    /// on this host's Docker engine).
    pub datastore: Option<Arc<dyn Datastore>>,
    /// Reuse this state dir (agent restart tests).
    pub state_dir: Option<PathBuf>,
}

impl AgentSetup {
    /// A setup with a fresh guest id, a key, and the real K2HDKC driver.
    pub fn new() -> Self {
        Self {
            guest_id: guest_id(),
            key: Some(format!("key-{}", uuid::Uuid::new_v4().simple())),
            extra: String::new(),
            datastore: None,
            state_dir: None,
        }
    }
}

impl Default for AgentSetup {
    fn default() -> Self {
        Self::new()
    }
}

/// Starts the agent and waits (bounded) until it consumes.
pub async fn start_agent(setup: AgentSetup) -> RunningAgent {
    let mut agent = spawn_agent(setup).await;
    assert!(
        agent.wait_ready(Duration::from_secs(20)).await,
        "agent consuming within 20 s"
    );
    agent
}

/// The TLS material `tests/setup.sh` made (CA, wrong CA, broker cert).
pub fn tls_dir() -> PathBuf {
    std::env::var_os("TEST_TLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/k2hdkc-trove-test-tls"))
}

/// Starts the agent without waiting for it to consume. `TEST_LOG=debug`
/// shows the agents' logs.
pub async fn spawn_agent(setup: AgentSetup) -> RunningAgent {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let mount = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = setup
        .state_dir
        .clone()
        .unwrap_or_else(|| state.path().to_path_buf());
    let text = config_text(
        &setup.guest_id,
        setup.key.as_deref(),
        &state_dir,
        mount.path(),
    ) + &setup.extra;
    let config = Config::from_texts([("test.conf", text.as_str())]).expect("valid test config");
    let (tx, rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let datastore = setup
        .datastore
        .unwrap_or_else(|| agent::datastore_for(&config).expect("driver for the test config"));
    let task = tokio::spawn(agent::run(
        config,
        datastore,
        async move {
            let _ = rx.await;
        },
        move |h| {
            let _ = ready_tx.send(h.ready);
        },
    ));
    let ready = ready_rx.await.expect("agent started");
    RunningAgent {
        guest_id: setup.guest_id,
        key: setup.key,
        shutdown: Some(tx),
        task,
        ready,
        mount_point: mount.path().to_path_buf(),
        state_dir,
        _dirs: vec![mount, state],
    }
}

impl RunningAgent {
    /// Asks the agent to stop and waits (bounded) until `run` returns.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("agent stops within 30 s")
            .unwrap();
    }

    /// Takes the agent's temporary directories, so they outlive it (an
    /// agent restart on the same guest).
    pub fn take_dirs(&mut self) -> Vec<tempfile::TempDir> {
        std::mem::take(&mut self._dirs)
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `run` to return.
    pub async fn join(mut self, within: Duration) {
        tokio::time::timeout(within, &mut self.task)
            .await
            .expect("agent stopped in time")
            .unwrap();
    }

    /// Whether the consumers are up now.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until consumers are up again (after a broker restart).
    pub async fn wait_ready(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.ready.wait_for(|r| *r))
            .await
            .is_ok()
    }
}
