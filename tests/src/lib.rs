//! Harness for the end-to-end tests: the real agent (`agent::run`,
//! in-process), a real RabbitMQ, and upstream Trove code as the peer
//! (`tests/peer/peer.py` under the venv `tests/run` creates).
//!
//! Environment: `TEST_RABBIT_HOST` (default 127.0.0.1:5672, user guest),
//! `PEER_PYTHON` (default `<repo>/.venv/bin/python`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent::config::Config;
use async_trait::async_trait;
use driver_api::request::{PrepareRequest, StopDbRequest};
use driver_api::{Datastore, ServiceStatus};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::oneshot;
pub mod app;
pub mod controlplane;
pub mod node;
pub mod process;
pub mod swift;

/// The broker `host:port`.
pub fn rabbit_host() -> String {
    std::env::var("TEST_RABBIT_HOST").unwrap_or_else(|_| "127.0.0.1:5672".into())
}

/// `transport_url` for the test broker.
pub fn transport_url() -> String {
    format!("rabbit://guest:guest@{}/", rabbit_host())
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The venv's python, where trove and the plugin are.
pub fn peer_python() -> PathBuf {
    std::env::var_os("PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// A fresh guest id per test, so tests share the broker without meeting.
pub fn guest_id() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

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

/// A `peer.py` process.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    async fn spawn(args: &[&str]) -> Peer {
        let mut child = Command::new(peer_python())
            .arg(repo_root().join("tests/peer/peer.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("peer.py starts (is the venv made? run tests/run)");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Peer {
            child,
            stdin,
            lines,
        }
    }

    /// The control plane's client for `guest_id` (trove.guestagent.api.API).
    pub async fn client(guest_id: &str, key: Option<&str>, extra: &[&str]) -> Peer {
        let url = transport_url();
        let mut args = vec!["client", "--url", &url, "--guest-id", guest_id];
        if let Some(k) = key {
            args.extend(["--key", k]);
        }
        args.extend_from_slice(extra);
        Peer::spawn(&args).await
    }

    /// trove-conductor's RPC server with its host-side serializer.
    pub async fn conductor(guest_id: &str, key: &str, queue: &str) -> Peer {
        let url = transport_url();
        let mut p = Peer::spawn(&[
            "conductor",
            "--url",
            &url,
            "--guest-id",
            guest_id,
            "--key",
            key,
            "--queue",
            queue,
        ])
        .await;
        let ready = p
            .next(Duration::from_secs(30))
            .await
            .expect("conductor peer ready");
        assert_eq!(ready["ready"], true, "{ready}");
        p
    }

    /// Sends one command and reads its reply.
    pub async fn send(&mut self, command: Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("peer stdin");
        self.next(Duration::from_secs(120))
            .await
            .expect("peer replied")
    }

    /// A `call` through trove's guest API; `direct` shows the remote class.
    pub async fn call(
        &mut self,
        method: &str,
        kwargs: Value,
        timeout_s: u64,
        direct: bool,
    ) -> Value {
        self.send(serde_json::json!({"op": "call", "method": method, "kwargs": kwargs, "timeout": timeout_s, "direct": direct})).await
    }

    /// The next JSON line, if one comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        match tokio::time::timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("peer printed non-JSON {line:?}: {e}")),
            ),
            _ => None,
        }
    }

    /// Reads lines until one matches, within `within` overall.
    pub async fn next_matching(
        &mut self,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next(left).await?;
            if pred(&v) {
                return Some(v);
            }
        }
    }

    /// Ends the peer.
    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"{\"op\":\"quit\"}\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// Publishes a raw body to the default exchange, routed to `queue`, for
/// malformed-input tests; returns a reply queue the caller can read.
pub mod raw {
    use super::*;
    use futures_util::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

    /// A raw AMQP connection to the test broker.
    pub struct Raw {
        _conn: Connection,
        channel: Channel,
    }

    impl Raw {
        /// Connects.
        pub async fn connect() -> Raw {
            let conn = Connection::connect(
                &format!("amqp://guest:guest@{}/%2f", rabbit_host()),
                ConnectionProperties::default(),
            )
            .await
            .expect("raw AMQP connection");
            let channel = conn.create_channel().await.unwrap();
            Raw {
                _conn: conn,
                channel,
            }
        }

