//! A K2HDKC server node's lifecycle: register with K2HR3, write the ini
//! K2HR3 renders, run chmpx and k2hdkc, report health, leave cleanly, and
//! start the role watcher (`watcher.rs`) that keeps the ini converged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use driver_api::host::{Bind, ContainerSpec, ContainerState, Containers, Ipc, Ulimit};
use driver_api::{DatastoreError, ServiceStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::chmpx;
use crate::ini;
use crate::k2hr3::{self, ExtdataNames, K2hr3, RoleAccess};
use crate::merge;
use crate::overrides::Parameters;
use crate::rejoin;
use crate::ring;
use crate::settings::Settings;
use crate::watcher::Watcher;

/// Where the config directory is mounted in the containers.
pub const CONTAINER_CONFIG_DIR: &str = "/etc/antpickax";
/// chmpx's working directory: its shared-memory files live here, and
/// k2hdkc attaches to them, so both containers mount the same host dir.
pub const CONTAINER_RUN_DIR: &str = "/var/lib/antpickax";
/// Where the data volume is mounted in the containers.
pub const CONTAINER_DATA_DIR: &str = "/var/lib/antpickax/k2hdkc";
/// The ini's name in the config directory.
pub const INI_NAME: &str = "k2hdkc.ini";
/// `extra` K2HR3 keeps for a node registered by this agent.
pub const K2HR3_EXTRA: &str = "openstack-auto-v1";
/// The variable names of k2hr3_api's `config/k2hr3-init.sh.templ`, the
/// template K2HR3's `trove` EXTDATA serves.
pub const EXTDATA_NAMES: ExtdataNames = ExtdataNames {
    api_url: "K2HR3_API_HOST_URI",
    role: "K2HR3_ROLE_NAME",
    role_token: "K2HR3_ROLE_TOKEN",
};

/// The host name k2hr3-init sends as the member's `tag`.
fn host_tag() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}
/// How long a join may wait at `[ADD][Pending]` before the node merges
/// the ring itself (AUTOMERGE starts a merge within a second).
const PENDING_GRACE: Duration = Duration::from_secs(2);
/// The longest a new member waits for K2HR3 to list its whole ring.
const RING_LISTED_WAIT: Duration = Duration::from_secs(60);
/// Grace for chmpx to leave on SIGINT.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What the node keeps across agent restarts (0600: it holds the role token).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct Saved {
    parameters: Map<String, Value>,
    api_url: Option<String>,
    role_yrn: Option<String>,
    role_token: Option<String>,
    /// stop_db(do_not_start_on_reboot=True) was asked.
    stopped: bool,
    /// A cluster member: its ring steps come from Trove's cluster
    /// taskmanager, not from the node itself.
    #[serde(default)]
    member: bool,
}

/// A backup to restore in prepare.
#[derive(Debug, Clone, Copy)]
pub struct Restore<'a> {
    /// Which backup, where.
    pub info: &'a crate::backup::BackupInfo,
    /// The store and the key.
    pub access: driver_api::BackupAccess<'a>,
}

/// The live node.
struct Live {
    params: Parameters,
    k2hr3: Option<K2hr3>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// Stopped on purpose (stop_db): nothing is restarted.
    stopped: bool,
    /// chmpx's `StartedAt` at the last status round, to see restarts the
    /// restart policy made between two rounds.
    chmpx_run: Option<String>,
}

/// This node as the ring steps of a cluster see it.
#[derive(Debug, Clone)]
pub struct RingView {
    /// This node's CUK (its `[SVRNODE]` in the ini).
    pub cuk: String,
    /// This node's control address.
    pub ctl: String,
    /// The server control port the parameters give.
    pub ctlport: u16,
    /// The ini chmpx runs with.
    pub facts: ini::IniFacts,
}

/// The K2HDKC node.
pub struct Node {
    settings: Settings,
    containers: Arc<dyn Containers>,
    http: reqwest::Client,
    live: Mutex<Live>,
    /// Operations that start or stop containers on purpose, in progress:
    /// a new chmpx run then is not a crash.
    changing: std::sync::atomic::AtomicU32,
    /// A cluster member (see [`Saved::member`]).
    member: std::sync::atomic::AtomicBool,
}

/// Marks a deliberate container change for as long as it lives.
struct Changing<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn failed(context: &str, e: impl std::fmt::Display) -> DatastoreError {
    DatastoreError::failed(context, e)
}

impl Node {
    /// A node with nothing prepared yet (or, after a restart, what was
    /// saved).
    pub fn new(settings: Settings, containers: Arc<dyn Containers>) -> Node {
        let saved = load_saved(&settings.state_dir).unwrap_or_default();
        let params = Parameters::default()
            .with(&saved.parameters, false)
            .unwrap_or_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let k2hr3 = match (saved.api_url, saved.role_yrn, saved.role_token) {
            (Some(api_url), Some(role_yrn), Some(role_token)) => Some(K2hr3::new(
                http.clone(),
                RoleAccess {
                    api_url,
                    role_yrn,
                    role_token,
                },
            )),
            _ => None,
        };
        let live = Live {
            params,
            k2hr3,
            watcher: None,
            stopped: saved.stopped,
            chmpx_run: None,
        };
        Node {
            settings,
            containers,
            http,
            live: Mutex::new(live),
            changing: Default::default(),
            member: saved.member.into(),
        }
    }

    /// Its settings (a backup works with the same paths and containers).
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The host's containers.
    pub(crate) fn containers(&self) -> &Arc<dyn Containers> {
        &self.containers
    }

    /// The parameters in force.
    pub(crate) async fn parameters(&self) -> Parameters {
        self.live.lock().await.params.clone()
    }

