//! A K2HDKC server node's lifecycle: register with K2HR3, write the ini
//! K2HR3 renders, run chmpx and k2hdkc, report health, leave cleanly, and
//! start the role watcher (`watcher.rs`) that keeps the ini converged.
//!
//! | file           | what                                                  |
//! |----------------|-------------------------------------------------------|
//! | `mod.rs`       | the node, `prepare` and the join it runs              |
//! | `lifecycle.rs` | stop, restart, resume, new parameters, reattach       |
//! | `status.rs`    | the status Trove's heartbeat reports                  |
//! | `wait.rs`      | the bounded waits of a join                           |
//! | `spec.rs`      | the chmpx and k2hdkc containers                       |
//! | `files.rs`     | the run directory, the K2HFILE's directory, the ini   |
//! | `saved.rs`     | what is kept across agent restarts                    |
//! | `upgrade.rs`   | another datastore version on the same volume          |

use std::sync::Arc;
use std::time::Duration;

use driver_api::host::Containers;
use driver_api::DatastoreError;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::ini;
use crate::k2hr3::{self, K2hr3, Member, RoleAccess};
use crate::overrides::Parameters;
use crate::paths::{EXTDATA_NAMES, K2HR3_EXTRA};
use crate::ring::RingView;
use crate::settings::Settings;
use crate::watcher::Watcher;

mod files;
mod lifecycle;
mod logs;
#[cfg(test)]
pub(crate) use logs::level_in;
mod metrics;
mod saved;
mod spec;
mod status;
mod upgrade;
mod wait;

use saved::load_saved;

/// The host name k2hr3-init sends as the member's `tag`.
fn host_tag() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// This node's entry in its K2HR3 role, for a server on `port`.
fn k2hr3_member(settings: &Settings, port: u16) -> Member {
    Member {
        port,
        cuk: settings.cuk.clone(),
        extra: K2HR3_EXTRA.to_owned(),
        tag: host_tag(),
    }
}
/// A backup to restore in prepare.
#[derive(Debug, Clone, Copy)]
pub struct Restore<'a> {
    /// Which backup, where.
    pub info: &'a driver_api::BackupInfo,
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
    /// Since when the status rounds have seen this node in service with
    /// k2hdkc running but not attached (`[Suspend]`).
    detached_since: Option<std::time::Instant>,
    /// The status chmpx's last answer gave, and since when its control
    /// port has not answered (see `Node::status`).
    last_answered: Option<driver_api::ServiceStatus>,
    unanswered_since: Option<std::time::Instant>,
}

/// The datastore version the node runs and its image: the guest's own
/// until an upgrade changes both (kept in the saved state).
#[derive(Debug, Clone)]
struct Running {
    version: Option<String>,
    image: String,
}