        /// Publishes `body` to queue `queue` through the default exchange.
        pub async fn publish(&self, queue: &str, body: &[u8]) {
            self.channel
                .basic_publish(
                    "".into(),
                    queue.to_owned().into(),
                    BasicPublishOptions::default(),
                    body,
                    BasicProperties::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }

        /// Declares an exclusive reply queue and consumes it.
        pub async fn reply_queue(&self) -> (String, Consumer) {
            let name = format!("reply_{}", uuid::Uuid::new_v4().simple());
            self.channel
                .queue_declare(
                    name.clone().into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            let consumer = self
                .channel
                .basic_consume(
                    name.clone().into(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            (name, consumer)
        }
    }

    /// The next message body on `consumer` within `within`.
    pub async fn next_body(consumer: &mut Consumer, within: Duration) -> Option<Vec<u8>> {
        match tokio::time::timeout(within, consumer.next()).await {
            Ok(Some(Ok(d))) => Some(d.data),
            _ => None,
        }
    }
}

/// Ports for one test's K2HDKC node: server, control, slave control.
/// Tests run in parallel on the host network (and beside other test runs),
/// so each call takes three ports that are free now, from a range below
/// the kernel's ephemeral ports (which start at 32768: chmpx keeps ports
/// in a C `short` and cannot listen above 32767), starting at a random
/// place so that test processes side by side rarely meet.
pub fn node_ports() -> (u16, u16, u16) {
    use std::sync::atomic::AtomicU32;
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| uuid::Uuid::new_v4().as_u128() as u32 % SPAN);
    let free = |p: u16| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok();
    let mut picked = Vec::with_capacity(3);
    for _ in 0..SPAN {
        let p = (LOW + (start + NEXT.fetch_add(1, Ordering::SeqCst)) % SPAN) as u16;
        if free(p) {
            picked.push(p);
            if picked.len() == 3 {
                return (picked[0], picked[1], picked[2]);
            }
        }
    }
    panic!("no three free ports in {LOW}..{}", LOW + SPAN);
}

/// The k2hdkc server test image (a stand-in built from tests/standins).
pub const STANDIN_IMAGE: &str = "k2hdkc-standin:test";
/// The real chmpx + k2hdkc, when built on this machine with
/// `packaging/k2hdkc-image/source/build.sh` (tests/run builds it when the
/// sources are there).
pub const REAL_IMAGE: &str = "k2hdkc-real:1.0.17";

/// `msgqueue_bytes = 0` where the engine cannot raise RLIMIT_MSGQUEUE
/// (its root lacks CAP_SYS_RESOURCE, as in this sandbox): the agent's
/// default would fail every container start there.
pub fn msgqueue_line() -> &'static str {
    let cap_sys_resource = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|eff| eff >> 24 & 1 == 1);
    if cap_sys_resource {
        ""
    } else {
        "msgqueue_bytes = 0\n"
    }
}

/// The k2hdkc server image the node tests run: `K2HDKC_TEST_IMAGE` if
/// set, else the real image when it is present, else the stand-in (built
/// once per test process). `tests/run` prints the same choice at the top.
pub fn k2hdkc_image() -> String {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let chosen = match std::env::var("K2HDKC_TEST_IMAGE") {
                Ok(i) if !i.is_empty() => i,
                _ => {
                    let real = std::process::Command::new("docker")
                        .args(["image", "inspect", REAL_IMAGE])
                        .output();
                    if real.is_ok_and(|o| o.status.success()) {
                        REAL_IMAGE.to_owned()
                    } else {
                        STANDIN_IMAGE.to_owned()
                    }
                }
            };
            if chosen == STANDIN_IMAGE {
                ensure_standin_image();
            }
            eprintln!("k2hdkc test image: {chosen}");
            chosen
        })
        .clone()
}

/// Builds the stand-in image once per test process.
pub fn ensure_standin_image() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let script = repo_root().join("tests/standins/k2hdkc-image/build.sh");
        let status = std::process::Command::new("bash")
            .arg(script)
            .arg(STANDIN_IMAGE)
            .status()
            .expect("build.sh runs");
        assert!(status.success(), "building the stand-in image failed");
    });
}

/// The K2HR3 stand-in (tests/standins/k2hr3/k2hr3_standin.py), one per test.
pub struct K2hr3StandIn {
    child: Child,
    /// What it printed at start: url, role_yrn, resource_yrn, role_token, extdata_url.
    pub info: Value,
}

impl K2hr3StandIn {
    /// Starts one for a cluster on these ports (template AUTOMERGE on).
    pub async fn start(cluster: &str, ports: (u16, u16, u16)) -> K2hr3StandIn {
        Self::start_with(cluster, ports, true).await
    }

