//! `k2hdkc-slave`: an application host's way into a K2HDKC cluster.
//!
//! [`run`] registers the host in the cluster's slave role in K2HR3, makes
//! a slave ini from the resource K2HR3 renders for it, runs chmpx in SLAVE
//! mode in a container, and keeps the ini converged with the ring until
//! the shutdown future completes; then it stops the container and leaves
//! the role. Applications attach to that chmpx: they join the container's
//! IPC and PID namespaces and mount the ini and chmpx's files
//! (docs/applications.md). The `k2hdkc-slave` binary (in the agent's
//! package) is a thin entry over [`run`].
//!
//! | file        | what                                             |
//! |-------------|--------------------------------------------------|
//! | `mod.rs`    | the slave's life: register, start, converge, leave |
//! | `render.rs` | the slave ini made from what K2HR3 renders       |
//! | `config.rs` | `/etc/k2hdkc/slave.conf`                         |
//! | `status.rs` | what `k2hdkc-slave status` reads                 |

pub mod config;
pub mod render;
pub mod status;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::chmpx;
use crate::ini::{self, IniFacts};
use crate::k2hr3::{self, K2hr3, K2hr3Error, Member, RoleAccess};
use crate::limits;
use crate::paths::EXTDATA_NAMES;
use crate::watcher;
use driver_api::host::{Bind, ContainerSpec, ContainerState, Containers, HostError, Ipc};

use config::{RoleSource, SlaveConfig};
use render::{slave_ini, SlaveIni};
use status::Recorded;

/// The ini's name in its directory, and where the container sees it.
pub const INI_NAME: &str = "slave.ini";
/// Where the container sees the ini's directory.
pub const CONTAINER_INI_DIR: &str = "/etc/antpickax";
/// Where the container sees chmpx's files.
pub const CONTAINER_RUN_DIR: &str = "/var/lib/antpickax";
/// How long chmpx may take to show `[SLAVE][UP]` after it starts.
pub const UP_WAIT: Duration = Duration::from_secs(30);
/// chmpx's grace after SIGINT before the engine kills it.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// What the slave sends as K2HR3's `extra`.
pub const EXTRA: &str = "k2hdkc-slave";
/// How long leaving (container stop and K2HR3) may take at shutdown.
pub const LEAVE_BOUND: Duration = Duration::from_secs(60);

