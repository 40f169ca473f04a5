//! The agent's configuration, read the way oslo.config reads Trove's files.
//!
//! Trove injects `guest_info.conf` and `trove-guestagent.conf` into
//! `/etc/trove/conf.d`; upstream runs `trove-guestagent --config-dir
//! /etc/trove/conf.d`. Files are read in command-line order (a directory's
//! `*.conf` files sorted by name), and a later value wins. Keys may use `-`
//! or `_`; values may be quoted; empty values and the literal `None` mean
//! "not set" for optional settings.
//!
//! We are strict about the groups this agent owns (`[DEFAULT]`,
//! `[oslo_messaging_rabbit]`, the datastore's group): a key neither we nor
//! upstream Trove/oslo know is a typo, and is reported with its file.
//! Options upstream knows but this agent has no use for are accepted and
//! listed at debug level. Groups of other datastores are ignored.

mod files;
mod transport;
mod typed;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use transport::{BrokerHost, TransportUrl};

pub use driver_api::Secret;
pub use files::files_of;

use files::OsloFile;
use typed::Typed;

/// One bad setting: which file, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file the value came from (or `<defaults>`).
    pub file: String,
    /// `[group] key`, or a line number for a parse error.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.reason)
    }
}

/// Every problem found, one line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "config error: {p}")?;
        }
        Ok(())
    }
}

/// Where configuration comes from, in the order given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--config-file FILE`.
    File(PathBuf),
    /// `--config-dir DIR`: every `*.conf` in it, sorted.
    Dir(PathBuf),
}

/// The `[oslo_messaging_rabbit]` settings that shape what we declare and
/// how we connect; defaults are oslo.messaging 18.x's.
#[derive(Debug, Clone, PartialEq)]
pub struct RabbitOptions {
    /// `amqp_durable_queues`.
    pub amqp_durable_queues: bool,
    /// `amqp_auto_delete`.
    pub amqp_auto_delete: bool,
    /// `rabbit_ha_queues`: adds `x-ha-policy: all`.
    pub rabbit_ha_queues: bool,
    /// `rabbit_quorum_queue`: topic queues are quorum queues.
    pub rabbit_quorum_queue: bool,
    /// `rabbit_transient_quorum_queue`: fanout and reply queues are quorum.
    pub rabbit_transient_quorum_queue: bool,
    /// `rabbit_quorum_delivery_limit` (0 = unset).
    pub rabbit_quorum_delivery_limit: u64,
    /// `rabbit_quorum_max_memory_length` (0 = unset).
    pub rabbit_quorum_max_memory_length: u64,
    /// `rabbit_quorum_max_memory_bytes` (0 = unset).
    pub rabbit_quorum_max_memory_bytes: u64,
    /// `rabbit_transient_queues_ttl` seconds (`x-expires`; 0 = none).
    pub rabbit_transient_queues_ttl: u64,
    /// `rabbit_stream_fanout`: fanout queues are one shared stream.
    pub rabbit_stream_fanout: bool,
    /// `rabbit_qos_prefetch_count` (0 = ours: see `rpc::PREFETCH`).
    pub rabbit_qos_prefetch_count: u16,
    /// `enable_cancel_on_failover`.
    pub enable_cancel_on_failover: bool,
    /// `heartbeat_timeout_threshold` seconds (0 = no AMQP heartbeat).
    pub heartbeat_timeout_threshold: u16,
    /// `rabbit_retry_interval` seconds: first reconnect delay.
    pub rabbit_retry_interval: u64,
    /// `rabbit_retry_backoff` seconds added per attempt.
    pub rabbit_retry_backoff: u64,
    /// `rabbit_interval_max` seconds: the reconnect delay's cap.
    pub rabbit_interval_max: u64,
    /// `ssl`: connect with TLS.
    pub ssl: bool,
    /// `ssl_ca_file`: CA bundle to verify the broker with.
    pub ssl_ca_file: Option<PathBuf>,
    /// `ssl_cert_file`: client certificate (PEM).
    pub ssl_cert_file: Option<PathBuf>,
    /// `ssl_key_file`: client key (PEM).
    pub ssl_key_file: Option<PathBuf>,
}