    /// Starts one whose template has AUTOMERGE `automerge`.
    pub async fn start_with(
        cluster: &str,
        ports: (u16, u16, u16),
        automerge: bool,
    ) -> K2hr3StandIn {
        let mut child = Command::new(peer_python())
            .arg(repo_root().join("tests/standins/k2hr3/k2hr3_standin.py"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--tenant",
                "trove",
                "--role",
                cluster,
            ])
            .args([
                "--server-port",
                &ports.0.to_string(),
                "--server-ctlport",
                &ports.1.to_string(),
                "--slave-ctlport",
                &ports.2.to_string(),
                "--automerge",
                if automerge { "on" } else { "off" },
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("K2HR3 stand-in starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("stand-in ready")
            .unwrap()
            .unwrap();
        K2hr3StandIn {
            child,
            info: serde_json::from_str(&line).unwrap(),
        }
    }

    /// GET on the stand-in (its K2HR3 API or its test controls).
    pub async fn get(&self, path: &str) -> Value {
        http_json(
            "GET",
            &format!("{}{}", self.info["url"].as_str().unwrap(), path),
            None,
        )
        .await
    }

    /// The k2hdkc.ini K2HR3 renders now for the role (members included).
    pub async fn rendered_ini(&self) -> String {
        let url = format!(
            "{}/v1/resource/{}",
            self.info["url"].as_str().unwrap(),
            self.info["resource_yrn"].as_str().unwrap()
        );
        let token = format!("R={}", self.info["role_token"].as_str().unwrap());
        let v = http_json_auth("GET", &url, None, Some(&token)).await;
        v["resource"].as_str().unwrap_or_default().to_owned()
    }

    /// Sets a fault mode (`ok`, `down`, `error500`, `slow`).
    pub async fn fault(&self, mode: &str) {
        http_json(
            "POST",
            &format!("{}/_standin/fault", self.info["url"].as_str().unwrap()),
            Some(serde_json::json!({"mode": mode})),
        )
        .await;
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A tiny HTTP/1.1 JSON client for the stand-in (test code only).
pub async fn http_json(method: &str, url: &str, body: Option<Value>) -> Value {
    http_json_auth(method, url, body, None).await
}

/// Same, with an `x-auth-token` header.
pub async fn http_json_auth(
    method: &str,
    url: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Value {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("stand-in reachable");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("x-auth-token: {t}\r\n"))
        .unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    tokio::io::AsyncWriteExt::write_all(&mut stream, req.as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body.trim()).unwrap_or(Value::String(body.to_owned()))
}

/// Docker CLI (test code only, argv).
pub fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A host on this machine where nothing listens, for a member that is
/// registered but does not run: a container on dockerd's default bridge,
/// so a connection to it is refused at once. Not a second loopback
/// address: chmpx listens on every address of this machine, so a server
/// listed at 127.0.0.2 is the node's own chmpx, which then waits on
/// itself and stops answering (seen: its control port silent for good,
/// a slave unable to join).
pub struct AbsentHost {
    pub ip: String,
    name: String,
}

impl AbsentHost {
    pub fn start() -> Self {
        let name = format!("k2hdkc-absent-{}", uuid::Uuid::new_v4().simple());
        let id = docker(&[
            "run",
            "-d",
            "--rm",
            "--name",
            &name,
            "--network",
            "bridge",
            &k2hdkc_image(),
            "sleep",
            "900",
        ]);
        assert!(!id.is_empty(), "cannot start the absent host's container");
        let ip = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &name]);
        assert!(
            ip.parse::<std::net::Ipv4Addr>().is_ok(),
            "no bridge address: {ip:?}"
        );
        AbsentHost { ip, name }
    }
}

impl Drop for AbsentHost {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.name]);
    }
}

impl K2hr3StandIn {
    /// Adds another member as if a node at `ip` had registered (`cuk` is
    /// its host name, the chmpx id seed of the K2HDKC template, too). For
    /// a member that does not run, use an [`AbsentHost`]'s address:
    /// chmpx refuses an ini with two servers on one address and port, and
    /// nothing may be reached outside this machine.
    pub async fn add_member(&self, ip: &str, port: u16, cuk: &str) {
        let v = http_json(
            "POST",
            &format!("{}/_standin/member", self.info["url"].as_str().unwrap()),
            Some(serde_json::json!({"ip": ip, "port": port, "cuk": cuk, "tag": cuk})),
        )
        .await;
        assert_eq!(v["result"], true, "{v}");
    }

    /// Removes a member [`K2hr3StandIn::add_member`] added.
    pub async fn remove_member(&self, cuk: &str) {
        let v = http_json(
            "DELETE",
            &format!(
                "{}/_standin/member?cuk={cuk}",
                self.info["url"].as_str().unwrap()
            ),
            None,
        )
        .await;
        assert_eq!(v["result"], true, "{v}");
    }

    /// The calls the stand-in recorded.
    pub async fn calls(&self) -> Vec<Value> {
        self.get("/_standin/calls").await["calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