    /// What the ini chmpx and k2hdkc run with says.
    pub(crate) fn ini_facts(&self) -> Result<ini::IniFacts, DatastoreError> {
        let path = self.ini_path();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| failed(&format!("read {}", path.display()), e))?;
        Ok(ini::facts(&text))
    }

    /// Held while containers are started or stopped on purpose.
    fn changing(&self) -> Changing<'_> {
        self.changing
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Changing(&self.changing)
    }

    fn ini_path(&self) -> PathBuf {
        self.settings.config_dir.join(INI_NAME)
    }

    fn ctl_addr(&self, params: &Parameters) -> String {
        format!("127.0.0.1:{}", params.server_ctlport)
    }

    fn http_for(&self, params: &Parameters) -> reqwest::Client {
        let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        let no_proxy = params
            .no_proxy
            .as_deref()
            .and_then(reqwest::NoProxy::from_string);
        if let Some(p) = params
            .http_proxy
            .as_deref()
            .and_then(|u| reqwest::Proxy::http(u).ok())
        {
            b = b.proxy(p.no_proxy(no_proxy.clone()));
        }
        if let Some(p) = params
            .https_proxy
            .as_deref()
            .and_then(|u| reqwest::Proxy::https(u).ok())
        {
            b = b.proxy(p.no_proxy(no_proxy));
        }
        b.build().unwrap_or_else(|_| self.http.clone())
    }

    /// `prepare`: parameters, K2HR3 registration, ini, containers, wait
    /// for service. Safe to re-run.
    /// A cluster `member` is ready once chmpx and k2hdkc run: the cluster
    /// taskmanager puts it into the ring. `ring_size`, when known, is how
    /// many servers the ring it joins has.
    /// `restore`: a backup to load into the K2HFILE before k2hdkc starts.
    pub async fn prepare(
        &self,
        config_contents: Option<&str>,
        overrides: Option<&Map<String, Value>>,
        member: bool,
        ring_size: Option<usize>,
        restore: Option<Restore<'_>>,
    ) -> Result<(), DatastoreError> {
        let base = match config_contents {
            Some(text) => Parameters::from_config_contents(text)
                .map_err(|p| DatastoreError::BadRequest(p.join("; ")))?,
            None => Parameters::default(),
        };
        let params = match overrides {
            Some(o) => base
                .with(o, false)
                .map_err(|p| DatastoreError::BadRequest(p.join("; ")))?,
            None => base,
        };
        let access = match (&self.settings.direct, &params.extdata_url) {
            (Some(direct), _) => direct.clone(),
            (None, Some(url)) => k2hr3::fetch_extdata(&self.http_for(&params), url, &EXTDATA_NAMES).await.map_err(|e| failed("read K2HR3 EXTDATA", e))?,
            (None, None) => {
                return Err(DatastoreError::BadRequest(
                    "no K2HR3 access: set the extdata-url configuration parameter or [k2hdkc] k2hr3_api_url/k2hr3_role/k2hr3_role_token".into(),
                ))
            }
        };
        let client = K2hr3::new(self.http_for(&params), access);
        {
            let mut live = self.live.lock().await;
            live.params = params.clone();
            live.k2hr3 = Some(client.clone());
        }
        self.member
            .store(member, std::sync::atomic::Ordering::SeqCst);
        self.save(&params, Some(client.access()), false)?;
        self.join(&client, &params, ring_size.filter(|_| member), restore)
            .await?;
        self.start_watcher().await;
        Ok(())
    }

    /// Registers, writes the ini, runs the containers, waits for service.
    /// A new cluster member first waits (bounded) until the ini lists the
    /// `ring_size` servers of its ring.
    async fn join(
        &self,
        client: &K2hr3,
        params: &Parameters,
        ring_size: Option<usize>,
        restore: Option<Restore<'_>>,
    ) -> Result<(), DatastoreError> {
        let _changing = self.changing();
        let s = &self.settings;
        {
            let mut live = self.live.lock().await;
            live.stopped = false;
            live.chmpx_run = None;
        }
        client
            .register(params.server_port, &s.cuk, K2HR3_EXTRA, &host_tag())
            .await
            .map_err(|e| failed("register the node with K2HR3", e))?;
        tracing::info!(cuk = %s.cuk, port = params.server_port, "registered with K2HR3");
        let mut facts = self.refresh_ini(client).await?;
        if let Some(size) = ring_size {
            facts = self.wait_ring_listed(client, facts, size).await?;
        }

        self.containers
            .ensure_image(&s.image)
            .await
            .map_err(|e| failed("get the k2hdkc image", e))?;
        self.ensure_run_dir()?;
        // A second lone node too: its chmpx is refused by a first node
        // that does not list it yet (seen in the quickstart on the real
        // image: the new node's k2hdkc never attached).
        self.wait_known_by_peers(&facts, params).await;
        self.containers
            .run(&self.chmpx_spec(params))
            .await
            .map_err(|e| failed("start chmpx", e))?;

        // A node that is not the first server waits for the first one, as
        // the old image does, so the ring forms from one node. Cluster
        // members start together and are put into the ring afterwards.
        let member = self.is_member();
        let first = facts.servers.first().cloned().filter(|_| !member);
        if let Some(first) = first.filter(|f| f.cuk.as_deref() != Some(s.cuk.as_str())) {
            let port = first
                .ctlport
                .or(facts.ctlport)
                .unwrap_or(params.server_ctlport);
            let addr = format!("{}:{port}", first.name);
            tracing::info!(first = %addr, "waiting for the first server node to serve");
            self.wait_serving(&addr, "the first server node").await?;
        }
        // k2hdkc attaches to chmpx's shared memory: started before chmpx
        // made it, it failed and stayed detached (seen on a grow's new
        // member, whose chmpx first connects to the ring, and on a second
        // lone node).
        self.wait_chmpx_answers(params).await?;
        self.ensure_k2hfile_dir(&facts)?;
        if let Some(r) = restore {
            // Loaded before k2hdkc opens the file: nothing half-loaded
            // serves.
            crate::backup::restore::restore(self, r.info, r.access, &facts).await?;
        }
        self.containers
            .run(&self.server_spec(params))
            .await
            .map_err(|e| failed("start k2hdkc", e))?;
        if member {
            self.wait_attached(params).await?;
        } else {
            self.wait_self_serving(params).await?;
        }
        self.record_chmpx_run().await;
        Ok(())
    }

    /// Waits until K2HR3 lists `size` servers, rewriting the ini as it
    /// grows. Members register together: seen on the real image, chmpx
    /// started with a partial ini (1, 2 and 3 of 3 servers) was refused by
    /// its peers, and after the full ini loaded two members saw a third
    /// DOWN for good. Past [`RING_LISTED_WAIT`] chmpx starts anyway; the
    /// taskmanager's converge step then names what is missing.
    async fn wait_ring_listed(
        &self,
        client: &K2hr3,
        mut facts: ini::IniFacts,
        size: usize,
    ) -> Result<ini::IniFacts, DatastoreError> {
        let deadline = Instant::now() + RING_LISTED_WAIT.min(self.settings.startup_wait);
        let mut said = false;
        while facts.servers.len() < size {
            if Instant::now() >= deadline {
                tracing::warn!(
                    listed = facts.servers.len(),
                    expected = size,
                    "K2HR3 still lists fewer servers than the ring has; starting chmpx anyway"
                );
                break;
            }
            if !said {
                tracing::info!(
                    listed = facts.servers.len(),
                    expected = size,
                    "waiting for K2HR3 to list every server of the ring"
                );
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            facts = self.refresh_ini(client).await?;
        }
        Ok(facts)
    }

    /// Waits (bounded) until every running server of the ini lists this
    /// node in `ALLSTATUS`: their chmpx has loaded the ini with it. Seen on
    /// the real chmpx: a new member that connects to a server whose ini
    /// does not have it yet is refused ("could not allow from this
    /// server") and its chmpx never opens its control port. Servers that
    /// do not answer (not started yet, or down) are not waited for.
    async fn wait_known_by_peers(&self, facts: &ini::IniFacts, params: &Parameters) {
        let me = self.settings.cuk.as_str();
        let peers: Vec<String> = facts
            .servers
            .iter()
            .filter(|n| n.cuk.as_deref() != Some(me))
            .map(|n| {
                format!(
                    "{}:{}",
                    n.name,
                    n.ctlport.or(facts.ctlport).unwrap_or(params.server_ctlport)
                )
            })
            .collect();
        let deadline = Instant::now() + self.settings.startup_wait.min(Duration::from_secs(60));
        loop {
            let mut waiting = Vec::new();
            for addr in &peers {
                if let Ok(servers) = chmpx::all_status_within(addr, Duration::from_secs(3)).await {
                    if !servers.iter().any(|s| s.cuk == me) {
                        waiting.push(addr.clone());
                    }
                }
            }
            if waiting.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(servers = ?waiting, "these servers still do not list this node; starting chmpx anyway");
                return;
            }
            tracing::info!(servers = ?waiting, "waiting for the ring's servers to load the ini with this node");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until chmpx answers on its control port (it has set up its
    /// shared memory by then).
    async fn wait_chmpx_answers(&self, params: &Parameters) -> Result<(), DatastoreError> {
        let addr = self.ctl_addr(params);
        let deadline = Instant::now() + self.settings.startup_wait;
        loop {
            match chmpx::self_status(&addr).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(failed(
                        "wait for chmpx to answer",
                        format!("not within {:?}: {e}", self.settings.startup_wait),
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// This node's CUK, known from the start (before any prepare).
    pub fn cuk(&self) -> &str {
        &self.settings.cuk
    }

    /// Whether this node is a cluster member.
    pub fn is_member(&self) -> bool {
        self.member.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// This node as the cluster's ring steps see it.
    pub async fn ring_view(&self) -> Result<RingView, DatastoreError> {
        let params = self.live.lock().await.params.clone();
        let text = std::fs::read_to_string(self.ini_path())
            .map_err(|e| failed(&format!("read {}", self.ini_path().display()), e))?;
        Ok(RingView {
            cuk: self.settings.cuk.clone(),
            ctl: self.ctl_addr(&params),
            ctlport: params.server_ctlport,
            facts: ini::facts(&text),
        })
    }

    /// Restarts k2hdkc alone, chmpx running on: chmpx then marks this node
    /// pending, so the next merge moves this node's new ranges to it
    /// (CONTRACTS.md §7). Not a crash for the status rounds.
    pub async fn reattach(&self) -> Result<(), DatastoreError> {
        let _changing = self.changing();
        let name = self.settings.server_container();
        self.containers
            .stop(&name, STOP_GRACE)
            .await
            .map_err(|e| failed("stop k2hdkc", e))?;
        self.containers
            .start(&name)
            .await
            .map_err(|e| failed("start k2hdkc", e))
    }

    /// Waits until chmpx is up with k2hdkc attached (`NoSuspend`),
    /// whatever its place in the ring: what a cluster member needs before
    /// the taskmanager puts it into the ring.
    pub async fn wait_attached(&self, params: &Parameters) -> Result<(), DatastoreError> {
        let addr = self.ctl_addr(params);
        let deadline = Instant::now() + self.settings.startup_wait;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match chmpx::self_status(&addr).await {
                Ok(st) if st.live == "UP" && st.suspend == "NoSuspend" => {
                    tracing::info!(status = %st, "chmpx up with k2hdkc attached");
                    return Ok(());
                }
                Ok(st) => last = st.to_string(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(failed(
            "wait for k2hdkc to attach to chmpx",
            format!(
                "not attached after {:?}; last: {last}",
                self.settings.startup_wait
            ),
        ))
    }

    /// Remembers the chmpx run this node just started, so that the first
    /// status round already sees a restart that happens right after.
    async fn record_chmpx_run(&self) {
        let run = match self
            .containers
            .state(&self.settings.chmpx_container())
            .await
        {
            Ok(ContainerState::Running { started_at }) => started_at,
            _ => None,
        };
        self.live.lock().await.chmpx_run = run;
    }

    /// The directory the containers share as /var/lib/antpickax: owned by
    /// the database user, closed to others (chmpx's files are its queues).
    fn ensure_run_dir(&self) -> Result<(), DatastoreError> {
        let s = &self.settings;
        let dir = &s.run_dir;
        let made = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            std::os::unix::fs::chown(dir, Some(s.uid), Some(s.gid))?;
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o750))
        };
        made().map_err(|e| failed(&format!("prepare the run directory {}", dir.display()), e))
    }

    /// k2hdkc creates its K2HFILE but not the directory it is in (the old
    /// image's start script made it with `mkdir -p`). Made here, in the
    /// data volume, owned by the database user.
    fn ensure_k2hfile_dir(&self, facts: &ini::IniFacts) -> Result<(), DatastoreError> {
        let Some(file) = facts.k2hfile.as_deref() else {
            return Ok(());
        };
        let Some(dir) = std::path::Path::new(file).parent() else {
            return Ok(());
        };
        let s = &self.settings;
        let Some(host_dir) =
            ini::host_path(dir, std::path::Path::new(CONTAINER_DATA_DIR), &s.data_dir)
        else {
            tracing::warn!(
                k2hfile = file,
                volume = CONTAINER_DATA_DIR,
                "K2HFILE is outside the data volume: its data will not outlive the container"
            );
            return Ok(());
        };
        let mut made = Vec::new();
        let mut at = host_dir.as_path();
        while at != s.data_dir && !at.exists() {
            made.push(at.to_path_buf());
            let Some(up) = at.parent() else { break };
            at = up;
        }
        std::fs::create_dir_all(&host_dir).map_err(|e| {
            failed(
                &format!("make the K2HFILE directory {}", host_dir.display()),
                e,
            )
        })?;
        for d in made {
            std::os::unix::fs::chown(&d, Some(s.uid), Some(s.gid))
                .map_err(|e| failed(&format!("give {} to the database user", d.display()), e))?;
        }
        Ok(())
    }

    /// Waits until chmpx at `addr` serves, bounded by `startup_wait`.
    async fn wait_serving(&self, addr: &str, who: &str) -> Result<(), DatastoreError> {
        let deadline = Instant::now() + self.settings.startup_wait;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match chmpx::self_status(addr).await {
                Ok(st) if st.is_serving() => return Ok(()),
                Ok(st) => last = st.to_string(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(failed(
            &format!("wait for {who} ({addr}) to serve"),
            format!(
                "not serving after {:?}; last: {last}",
                self.settings.startup_wait
            ),
        ))
    }

    /// Waits until this node serves; services it in once k2hdkc attached
    /// if the ring does not do it by itself (AUTOMERGE off).
    async fn wait_self_serving(&self, params: &Parameters) -> Result<(), DatastoreError> {
        let addr = self.ctl_addr(params);
        let deadline = Instant::now() + self.settings.startup_wait;
        let mut asked = false;
        let mut pending_since: Option<Instant> = None;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match chmpx::self_status(&addr).await {
                Ok(st) if st.is_serving() && st.merge != "Pending" => {
                    tracing::info!("this node serves: [SERVICE IN][UP][NoSuspend]");
                    return Ok(());
                }
                Ok(st) => {
                    if st.ring == "SERVICE OUT"
                        && st.live == "UP"
                        && st.suspend == "NoSuspend"
                        && !asked
                    {
                        if let Err(e) = chmpx::command_ok(&addr, "SERVICEIN").await {
                            tracing::warn!(error = %e, "SERVICEIN refused; waiting");
                        }
                        asked = true;
                    }
                    // AUTOMERGE off (the shipped template): the join waits
                    // at [ADD][Pending] for a merge, which AUTOMERGE would
                    // have started within a second.
                    let pending =
                        st.ring == "SERVICE IN" && st.action == "ADD" && st.merge == "Pending";
                    match (pending, pending_since) {
                        (true, None) => pending_since = Some(Instant::now()),
                        (true, Some(t)) if t.elapsed() >= PENDING_GRACE => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            tracing::info!("the join waits at [ADD][Pending] (AUTOMERGE off): merging the ring");
                            merge::merge_ring(
                                &addr,
                                &[],
                                params.server_ctlport,
                                &|_| None,
                                merge::MergeBounds::within(left),
                            )
                            .await
                            .map_err(|e| failed("merge the ring after SERVICEIN", e))?;
                            pending_since = None;
                        }
                        (false, _) => pending_since = None,
                        _ => {}
                    }
                    last = st.to_string();
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(failed(
            "wait for this node to serve",
            format!(
                "not serving after {:?}; last: {last}",
                self.settings.startup_wait
            ),
        ))
    }

    /// Fetches the resource, writes the ini if it changed (atomically, and
    /// only when it still names this node), returns what it says.
    async fn refresh_ini(&self, client: &K2hr3) -> Result<ini::IniFacts, DatastoreError> {
        let text = ini::personalize(
            &client
                .resource()
                .await
                .map_err(|e| failed("get k2hdkc.ini from K2HR3", e))?,
            &self.settings.cuk,
        );
        let facts = ini::facts(&text);
        let is_self = |n: &ini::NodeEntry| n.cuk.as_deref() == Some(self.settings.cuk.as_str());
        if !facts.servers.iter().any(is_self) {
            return Err(failed(
                "check k2hdkc.ini from K2HR3",
                format!(
                    "it has no [SVRNODE] with CUK {} (registration not visible yet?)",
                    self.settings.cuk
                ),
            ));
        }
        // The containers run as the database user: the directory must be
        // readable whatever umask the agent runs with (systemd: 0077).
        let dir = &self.settings.config_dir;
        ini::ensure_shared_dir(dir)
            .map_err(|e| failed(&format!("prepare {}", dir.display()), e))?;
        let changed = ini::write_atomic(&self.ini_path(), &text, 0o644)
            .map_err(|e| failed(&format!("write {}", self.ini_path().display()), e))?;
        if changed {
            tracing::info!(servers = facts.servers.len(), slaves = facts.slaves.len(), path = %self.ini_path().display(), "k2hdkc.ini written");
        }
        Ok(facts)
    }

    async fn start_watcher(&self) {
        let mut live = self.live.lock().await;
        if live.watcher.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        let Some(client) = live.k2hr3.clone() else {
            return;
        };
        let (settings, params) = (self.settings.clone(), live.params.clone());
        let ctl = self.ctl_addr(&params);
        let node = Watcher {
            settings,
            client,
            params,
            ctl,
            tag: host_tag(),
            extra: K2HR3_EXTRA,
        };
        live.watcher = Some(tokio::spawn(node.run()));
    }

    /// Resumes after an agent restart: the watcher, and the containers
    /// unless the node was stopped for good.
    pub async fn resume(&self) {
        let saved = load_saved(&self.settings.state_dir).unwrap_or_default();
        if saved.stopped {
            return;
        }
        let _changing = self.changing();
        let params = self.live.lock().await.params.clone();
        if let Err(e) = self.ensure_run_dir() {
            tracing::warn!(error = %e, "could not prepare the run directory on resume");
        }
        if let Ok(text) = std::fs::read_to_string(self.ini_path()) {
            if let Err(e) = self.ensure_k2hfile_dir(&ini::facts(&text)) {
                tracing::warn!(error = %e, "could not prepare the K2HFILE directory on resume");
            }
        }
        // In join's order: k2hdkc attaches to the shared memory chmpx
        // makes, and a chmpx that just started does not answer its
        // control port yet (seen in CI: a restart right after a reboot
        // sent SERVICEOUT to it and got no reply within 10 s).
        match self.containers.run(&self.chmpx_spec(&params)).await {
            Ok(()) => {
                if let Err(e) = self.wait_chmpx_answers(&params).await {
                    tracing::warn!(error = %e, "chmpx does not answer after resume");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not start chmpx on resume"),
        }
        if let Err(e) = self.containers.run(&self.server_spec(&params)).await {
            tracing::warn!(error = %e, "could not start k2hdkc on resume");
        }
        self.record_chmpx_run().await;
        self.start_watcher().await;
        if self.is_member() {
            // Back from a crash or a reboot: merge in what the replicas
            // took meanwhile. In the background: the agent answers Trove
            // while it waits.
            match self.ring_view().await {
                Ok(view) => {
                    tokio::spawn(async move {
                        log_rejoin(rejoin::rejoin(&view, rejoin::REJOIN_WAIT).await)
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot rejoin the ring on resume"),
            }
        }
    }

    fn volumes(&self) -> Vec<Bind> {
        vec![
            Bind {
                host: self.settings.config_dir.display().to_string(),
                container: CONTAINER_CONFIG_DIR.into(),
                read_only: true,
            },
            Bind {
                host: self.settings.run_dir.display().to_string(),
                container: CONTAINER_RUN_DIR.into(),
                read_only: false,
            },
            Bind {
                host: self.settings.data_dir.display().to_string(),
                container: CONTAINER_DATA_DIR.into(),
                read_only: false,
            },
        ]
    }

    fn labels(&self) -> std::collections::BTreeMap<String, String> {
        [
            (
                "org.openstack.trove.instance".to_owned(),
                self.settings.guest_id.clone(),
            ),
            (
                "org.openstack.trove.datastore".to_owned(),
                "k2hdkc".to_owned(),
            ),
        ]
        .into_iter()
        .collect()
    }

    fn argv(&self, program: &str, params: &Parameters) -> Vec<String> {
        let ini = format!("{CONTAINER_CONFIG_DIR}/{INI_NAME}");
        vec![
            program.into(),
            "-conf".into(),
            ini,
            "-ctlport".into(),
            params.server_ctlport.to_string(),
            "-d".into(),
            "err".into(),
        ]
    }

    /// chmpx: its own shareable IPC namespace with room for its message
    /// queues, the guest's network (`network_mode`), SIGINT to stop (it
    /// blocks SIGTERM).
    fn chmpx_spec(&self, params: &Parameters) -> ContainerSpec {
        let s = &self.settings;
        ContainerSpec {
            name: s.chmpx_container(),
            image: s.image.clone(),
            cmd: self.argv("chmpx", params),
            user: format!("{}:{}", s.uid, s.gid),
            network: s.network.clone(),
            ipc: Ipc::Shareable,
            pid_of: None,
            binds: self.volumes(),
            sysctls: [("fs.mqueue.msg_max".to_owned(), s.mq_msg_max.to_string())]
                .into_iter()
                .collect(),
            // The kernel charges every POSIX queue of a uid to that uid,
            // checked against the opener's RLIMIT_MSGQUEUE (819,200 bytes
            // by default), and chmpx raises it only as root. A 128-deep
            // queue takes about 13 KB; every node, slave and client of a
            // host running as the database user shares the count.
            ulimits: (s.msgqueue_bytes > 0)
                .then(|| Ulimit {
                    name: "msgqueue".into(),
                    soft: s.msgqueue_bytes,
                    hard: s.msgqueue_bytes,
                })
                .into_iter()
                .collect(),
            labels: self.labels(),
            env: vec![],
            stop_signal: Some("SIGINT".into()),
            restart_unless_stopped: true,
        }
    }

    /// k2hdkc: chmpx's IPC and PID namespaces (they check each other in /proc).
    fn server_spec(&self, params: &Parameters) -> ContainerSpec {
        let s = &self.settings;
        ContainerSpec {
            name: s.server_container(),
            cmd: self.argv("k2hdkc", params),
            ipc: Ipc::Container(s.chmpx_container()),
            pid_of: Some(s.chmpx_container()),
            sysctls: Default::default(),
            // The chmpx library inside k2hdkc is silent by default
            // (`CHMDBGMODE`): its errors (a lost merge request, a full
            // queue) would never reach the container's log.
            env: vec!["CHMDBGMODE=ERR".to_owned()],
            ..self.chmpx_spec(params)
        }
    }

    /// The node's status: containers first, then chmpx's own view.
    pub async fn status(&self, prepared: bool) -> ServiceStatus {
        let s = &self.settings;
        let chmpx_state = match self.containers.state(&s.chmpx_container()).await {
            Ok(st) => st,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the chmpx container's state");
                return ServiceStatus::Unknown;
            }
        };
        let server_state = self
            .containers
            .state(&s.server_container())
            .await
            .unwrap_or(ContainerState::Missing);
        let from_container = |st: &ContainerState| match st {
            ContainerState::Missing | ContainerState::Created | ContainerState::Exited(0) => {
                Some(ServiceStatus::Shutdown)
            }
            ContainerState::Exited(_) | ContainerState::Dead | ContainerState::Restarting => {
                Some(ServiceStatus::Crashed)
            }
            ContainerState::Paused => Some(ServiceStatus::Paused),
            ContainerState::Running { .. } => None,
        };
        if let Some(st) = from_container(&chmpx_state) {
            // Stopped on purpose (stop_db): however it exited (the real
            // chmpx 1.0.111 can segfault on SIGINT after leaving a lone
            // ring), that is a shutdown, not a crash.
            if prepared && self.live.lock().await.stopped {
                return ServiceStatus::Shutdown;
            }
            return if prepared { st } else { ServiceStatus::Unknown };
        }
        let started_at = match &chmpx_state {
            ContainerState::Running { started_at } => started_at.clone(),
            _ => None,
        };
        let restarted = prepared && self.chmpx_restarted_by_policy(started_at).await;
        if let Some(st) = from_container(&server_state) {
            // k2hdkc lives in chmpx's PID namespace: when chmpx died and
            // Docker restarted it, k2hdkc went with it and cannot be
            // restarted by Docker alone. Bring it back unless stopped on
            // purpose.
            if prepared && !self.live.lock().await.stopped {
                tracing::warn!(state = ?server_state, "k2hdkc is not running beside chmpx; starting it");
                if let Err(e) = self.containers.start(&s.server_container()).await {
                    tracing::error!(error = %e, "could not start k2hdkc");
                }
                return ServiceStatus::Crashed;
            }
            return if prepared { st } else { ServiceStatus::Unknown };
        }
        if restarted {
            return ServiceStatus::Crashed;
        }
        let params = self.live.lock().await.params.clone();
        match chmpx::self_status(&self.ctl_addr(&params)).await {
            Ok(st) if st.is_serving() => ServiceStatus::Healthy,
            Ok(_) => ServiceStatus::Running,
            Err(e) => {
                tracing::warn!(error = %e, "chmpx does not answer on its control port");
                ServiceStatus::Running
            }
        }
    }

    /// `stop_db`: leave the ring (SERVICEOUT), stop, leave K2HR3.
    ///
    /// A cluster member's ring steps are the cluster taskmanager's: it
    /// stops without SERVICEOUT. Trove's reboot and delete both send
    /// `stop_db` without the flag, and a reboot must not change the
    /// membership, so a member leaves K2HR3 only when told it is removed
    /// (`do_not_start_on_reboot`, what the k2hdkc cluster strategy sends
    /// after the ring gave its data away, or to every member on a cluster
    /// delete).
    pub async fn stop(&self, do_not_start_on_reboot: bool) -> Result<(), DatastoreError> {
        let _changing = self.changing();
        self.stop_watcher().await;
        let (params, client) = {
            let mut live = self.live.lock().await;
            live.stopped = true;
            (live.params.clone(), live.k2hr3.clone())
        };
        let member = self.is_member();
        let client = client.filter(|_| !member || do_not_start_on_reboot);
        if member {
            tracing::info!(
                removed = do_not_start_on_reboot,
                "a cluster member stops: no ring step here"
            );
        } else if let Err(e) = self.leave_ring(&params).await {
            // Still a member: keep it registered, serving and watched.
            self.live.lock().await.stopped = false;
            self.start_watcher().await;
            return Err(e);
        }
        // Stopped before it leaves K2HR3: the other nodes' inis drop it
        // when K2HR3 does, and chmpx drops a server at that reload only
        // if it is DOWN by then (seen on the real chmpx: a leaver still UP
        // stayed listed [SERVICE OUT][DOWN] on one member for good).
        self.stop_containers("stop the k2hdkc containers").await?;
        if let Some(client) = &client {
            client
                .deregister(
                    params.server_port,
                    &self.settings.cuk,
                    K2HR3_EXTRA,
                    &host_tag(),
                )
                .await
                .map_err(|e| failed("remove the node from K2HR3", e))?;
            tracing::info!("removed from the K2HR3 role");
        }
        let mut saved = load_saved(&self.settings.state_dir).unwrap_or_default();
        saved.stopped = do_not_start_on_reboot;
        store_saved(&self.settings.state_dir, &saved).map_err(|e| failed("save node state", e))?;
        Ok(())
    }

    /// Leaves the ring before the containers stop: SERVICEOUT in the
    /// grammar of the ini's CHMPXIDTYPE, confirmed by ALLSTATUS, bounded by
    /// `startup_wait`. A refusal or a ring that does not let the node go
    /// fails the operation: stopping anyway would leave keys with a dead
    /// owner.
    async fn leave_ring(&self, params: &Parameters) -> Result<(), DatastoreError> {
        let text = match std::fs::read_to_string(self.ini_path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(failed(&format!("read {}", self.ini_path().display()), e)),
        };
        let facts = ini::facts(&text);
        let outcome = ring::leave(
            &facts,
            &self.settings.cuk,
            &self.ctl_addr(params),
            params.server_ctlport,
            self.settings.startup_wait,
        )
        .await
        .map_err(|e| failed("leave the ring (SERVICEOUT)", e))?;
        match outcome {
            ring::Left::Out {
                command,
                confirmed_by,
            } => tracing::info!(command = %command, confirmed_by, "left the ring"),
            other => tracing::info!(outcome = ?other, "nothing to leave in the ring"),
        }
        Ok(())
    }

    /// Stops k2hdkc, then chmpx (k2hdkc lives on chmpx's shared memory).
    async fn stop_containers(&self, what: &str) -> Result<(), DatastoreError> {
        for name in [
            self.settings.server_container(),
            self.settings.chmpx_container(),
        ] {
            self.containers
                .stop(&name, STOP_GRACE)
                .await
                .map_err(|e| failed(what, e))?;
        }
        Ok(())
    }

    /// Whether chmpx started a new run since the last status round that
    /// no operation of ours asked for: Docker's restart policy brought it
    /// back after a crash, maybe before any round saw it down. Reported
    /// once as `crashed` rather than hidden behind a quick recovery.
    async fn chmpx_restarted_by_policy(&self, now: Option<String>) -> bool {
        let mut live = self.live.lock().await;
        if self.changing.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            // Ours: the operation records the run it started when done.
            return false;
        }
        let before = std::mem::replace(&mut live.chmpx_run, now.clone());
        let restarted = matches!((&before, &now), (Some(b), Some(n)) if b != n);
        if restarted {
            tracing::warn!(
                before = before.as_deref().unwrap_or(""),
                now = now.as_deref().unwrap_or(""),
                "chmpx was restarted by its restart policy: it crashed"
            );
        }
        restarted
    }

    /// The membership watcher stops while the node changes on purpose: it
    /// would otherwise register the node again between leave and join,
    /// with the parameters it started with.
    async fn stop_watcher(&self) {
        if let Some(w) = self.live.lock().await.watcher.take() {
            w.abort();
        }
    }

    /// `restart`: stop both containers and start them again, rejoining.
    /// A cluster member does not leave the ring for it (its ring steps
    /// are the cluster taskmanager's; the replica serves meanwhile).
    pub async fn restart(&self) -> Result<(), DatastoreError> {
        let _changing = self.changing();
        self.stop_watcher().await;
        let params = self.live.lock().await.params.clone();
        if self.is_member() {
            tracing::info!("a cluster member restarts: no ring step here");
        } else if let Err(e) = self.leave_ring(&params).await {
            self.start_watcher().await;
            return Err(e);
        }
        self.stop_containers("stop for restart").await?;
        let client = self
            .live
            .lock()
            .await
            .k2hr3
            .clone()
            .ok_or_else(|| DatastoreError::Conflict("the node was never prepared".into()))?;
        self.join(&client, &params, None, None).await?;
        self.start_watcher().await;
        if self.is_member() {
            log_rejoin(rejoin::rejoin(&self.ring_view().await?, rejoin::REJOIN_WAIT).await)?;
        }
        Ok(())
    }

    /// Applies new parameters: validated first, nothing changed on error.
    /// Port or cluster changes re-register and restart; proxies only
    /// change how K2HR3 is reached.
    pub async fn update_parameters(
        &self,
        changes: &Map<String, Value>,
        remove: bool,
    ) -> Result<(), DatastoreError> {
        let old = self.live.lock().await.params.clone();
        let new = old
            .with(changes, remove)
            .map_err(|p| DatastoreError::BadRequest(p.join("; ")))?;
        if new == old {
            return Ok(());
        }
        let client = self.live.lock().await.k2hr3.clone();
        self.save(&new, client.as_ref().map(|c| c.access()), false)?;
        self.live.lock().await.params = new.clone();
        let needs_restart = (
            new.server_port,
            new.server_ctlport,
            new.slave_ctlport,
            &new.cluster_name,
        ) != (
            old.server_port,
            old.server_ctlport,
            old.slave_ctlport,
            &old.cluster_name,
        );
        if needs_restart {
            if let Some(client) = client {
                // Leave under the old registration, join under the new one.
                let _changing = self.changing();
                self.stop_watcher().await;
                if let Err(e) = self.leave_ring(&old).await {
                    // Nothing changed on the node: back to the old parameters.
                    self.save(&old, Some(client.access()), false)?;
                    self.live.lock().await.params = old.clone();
                    self.start_watcher().await;
                    return Err(e);
                }
                // Down before it leaves K2HR3, as in stop_db: the peers'
                // chmpx drops it at their ini reload only if it is DOWN.
                self.stop_containers("stop for new parameters").await?;
                let _ = client
                    .deregister(
                        old.server_port,
                        &self.settings.cuk,
                        K2HR3_EXTRA,
                        &host_tag(),
                    )
                    .await;
                for name in [
                    self.settings.server_container(),
                    self.settings.chmpx_container(),
                ] {
                    self.containers
                        .remove(&name)
                        .await
                        .map_err(|e| failed("remove for new parameters", e))?;
                }
                self.join(&client, &new, None, None).await?;
                self.start_watcher().await;
            }
        }
        Ok(())
    }

    fn save(
        &self,
        params: &Parameters,
        access: Option<&RoleAccess>,
        stopped: bool,
    ) -> Result<(), DatastoreError> {
        let saved = Saved {
            parameters: params.to_map(),
            api_url: access.map(|a| a.api_url.clone()),
            role_yrn: access.map(|a| a.role_yrn.clone()),
            role_token: access.map(|a| a.role_token.clone()),
            stopped,
            member: self.is_member(),
        };
        store_saved(&self.settings.state_dir, &saved).map_err(|e| failed("save node state", e))
    }
}

fn saved_path(dir: &std::path::Path) -> PathBuf {
    dir.join("k2hdkc-node.json")
}

fn load_saved(dir: &std::path::Path) -> Option<Saved> {
    serde_json::from_str(&std::fs::read_to_string(saved_path(dir)).ok()?).ok()
}

fn store_saved(dir: &std::path::Path, saved: &Saved) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(saved).map_err(std::io::Error::other)?;
    ini::write_atomic(&saved_path(dir), &text, 0o600).map(|_| ())
}

/// Logs how a rejoin went, and passes its error on.
fn log_rejoin(out: Result<rejoin::Rejoined, DatastoreError>) -> Result<(), DatastoreError> {
    match &out {
        Ok(rejoin::Rejoined::Merged(report)) => tracing::info!(
            seconds = report.seconds,
            repairs = report.repairs.len(),
            "back in the ring: merged what this node missed"
        ),
        Ok(rejoin::Rejoined::InRing) => tracing::info!("back in the ring: nothing to merge"),
        Ok(rejoin::Rejoined::NotInRing(st)) => {
            tracing::info!(status = %st, "not in the ring: the cluster taskmanager puts it in")
        }
        Ok(rejoin::Rejoined::Changing(what)) => {
            tracing::info!(ring = %what, "the ring is changing membership: the taskmanager merges it")
        }
        Err(e) => tracing::error!(error = %e, "could not rejoin the ring"),
    }
    out.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use driver_api::host::{ExecOutput, HostError};

    /// An engine whose chmpx is always running and whose `StartedAt` the
    /// test sets.
    struct Engine(std::sync::Mutex<Option<String>>);

    #[async_trait::async_trait]
    impl Containers for Engine {
        async fn ensure_image(&self, _: &str) -> Result<(), HostError> {
            Ok(())
        }
        async fn run(&self, _: &ContainerSpec) -> Result<(), HostError> {
            Ok(())
        }
        async fn state(&self, _: &str) -> Result<ContainerState, HostError> {
            Ok(ContainerState::Running {
                started_at: self.0.lock().unwrap().clone(),
            })
        }
        async fn start(&self, _: &str) -> Result<(), HostError> {
            Ok(())
        }
        async fn stop(&self, _: &str, _: Duration) -> Result<(), HostError> {
            Ok(())
        }
        async fn remove(&self, _: &str) -> Result<(), HostError> {
            Ok(())
        }
        async fn exec(&self, _: &str, _: &[String], _: Duration) -> Result<ExecOutput, HostError> {
            Err(HostError::new("exec", "not in this test"))
        }
    }

    fn settings_with(group: &[(&str, &str)], state: &std::path::Path) -> Settings {
        let ctx = crate::settings::DriverContext {
            guest_id: "g1".into(),
            datastore_version: None,
            group: group
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mount_point: state.join("data"),
            uid: 1001,
            gid: 1001,
            state_dir: state.to_path_buf(),
        };
        Settings::new(&ctx, std::path::Path::new("/nonexistent")).unwrap()
    }

    /// A node whose prepare failed (no ini, no chmpx) still tells the
    /// taskmanager its CUK, and why it has no ring: a shrink can then
    /// remove it as a member that never joined.
    #[tokio::test]
    async fn a_node_without_a_ring_answers_ring_status_with_its_cuk_and_the_cause() {
        let state = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine(std::sync::Mutex::new(None)));
        let node = Node::new(settings_with(&[], state.path()), engine);
        let out = crate::cluster::handle(&node, "k2hdkc_ring_status", &Default::default())
            .await
            .unwrap();
        assert_eq!(out["cuk"], node.cuk());
        assert!(!node.cuk().is_empty());
        assert_eq!(out["servers"], serde_json::json!([]));
        let error = out["error"].as_str().unwrap();
        assert!(error.contains("k2hdkc.ini"), "{error}");
        // Ring steps other than status stay refused on a non-member.
        let e = crate::cluster::handle(&node, "k2hdkc_ring_merge", &Default::default())
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("not prepared as a cluster member"),
            "{e}"
        );
    }

    /// Both containers get the queue limit (k2hdkc opens queues too), and
    /// `msgqueue_bytes = 0` leaves the engine's default.
    #[test]
    fn both_containers_get_the_message_queue_limit_unless_it_is_off() {
        let state = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine(std::sync::Mutex::new(None)));
        let node = Node::new(settings_with(&[], state.path()), engine.clone());
        let p = Parameters::default();
        let want = vec![Ulimit {
            name: "msgqueue".into(),
            soft: 64 << 20,
            hard: 64 << 20,
        }];
        assert_eq!(node.chmpx_spec(&p).ulimits, want);
        assert_eq!(node.server_spec(&p).ulimits, want);
        let off = Node::new(
            settings_with(&[("msgqueue_bytes", "0")], state.path()),
            engine,
        );
        assert!(off.chmpx_spec(&p).ulimits.is_empty());
        assert!(off.server_spec(&p).ulimits.is_empty());
    }

    #[tokio::test]
    async fn a_policy_restart_between_rounds_is_a_crash_and_ours_is_not() {
        let state = tempfile::tempdir().unwrap();
        let settings = settings_with(&[], state.path());
        let engine = Arc::new(Engine(std::sync::Mutex::new(Some("t1".into()))));
        let node = Node::new(settings, engine.clone());
        let set = |t: &str| *engine.0.lock().unwrap() = Some(t.into());
        let run = || engine.0.lock().unwrap().clone();

        assert!(
            !node.chmpx_restarted_by_policy(run()).await,
            "the first round only records"
        );
        assert!(!node.chmpx_restarted_by_policy(run()).await, "same run");
        set("t2");
        assert!(
            node.chmpx_restarted_by_policy(run()).await,
            "a new run nobody asked for"
        );
        assert!(
            !node.chmpx_restarted_by_policy(run()).await,
            "reported once"
        );
        {
            let _ours = node.changing();
            set("t3");
            assert!(
                !node.chmpx_restarted_by_policy(run()).await,
                "a run we are starting"
            );
            node.record_chmpx_run().await;
        }
        assert!(
            !node.chmpx_restarted_by_policy(run()).await,
            "the run we recorded is no crash"
        );
        set("t4");
        assert!(node.chmpx_restarted_by_policy(run()).await);
    }
}