/// Why the slave could not start or run, by layer.
#[derive(Debug, thiserror::Error)]
pub enum SlaveError {
    /// K2HR3 refused or was unreachable.
    #[error(transparent)]
    K2hr3(#[from] K2hr3Error),
    /// The rendered resource cannot make a slave ini.
    #[error("cannot make the slave ini from the K2HR3 resource: {0}")]
    Ini(#[from] render::IniError),
    /// The container engine.
    #[error(transparent)]
    Host(#[from] HostError),
    /// Local files.
    #[error("{0}")]
    Io(String),
    /// chmpx did not come up.
    #[error("the chmpx slave did not show [SLAVE][UP] within {UP_WAIT:?}: {0}")]
    NotUp(String),
}

/// A time as RFC 3339 UTC, whole seconds (`2026-12-01T08:00:00Z`).
pub fn utc_text(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The HTTP client for K2HR3 (with the configured CA, if any).
pub fn http_client(cfg: &SlaveConfig) -> Result<reqwest::Client, SlaveError> {
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| SlaveError::Io(format!("cannot read ca_file {}: {e}", path.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| SlaveError::Io(format!("ca_file {}: {e}", path.display())))?;
        b = b.add_root_certificate(cert);
    }
    b.build()
        .map_err(|e| SlaveError::Io(format!("cannot make an HTTP client: {e}")))
}

/// The role access: from the EXTDATA text, or as configured.
pub async fn role_access(
    cfg: &SlaveConfig,
    http: &reqwest::Client,
) -> Result<RoleAccess, SlaveError> {
    Ok(match &cfg.role {
        RoleSource::Extdata(url) => k2hr3::fetch_extdata(http, url, &EXTDATA_NAMES).await?,
        RoleSource::Direct {
            api_url,
            role,
            token,
        } => RoleAccess {
            api_url: api_url.clone(),
            role_yrn: role.clone(),
            role_token: token.expose().to_owned(),
        },
    })
}

/// The server nodes as `name:port`.
fn server_names(facts: &IniFacts) -> Vec<String> {
    facts
        .servers
        .iter()
        .map(|s| format!("{}:{}", s.name, s.port.unwrap_or_default()))
        .collect()
}

/// This host's K2HR3 `cuk`: made once, kept in the state directory, so a
/// restarted slave registers (and leaves) as the same member.
fn cuk(state_dir: &Path) -> Result<String, SlaveError> {
    let path = state_dir.join("cuk");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    ini::write_atomic(&path, &format!("{id}\n"), 0o644)
        .map_err(|e| SlaveError::Io(format!("cannot write {}: {e}", path.display())))?;
    Ok(id)
}

/// One running slave.
pub struct Slave {
    cfg: SlaveConfig,
    containers: Arc<dyn Containers>,
    client: K2hr3,
    cuk: String,
    ctlport: u16,
    ini: SlaveIni,
    record: Recorded,
    /// The engine refused `msgqueue_bytes` once (see `crate::limits`).
    msgqueue_refused: bool,
}

impl Slave {
    /// This slave's entry in the slave role.
    fn member(&self) -> Member {
        Member {
            port: self.ctlport,
            cuk: self.cuk.clone(),
            extra: EXTRA.to_owned(),
            tag: self.cfg.seed.clone(),
        }
    }

    fn ini_path(&self) -> std::path::PathBuf {
        self.cfg.ini_dir().join(INI_NAME)
    }

    /// Runs chmpx's container; where the engine may not raise
    /// RLIMIT_MSGQUEUE, without the limit from then on.
    async fn run_container(&mut self) -> Result<(), HostError> {
        let spec = self.spec();
        if limits::run(self.containers.as_ref(), &spec, self.cfg.msgqueue_bytes).await? {
            self.msgqueue_refused = true;
        }
        Ok(())
    }

    fn ctl(&self) -> String {
        format!("127.0.0.1:{}", self.ctlport)
    }

    fn save(&mut self) {
        if let Err(e) = self.record.write(&self.cfg.status_path()) {
            tracing::warn!(error = %e, "cannot record the slave's state");
        }
    }

    /// chmpx in SLAVE mode: its own shareable IPC namespace with room for
    /// its queues, the configured network, SIGINT to stop (it blocks
    /// SIGTERM), restarted by the engine if it dies.
    pub fn spec(&self) -> ContainerSpec {
        let c = &self.cfg;
        ContainerSpec {
            name: c.container.clone(),
            image: c.image.clone(),
            cmd: vec![
                "chmpx".into(),
                "-conf".into(),
                format!("{CONTAINER_INI_DIR}/{INI_NAME}"),
                "-ctlport".into(),
                self.ctlport.to_string(),
                "-d".into(),
                "err".into(),
            ],
            user: format!("{}:{}", c.uid, c.gid),
            network: c.network.clone(),
            ipc: Ipc::Shareable,
            pid_of: None,
            binds: vec![
                Bind {
                    host: c.ini_dir().display().to_string(),
                    container: CONTAINER_INI_DIR.into(),
                    read_only: true,
                },
                Bind {
                    host: c.run_dir().display().to_string(),
                    container: CONTAINER_RUN_DIR.into(),
                    read_only: false,
                },
            ],
            sysctls: [(
                "fs.mqueue.msg_max".to_owned(),
                self.ini.mq_msg_max.to_string(),
            )]
            .into_iter()
            .collect(),
            ulimits: if self.msgqueue_refused {
                Vec::new()
            } else {
                limits::msgqueue(c.msgqueue_bytes)
            },
            labels: [
                (
                    "org.openstack.trove.k2hdkc.slave".to_owned(),
                    self.record.role.clone(),
                ),
                (
                    "org.openstack.trove.datastore".to_owned(),
                    "k2hdkc".to_owned(),
                ),
            ]
            .into_iter()
            .collect(),
            env: vec![],
            stop_signal: Some("SIGINT".into()),
            restart_unless_stopped: true,
        }
    }

    /// Directories: the state 0755 (the ini is read by the database
    /// user), chmpx's files owned by the database user.
    fn prepare_dirs(cfg: &SlaveConfig) -> Result<(), SlaveError> {
        let io = |what: &Path, e: std::io::Error| {
            SlaveError::Io(format!("cannot prepare {}: {e}", what.display()))
        };
        for dir in [&cfg.state_dir, &cfg.ini_dir()] {
            ini::ensure_shared_dir(dir).map_err(|e| io(dir, e))?;
        }
        let run = cfg.run_dir();
        ini::ensure_shared_dir(&run).map_err(|e| io(&run, e))?;
        std::os::unix::fs::chown(&run, Some(cfg.uid), Some(cfg.gid)).map_err(|e| io(&run, e))
    }

    /// Registers, writes the ini, starts chmpx and waits for `[SLAVE][UP]`.
    pub async fn start(
        cfg: SlaveConfig,
        containers: Arc<dyn Containers>,
    ) -> Result<Slave, SlaveError> {
        let began = Instant::now();
        Self::prepare_dirs(&cfg)?;
        let http = http_client(&cfg)?;
        let access = role_access(&cfg, &http).await?;
        let client = K2hr3::new(http, access);
        let text = client.resource().await?;
        let made = slave_ini(&text, &cfg.seed, cfg.ctlport).map_err(SlaveError::Ini)?;
        let cuk = cuk(&cfg.state_dir)?;
        let mut slave = Slave {
            record: Recorded {
                state: "starting".into(),
                role: client.access().role_yrn.clone(),
                seed: cfg.seed.clone(),
                container: cfg.container.clone(),
                ctlport: made.ctlport,
                servers: server_names(&made.facts),
                ..Recorded::default()
            },
            ctlport: made.ctlport,
            ini: made,
            cfg,
            containers,
            client,
            cuk,
            msgqueue_refused: false,
        };
        slave.save();
        slave.client.register(&slave.member()).await?;
        slave.record.registered = true;
        tracing::info!(role = %slave.record.role, seed = %slave.cfg.seed, ctlport = slave.ctlport, "registered in the slave role");
        if let Err(e) = slave.start_chmpx().await {
            slave.record.state = "failed".into();
            slave.record.last_error = Some(e.to_string());
            slave.leave().await;
            return Err(e);
        }
        slave.record.state = "up".into();
        slave.save();
        tracing::info!(
            servers = ?slave.record.servers,
            took_ms = began.elapsed().as_millis() as u64,
            "slave up"
        );
        Ok(slave)
    }

    async fn start_chmpx(&mut self) -> Result<(), SlaveError> {
        let path = self.ini_path();
        ini::write_atomic(&path, &self.ini.text, 0o644)
            .map_err(|e| SlaveError::Io(format!("cannot write {}: {e}", path.display())))?;
        self.record.ini_updated_at = utc_text(SystemTime::now());
        self.save();
        let t = Instant::now();
        self.containers.ensure_image(&self.cfg.image).await?;
        self.run_container().await?;
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "chmpx slave container started"
        );
        let until = Instant::now() + UP_WAIT;
        let mut last;
        loop {
            match chmpx::self_status(&self.ctl()).await {
                Ok(s) if s.is_slave_up() => return Ok(()),
                Ok(s) => last = s.to_string(),
                Err(e) => last = e.to_string(),
            }
            if let Ok(ContainerState::Exited(code)) =
                self.containers.state(&self.cfg.container).await
            {
                last = format!("the container exited ({code}); its log says why");
            }
            if Instant::now() >= until {
                return Err(SlaveError::NotUp(last));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One round: the ini follows the ring (a dropped server waits until
    /// chmpx would drop it, as on the servers), and chmpx runs.
    pub async fn converge(&mut self, failures: &mut u32) {
        let made = match self.client.resource().await {
            Ok(text) => {
                self.register_again_if_lost(&text).await;
                slave_ini(&text, &self.cfg.seed, Some(self.ctlport)).map_err(SlaveError::Ini)
            }
            Err(e) => Err(e.into()),
        };
        match made {
            Err(e) => {
                *failures += 1;
                if *failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, failures = *failures, "cannot re-read the ring from K2HR3; keeping the current ini");
                }
                self.record.last_error = Some(e.to_string());
            }
            Ok(made) if made.text != self.ini.text => {
                *failures = 0;
                let gone = watcher::dropped(&self.ini.facts, &made.facts);
                if !gone.is_empty() {
                    watcher::hold_until_out(&self.ctl(), &gone).await;
                }
                let path = self.ini_path();
                match ini::write_atomic(&path, &made.text, 0o644) {
                    Ok(_) => {
                        tracing::info!(
                            before = ?self.record.servers,
                            now = ?server_names(&made.facts),
                            "the ring changed: slave ini updated"
                        );
                        self.record.servers = server_names(&made.facts);
                        self.record.ini_updated_at = utc_text(SystemTime::now());
                        self.record.last_error = None;
                        self.ini = made;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, path = %path.display(), "cannot write the slave ini");
                        self.record.last_error =
                            Some(format!("cannot write {}: {e}", path.display()));
                    }
                }
            }
            Ok(_) => *failures = 0,
        }
        match self.containers.state(&self.cfg.container).await {
            Ok(ContainerState::Running { .. } | ContainerState::Restarting) => {}
            Ok(other) => {
                tracing::warn!(state = ?other, "the chmpx slave is not running; starting it again");
                if let Err(e) = self.run_container().await {
                    tracing::error!(error = %e, "cannot start the chmpx slave");
                    self.record.last_error = Some(e.to_string());
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot see the chmpx slave's container"),
        }
        self.save();
    }

    /// The slave resource lists the registered slaves by seed (the
    /// packaged template does): when it lists some but not this one,
    /// K2HR3 lost the registration, so register again. A resource without
    /// seeds (a server one) cannot tell, and is left alone.
    async fn register_again_if_lost(&mut self, text: &str) {
        let slaves = ini::facts(text).slaves;
        let seeds: Vec<&str> = slaves
            .iter()
            .filter_map(|s| s.custom_id_seed.as_deref())
            .collect();
        if seeds.is_empty() || seeds.contains(&self.cfg.seed.as_str()) {
            return;
        }
        tracing::warn!(seed = %self.cfg.seed, "K2HR3 no longer lists this slave; registering again");
        match self.client.register(&self.member()).await {
            Ok(()) => self.record.registered = true,
            Err(e) => {
                tracing::warn!(error = %e, "registering again failed");
                self.record.registered = false;
                self.record.last_error = Some(e.to_string());
            }
        }
    }

    /// Stops chmpx (applications lose the ring) and leaves the role, each
    /// bounded; what fails is logged and recorded.
    pub async fn leave(&mut self) {
        let name = self.cfg.container.clone();
        let stopped = async {
            self.containers.stop(&name, STOP_GRACE).await?;
            self.containers.remove(&name).await
        };
        if let Err(e) = stopped.await {
            tracing::error!(error = %e, "cannot stop the chmpx slave");
            self.record.last_error = Some(e.to_string());
        }
        if self.record.registered {
            match self.client.deregister(&self.member()).await {
                Ok(()) => {
                    self.record.registered = false;
                    tracing::info!(role = %self.record.role, "left the slave role");
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot leave the slave role in K2HR3");
                    self.record.last_error = Some(e.to_string());
                }
            }
        }
        if self.record.state != "failed" {
            self.record.state = "stopped".into();
        }
        self.save();
    }
}

/// The whole slave: start, converge every `poll_interval` until
/// `shutdown`, leave. A start that fails leaves nothing behind.
pub async fn run(
    cfg: SlaveConfig,
    containers: Arc<dyn Containers>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SlaveError> {
    let poll = cfg.poll_interval;
    let status_path = cfg.status_path();
    tokio::pin!(shutdown);
    // Start runs to its end (every step is bounded), so a stop during it
    // still finds something whole to take down.
    let mut slave = match Slave::start(cfg, containers).await {
        Ok(s) => s,
        Err(e) => {
            // `status` then says why, not "starting".
            let mut rec = Recorded::read(&status_path).unwrap_or_default();
            rec.state = "failed".into();
            rec.last_error = Some(e.to_string());
            if let Err(w) = rec.write(&status_path) {
                tracing::warn!(error = %w, "cannot record the slave's state");
            }
            return Err(e);
        }
    };
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(poll) => {}
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = slave.converge(&mut failures) => {}
        }
    }
    tracing::info!("stopping: the chmpx slave, then the slave role");
    if tokio::time::timeout(LEAVE_BOUND, slave.leave())
        .await
        .is_err()
    {
        tracing::error!("leaving took longer than {LEAVE_BOUND:?}; exiting anyway");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn utc_text_is_rfc3339() {
        assert_eq!(utc_text(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_083_200 + 3_723);
        assert_eq!(utc_text(t), "2026-12-01T01:02:03Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_text(leap), "2000-02-29T00:00:00Z");
    }
}