impl Default for RabbitOptions {
    fn default() -> Self {
        Self {
            amqp_durable_queues: false,
            amqp_auto_delete: false,
            rabbit_ha_queues: false,
            rabbit_quorum_queue: false,
            rabbit_transient_quorum_queue: false,
            rabbit_quorum_delivery_limit: 0,
            rabbit_quorum_max_memory_length: 0,
            rabbit_quorum_max_memory_bytes: 0,
            rabbit_transient_queues_ttl: 1800,
            rabbit_stream_fanout: false,
            rabbit_qos_prefetch_count: 0,
            enable_cancel_on_failover: false,
            heartbeat_timeout_threshold: 60,
            rabbit_retry_interval: 1,
            rabbit_retry_backoff: 2,
            rabbit_interval_max: 30,
            ssl: false,
            ssl_ca_file: None,
            ssl_cert_file: None,
            ssl_key_file: None,
        }
    }
}

/// Upstream's backup options (`[DEFAULT]`), as a guest uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupOptions {
    /// `backup_swift_container`: where backups go when the request names
    /// no container.
    pub swift_container: String,
    /// `backup_segment_max_size`: the largest segment, in bytes.
    pub segment_max_size: u64,
    /// `backup_aes_cbc_key`: encrypt backups (and decrypt restores).
    pub aes_cbc_key: Option<Secret>,
    /// `swift_api_insecure`: do not verify Swift's TLS certificate.
    pub swift_api_insecure: bool,
}

/// Upstream's guest log options, as a guest uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestLogOptions {
    /// `guest_log_container_name`.
    pub container: String,
    /// `guest_log_limit`: the largest object published, in bytes.
    pub limit: usize,
    /// `guest_log_expiry`: seconds until Swift removes a published log.
    pub expiry: u64,
    /// `[<datastore>] guest_log_exposed_logs`: the logs tenants see
    /// (admins see all).
    pub exposed: Vec<String>,
    /// `swift_url`: the Swift URL the project id is appended to; unset,
    /// the caller's catalog names it.
    pub swift_url: Option<String>,
    /// `swift_service_type`.
    pub swift_service_type: String,
    /// `swift_endpoint_type` (`publicURL`, `internalURL`, `adminURL`).
    pub swift_endpoint_type: String,
    /// `log_dir` / `log_file`: the agent's own log file, also the `guest`
    /// log; unset, the agent logs to stderr only.
    pub log_file: Option<PathBuf>,
}

/// Smallest `backup_segment_max_size` accepted: Swift's SLO needs every
/// segment but the last to be at least 1 byte, and tiny segments would
/// make thousands of requests.
pub const MIN_SEGMENT_SIZE: u64 = 1024 * 1024;