/// The K2HDKC node.
pub struct Node {
    settings: Settings,
    running: std::sync::RwLock<Running>,
    containers: Arc<dyn Containers>,
    http: reqwest::Client,
    live: Mutex<Live>,
    /// Operations that start or stop containers on purpose, in progress:
    /// a new chmpx run then is not a crash.
    changing: std::sync::atomic::AtomicU32,
    /// A cluster member (see [`Saved::member`]).
    member: std::sync::atomic::AtomicBool,
    /// The engine refused `msgqueue_bytes` once: every container of the
    /// node runs with the host's limit since (see `crate::limits`).
    msgqueue_refused: std::sync::atomic::AtomicBool,
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
        let running = match saved
            .datastore_version
            .as_deref()
            .and_then(|v| Some((v, settings.image_for(v)?)))
        {
            Some((v, image)) => Running {
                version: Some(v.to_owned()),
                image,
            },
            None => Running {
                version: settings.datastore_version.clone(),
                image: settings.image.clone(),
            },
        };
        let live = Live {
            params,
            k2hr3,
            watcher: None,
            stopped: saved.stopped,
            chmpx_run: None,
            detached_since: None,
            last_answered: None,
            unanswered_since: None,
        };
        Node {
            settings,
            running: std::sync::RwLock::new(running),
            containers,
            http,
            live: Mutex::new(live),
            changing: Default::default(),
            member: saved.member.into(),
            msgqueue_refused: Default::default(),
        }
    }

    /// The image the node's containers run.
    pub(crate) fn image(&self) -> String {
        self.running.read().unwrap().image.clone()
    }

    /// The datastore version the node runs, if known.
    pub fn datastore_version(&self) -> Option<String> {
        self.running.read().unwrap().version.clone()
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

    /// Held while containers are started or stopped on purpose.
    fn changing(&self) -> Changing<'_> {
        self.changing
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Changing(&self.changing)
    }

    /// Whether an operation of ours is starting or stopping containers now.
    fn changing_now(&self) -> bool {
        self.changing.load(std::sync::atomic::Ordering::SeqCst) > 0
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
            .register(&k2hr3_member(s, params.server_port))
            .await
            .map_err(|e| failed("register the node with K2HR3", e))?;
        tracing::info!(cuk = %s.cuk, port = params.server_port, "registered with K2HR3");
        let mut facts = self.refresh_ini(client).await?;
        if let Some(size) = ring_size {
            facts = self.wait_ring_listed(client, facts, size).await?;
        }

        self.containers
            .ensure_image(&self.image())
            .await
            .map_err(|e| failed("get the k2hdkc image", e))?;
        self.ensure_run_dir()?;
        // A second lone node too: its chmpx is refused by a first node
        // that does not list it yet (seen in the quickstart on the real
        // image: the new node's k2hdkc never attached).
        self.wait_known_by_peers(&facts, params).await;
        self.run_spec(self.chmpx_spec(params))
            .await
            .map_err(|e| failed("start chmpx", e))?;

        // A node that is not the first server waits for the first one, as
        // the old image does, so the ring forms from one node. Cluster
        // members start together and are put into the ring afterwards.
        let member = self.is_member();
        let first = facts.servers.first().cloned().filter(|_| !member);
        if let Some(first) = first.filter(|f| f.cuk.as_deref() != Some(s.cuk.as_str())) {
            let addr = facts.ctl_addr_of(&first, params.server_ctlport);
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
            crate::backup::restore::restore(
                &self.settings,
                self.containers.as_ref(),
                r.info,
                r.access,
                &facts,
            )
            .await?;
        }
        self.run_spec(self.server_spec(params))
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

    /// The K2HR3 client prepare set up; a node never prepared has none.
    async fn prepared_client(&self) -> Result<K2hr3, DatastoreError> {
        self.live
            .lock()
            .await
            .k2hr3
            .clone()
            .ok_or_else(|| DatastoreError::Conflict("the node was never prepared".into()))
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
        let member = k2hr3_member(&settings, params.server_port);
        let node = Watcher {
            settings,
            client,
            params,
            ctl,
            member,
        };
        live.watcher = Some(tokio::spawn(node.run()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Engine;
    use driver_api::host::Ulimit;

    pub(super) fn settings_with(group: &[(&str, &str)], state: &std::path::Path) -> Settings {
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
        let engine = Arc::new(Engine::default());
        let node = Node::new(settings_with(&[], state.path()), engine);
        let out = crate::cluster::handle(
            &node,
            driver_api::ring::RingRequest::Status { timeout: None },
        )
        .await
        .unwrap();
        assert_eq!(out["cuk"], node.cuk());
        assert!(!node.cuk().is_empty());
        assert_eq!(out["servers"], serde_json::json!([]));
        let error = out["error"].as_str().unwrap();
        assert!(error.contains("k2hdkc.ini"), "{error}");
        // Ring steps other than status stay refused on a non-member.
        let e = crate::cluster::handle(
            &node,
            driver_api::ring::RingRequest::Merge {
                timeout: None,
                rearm_after: None,
            },
        )
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
        let engine = Arc::new(Engine::default());
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

    /// Where the engine may not raise the queue limit, the node runs its
    /// containers with the host's (and says so) instead of failing.
    #[tokio::test]
    async fn an_engine_that_may_not_raise_the_queue_limit_gets_containers_without_it() {
        let state = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine {
            refuse_rlimit: true,
            ..Engine::default()
        });
        let node = Node::new(settings_with(&[], state.path()), engine.clone());
        let p = Parameters::default();
        node.run_spec(node.chmpx_spec(&p)).await.unwrap();
        node.run_spec(node.server_spec(&p)).await.unwrap();
        let ran = engine.ran.lock().unwrap().clone();
        assert_eq!(ran.len(), 2);
        assert!(ran.iter().all(|s| s.ulimits.is_empty()), "{ran:?}");
        // The refusal is remembered: later specs come without the limit.
        assert!(node.chmpx_spec(&p).ulimits.is_empty());
    }

    #[tokio::test]
    async fn a_policy_restart_between_rounds_is_a_crash_and_ours_is_not() {
        let state = tempfile::tempdir().unwrap();
        let settings = settings_with(&[], state.path());
        let engine = Arc::new(Engine {
            started_at: std::sync::Mutex::new(Some("t1".into())),
            ..Engine::default()
        });
        let node = Node::new(settings, engine.clone());
        let set = |t: &str| *engine.started_at.lock().unwrap() = Some(t.into());
        let run = || engine.started_at.lock().unwrap().clone();

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