/// The datastore's option group (`[k2hdkc]`): what the agent itself needs
/// from it, plus the whole group for the driver.
#[derive(Debug, Clone, PartialEq)]
pub struct DatastoreGroup {
    /// The group's name (= `datastore_manager`).
    pub name: String,
    /// `mount_point`: where the data volume is mounted.
    pub mount_point: PathBuf,
    /// `device_path`: the data volume's device.
    pub device_path: PathBuf,
    /// `database_service_uid`: the user the database runs as.
    pub database_service_uid: u32,
    /// `database_service_gid`.
    pub database_service_gid: u32,
    /// Every key of the group as given (driver-specific settings).
    pub values: BTreeMap<String, String>,
    /// `metrics_listen`: where the Prometheus endpoint listens (off when
    /// unset).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `guest_id`: the Trove instance id.
    pub guest_id: String,
    /// `datastore_manager` (e.g. `k2hdkc`).
    pub datastore_manager: String,
    /// `datastore_version`.
    pub datastore_version: Option<String>,
    /// `tenant_id`.
    pub tenant_id: Option<String>,
    /// `instance_rpc_encr_key`: the per-instance secure-RPC key.
    pub instance_rpc_encr_key: Option<Secret>,
    /// `transport_url`.
    pub transport_url: TransportUrl,
    /// `control_exchange` (Trove sets `trove`).
    pub control_exchange: String,
    /// `conductor_queue`.
    pub conductor_queue: String,
    /// `report_interval`: seconds between heartbeats.
    pub report_interval: Duration,
    /// `state_change_wait_time`: the bound on waiting for the datastore.
    pub state_change_wait_time: Duration,
    /// `graceful_shutdown_timeout`: how long in-flight work may take after SIGTERM.
    pub graceful_shutdown_timeout: Duration,
    /// `debug`.
    pub debug: bool,
    /// `[oslo_messaging_rabbit]`.
    pub rabbit: RabbitOptions,
    /// The datastore's group.
    pub datastore: DatastoreGroup,
    /// Where prepare markers and other agent state live.
    pub state_dir: PathBuf,
    /// How the data volume is formatted and mounted.
    pub volume: crate::volume::VolumeOptions,
    /// Backups.
    pub backup: BackupOptions,
    /// The guest log API and the agent's log file.
    pub guest_log: GuestLogOptions,
    /// Options upstream knows that this agent does not use, with their file.
    pub ignored: Vec<String>,
}

impl Config {
    /// Loads from command-line sources (files and directories, in order).
    pub fn load(sources: &[Source]) -> Result<Config, ConfigError> {
        let files = files_of(sources)?;
        let mut texts = Vec::new();
        let mut problems = Vec::new();
        for path in &files {
            match std::fs::read_to_string(path) {
                Ok(text) => texts.push((path.display().to_string(), text)),
                Err(e) => problems.push(ConfigProblem {
                    file: path.display().to_string(),
                    key: "--config-file".into(),
                    reason: format!("cannot read file: {e}"),
                }),
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Config::from_texts(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    }

    /// Parses configuration texts, each named by its file, later ones
    /// winning. This is what tests use.
    pub fn from_texts<'a>(
        texts: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut layers = config::Config::builder();
        for (name, text) in texts {
            layers = layers.add_source(OsloFile::parse(name, text, &mut problems));
        }
        let merged = match layers.build() {
            Ok(merged) => merged,
            // Our layers cannot fail to collect; say so if the crate does.
            Err(e) => {
                problems.push(ConfigProblem {
                    file: "<all files>".into(),
                    key: "-".into(),
                    reason: format!("cannot merge the files: {e}"),
                });
                return Err(ConfigError(problems));
            }
        };
        let config = Typed::new(&merged, &mut problems).build();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems))
        }
    }

    /// The effective settings as `[group] key = value` lines, secrets masked.
    pub fn render(&self) -> String {
        let mut out = String::new();
        section(&mut out, "DEFAULT", self.default_lines());
        section(&mut out, "oslo_messaging_rabbit", self.rabbit_lines());
        section(&mut out, &self.datastore.name, self.datastore_lines());
        out
    }

    fn default_lines(&self) -> Vec<(&str, String)> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "<unset>".into());
        let secret = |set: bool, on: &str, off: &str| if set { on } else { off }.to_owned();
        let secs = |d: Duration| d.as_secs().to_string();
        let b = &self.backup;
        let g = &self.guest_log;
        vec![
            ("guest_id", self.guest_id.clone()),
            ("datastore_manager", self.datastore_manager.clone()),
            ("datastore_version", opt(&self.datastore_version)),
            ("tenant_id", opt(&self.tenant_id)),
            (
                "instance_rpc_encr_key",
                secret(
                    self.instance_rpc_encr_key.is_some(),
                    "*** (secure RPC on)",
                    "<unset> (plain RPC)",
                ),
            ),
            ("transport_url", self.transport_url.masked()),
            ("control_exchange", self.control_exchange.clone()),
            ("conductor_queue", self.conductor_queue.clone()),
            ("report_interval", secs(self.report_interval)),
            ("state_change_wait_time", secs(self.state_change_wait_time)),
            (
                "graceful_shutdown_timeout",
                secs(self.graceful_shutdown_timeout),
            ),
            ("debug", self.debug.to_string()),
            ("state_dir", self.state_dir.display().to_string()),
            ("backup_swift_container", b.swift_container.clone()),
            ("backup_segment_max_size", b.segment_max_size.to_string()),
            (
                "backup_aes_cbc_key",
                secret(
                    b.aes_cbc_key.is_some(),
                    "*** (backups encrypted)",
                    "<unset> (backups not encrypted)",
                ),
            ),
            ("swift_api_insecure", b.swift_api_insecure.to_string()),
            ("guest_log_container_name", g.container.clone()),
            ("guest_log_limit", g.limit.to_string()),
            ("guest_log_expiry", g.expiry.to_string()),
            (
                "swift_url",
                opt(&g.swift_url).replace("<unset>", "<unset> (from the caller's catalog)"),
            ),
            (
                "log_file",
                g.log_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "<unset> (stderr only; no guest log `guest`)".into()),
            ),
        ]
    }

    fn rabbit_lines(&self) -> Vec<(&str, String)> {
        let r = &self.rabbit;
        let path = |v: &Option<PathBuf>| {
            v.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "<unset>".into())
        };
        vec![
            ("amqp_durable_queues", r.amqp_durable_queues.to_string()),
            ("amqp_auto_delete", r.amqp_auto_delete.to_string()),
            ("rabbit_ha_queues", r.rabbit_ha_queues.to_string()),
            ("rabbit_quorum_queue", r.rabbit_quorum_queue.to_string()),
            (
                "rabbit_transient_quorum_queue",
                r.rabbit_transient_quorum_queue.to_string(),
            ),
            (
                "rabbit_transient_queues_ttl",
                r.rabbit_transient_queues_ttl.to_string(),
            ),
            ("rabbit_stream_fanout", r.rabbit_stream_fanout.to_string()),
            (
                "rabbit_qos_prefetch_count",
                r.rabbit_qos_prefetch_count.to_string(),
            ),
            (
                "heartbeat_timeout_threshold",
                r.heartbeat_timeout_threshold.to_string(),
            ),
            ("ssl", r.ssl.to_string()),
            ("ssl_ca_file", path(&r.ssl_ca_file)),
            ("ssl_cert_file", path(&r.ssl_cert_file)),
            ("ssl_key_file", path(&r.ssl_key_file)),
        ]
    }

    fn datastore_lines(&self) -> Vec<(&str, String)> {
        let d = &self.datastore;
        let mut lines = vec![
            ("mount_point", d.mount_point.display().to_string()),
            ("device_path", d.device_path.display().to_string()),
            ("database_service_uid", d.database_service_uid.to_string()),
            ("database_service_gid", d.database_service_gid.to_string()),
        ];
        for (k, v) in &d.values {
            if !lines.iter().any(|(shown, _)| shown == k) {
                let v = if is_secret_key(k) {
                    "***".to_owned()
                } else {
                    v.clone()
                };
                lines.push((k.as_str(), v));
            }
        }
        lines
    }
}

/// One `[group]` of [`Config::render`], a blank line before every group
/// but the first.
fn section(out: &mut String, group: &str, lines: Vec<(&str, String)>) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!("[{group}]\n"));
    for (k, v) in lines {
        out.push_str(&format!("{k} = {v}\n"));
    }
}

/// Keys whose values are secrets wherever they appear.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "token", "secret", "encr_key", "credential"]
        .iter()
        .any(|s| k.contains(s))
}

/// The default source when no flag is given, as the upstream unit uses.
pub fn default_sources() -> Vec<Source> {
    vec![Source::Dir(Path::new("/etc/trove/conf.d").to_path_buf())]
}

#[cfg(test)]
mod tests;
