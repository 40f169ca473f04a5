//! From the merged layers to a typed [`Config`]: each value checked, defaults
//! filled in, and every key no one knows named as a problem with its file.

use std::path::PathBuf;
use std::time::Duration;

use config::{Map, Value};
use serde::de::DeserializeOwned;

use super::{
    BackupOptions, Config, ConfigProblem, DatastoreGroup, GuestLogOptions, RabbitOptions, Secret,
    TransportUrl, MIN_SEGMENT_SIZE,
};

const UPSTREAM_DEFAULT_OPTIONS: &str = include_str!("upstream_default_options.txt");
const UPSTREAM_RABBIT_OPTIONS: &str = include_str!("upstream_rabbit_options.txt");

/// What a boolean may be, as oslo.config's `BoolOpt` takes it.
const NOT_A_BOOLEAN: &str = "not a boolean (true/false, yes/no, on/off, 1/0)";

/// Typed reads over the merged layers, collecting every problem.
pub(super) struct Typed<'a> {
    /// `[group] -> key -> value`, each value tagged with its file.
    groups: Map<String, Map<String, Value>>,
    problems: &'a mut Vec<ConfigProblem>,
}

impl<'a> Typed<'a> {
    pub(super) fn new(merged: &config::Config, problems: &'a mut Vec<ConfigProblem>) -> Self {
        use config::Source as _;
        let groups = merged
            .collect()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(group, table)| Some((group, table.into_table().ok()?)))
            .collect();
        Self { groups, problems }
    }

    fn raw(&self, group: &str, key: &str) -> Option<&Value> {
        self.groups.get(group).and_then(|g| g.get(key))
    }

    /// The file a value came from (the layer's origin).
    fn file_of(&self, group: &str, key: &str) -> Option<String> {
        self.raw(group, key)
            .and_then(|v| v.origin().map(str::to_owned))
    }

    fn problem(&mut self, file: &str, group: &str, key: &str, reason: impl Into<String>) {
        self.problems.push(ConfigProblem {
            file: file.to_owned(),
            key: format!("[{group}] {key}"),
            reason: reason.into(),
        });
    }

    /// A value's text, trimmed (every value of an [`super::files::OsloFile`]
    /// is text).
    fn text(&self, group: &str, key: &str) -> Option<String> {
        let value = self.raw(group, key)?.clone();
        value.into_string().ok().map(|t| t.trim().to_owned())
    }

    /// Names a value that is not `what` as a problem, with its file.
    fn refuse(&mut self, group: &str, key: &str, what: &str) {
        let file = self.file_of(group, key).unwrap_or_default();
        let text = self.text(group, key).unwrap_or_default();
        self.problem(
            &file,
            group,
            key,
            what.replace("{value}", &format!("{text:?}")),
        );
    }

    /// A value as `T` through serde, `None` when unset. oslo.config takes an
    /// empty value or the word `None` as "not set" (a later file can unset
    /// an earlier one that way); the crate has no such rule, so it is here.
    fn get<T: DeserializeOwned>(&mut self, group: &str, key: &str, what: &str) -> Option<T> {
        let text = self.text(group, key)?;
        if text.is_empty() || text == "None" {
            return None;
        }
        let value = self.raw(group, key)?.clone();
        match T::deserialize(value) {
            Ok(v) => Some(v),
            Err(_) => {
                self.refuse(group, key, what);
                None
            }
        }
    }

    /// A string; empty or `None` count as unset.
    fn opt_str(&mut self, group: &str, key: &str) -> Option<String> {
        self.get::<String>(group, key, "not a string: {value}")
    }

    fn required_str(&mut self, group: &str, key: &str, why: &str) -> String {
        match self.opt_str(group, key) {
            Some(v) => v,
            None => {
                let file = self
                    .file_of(group, key)
                    .unwrap_or_else(|| "<all files>".into());
                self.problem(&file, group, key, format!("missing: {why}"));
                String::new()
            }
        }
    }

    fn str_or(&mut self, group: &str, key: &str, default: &str) -> String {
        self.opt_str(group, key)
            .unwrap_or_else(|| default.to_owned())
    }

    fn bool_or(&mut self, group: &str, key: &str, default: bool) -> bool {
        self.get::<bool>(group, key, NOT_A_BOOLEAN)
            .unwrap_or(default)
    }

    fn uint_or<T: DeserializeOwned + Copy>(&mut self, group: &str, key: &str, default: T) -> T {
        const NOT_A_NUMBER: &str = "not a whole number in range: {value}";
        // The crate reads `true`/`on`/`yes` as 1 for a number; oslo.config's
        // IntOpt refuses them, and so do we.
        let text = self.text(group, key).unwrap_or_default();
        if text != "None" && text.chars().any(|c| c.is_ascii_alphabetic()) {
            self.refuse(group, key, NOT_A_NUMBER);
            return default;
        }
        self.get::<T>(group, key, NOT_A_NUMBER).unwrap_or(default)
    }

    fn check_known(
        &mut self,
        group: &str,
        known: &[&str],
        ignored: &mut Vec<String>,
        used: &[&str],
    ) {
        let Some(entries) = self.groups.get(group) else {
            return;
        };
        let entries: Vec<(String, String)> = entries
            .iter()
            .map(|(key, value)| (key.clone(), value.origin().unwrap_or_default().to_owned()))
            .collect();
        for (key, file) in entries {
            if used.contains(&key.as_str()) {
                continue;
            }
            if known.contains(&key.as_str()) {
                ignored.push(format!("[{group}] {key} (from {file})"));
            } else {
                self.problem(
                    &file,
                    group,
                    &key,
                    "unknown option (not a Trove, oslo or agent option; typo?)",
                );
            }
        }
    }

    /// `[DEFAULT] transport_url`, parsed (an empty one was named missing).
    fn transport_url(&mut self, url_text: &str) -> TransportUrl {
        const D: &str = "DEFAULT";
        if url_text.is_empty() {
            TransportUrl::default()
        } else {
            match TransportUrl::parse(url_text) {
                Ok(url) => url,
                Err(reason) => {
                    let file = self.file_of(D, "transport_url").unwrap_or_default();
                    self.problem(&file, D, "transport_url", reason.to_string());
                    TransportUrl::default()
                }
            }
        }
    }

    /// `[oslo_messaging_rabbit]`, as oslo.messaging takes it.
    fn rabbit(&mut self, url_tls: bool) -> RabbitOptions {
        const R: &str = "oslo_messaging_rabbit";
        let rabbit = RabbitOptions {
            amqp_durable_queues: self.bool_or(R, "amqp_durable_queues", false),
            amqp_auto_delete: self.bool_or(R, "amqp_auto_delete", false),
            rabbit_ha_queues: self.bool_or(R, "rabbit_ha_queues", false),
            rabbit_quorum_queue: self.bool_or(R, "rabbit_quorum_queue", false),
            rabbit_transient_quorum_queue: self.bool_or(R, "rabbit_transient_quorum_queue", false),
            rabbit_quorum_delivery_limit: self.uint_or(R, "rabbit_quorum_delivery_limit", 0),
            rabbit_quorum_max_memory_length: self.uint_or(R, "rabbit_quorum_max_memory_length", 0),
            rabbit_quorum_max_memory_bytes: self.uint_or(R, "rabbit_quorum_max_memory_bytes", 0),
            rabbit_transient_queues_ttl: self.uint_or(R, "rabbit_transient_queues_ttl", 1800),
            rabbit_stream_fanout: self.bool_or(R, "rabbit_stream_fanout", false),
            rabbit_qos_prefetch_count: self.uint_or(R, "rabbit_qos_prefetch_count", 0),
            enable_cancel_on_failover: self.bool_or(R, "enable_cancel_on_failover", false),
            heartbeat_timeout_threshold: self.uint_or(R, "heartbeat_timeout_threshold", 60),
            rabbit_retry_interval: self.uint_or::<u64>(R, "rabbit_retry_interval", 1).max(1),
            rabbit_retry_backoff: self.uint_or(R, "rabbit_retry_backoff", 2),
            rabbit_interval_max: self.uint_or::<u64>(R, "rabbit_interval_max", 30).max(1),
            ssl: self.bool_or(R, "ssl", false) || url_tls,
            ssl_ca_file: self.opt_str(R, "ssl_ca_file").map(PathBuf::from),
            ssl_cert_file: self.opt_str(R, "ssl_cert_file").map(PathBuf::from),
            ssl_key_file: self.opt_str(R, "ssl_key_file").map(PathBuf::from),
        };
        if rabbit.rabbit_quorum_queue && rabbit.rabbit_ha_queues {
            let file = self.file_of(R, "rabbit_quorum_queue").unwrap_or_default();
            self.problem(
                &file,
                R,
                "rabbit_quorum_queue",
                "cannot be combined with rabbit_ha_queues (oslo.messaging refuses it too)",
            );
        }
        if rabbit.ssl_cert_file.is_some() != rabbit.ssl_key_file.is_some() {
            self.problem(
                "<all files>",
                R,
                "ssl_cert_file",
                "ssl_cert_file and ssl_key_file go together",
            );
        }
        rabbit
    }

    /// The datastore's group (`[k2hdkc]`): what the agent reads of it, and
    /// every value for the driver.
    fn datastore_group(&mut self, datastore_manager: &str) -> DatastoreGroup {
        let group_name = if datastore_manager.is_empty() {
            "k2hdkc".to_owned()
        } else {
            datastore_manager.to_owned()
        };
        let uid = self.uint_or::<u32>(&group_name, "database_service_uid", 1001);
        let gid = self.uint_or::<u32>(&group_name, "database_service_gid", uid);
        let metrics_listen = self
            .opt_str(&group_name, "metrics_listen")
            .and_then(|text| match text.parse::<std::net::SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(e) => {
                    let file = self
                        .file_of(&group_name, "metrics_listen")
                        .unwrap_or_default();
                    self.problem(
                        &file,
                        &group_name,
                        "metrics_listen",
                        format!("{text:?} is not an address and port such as 0.0.0.0:9284 ({e})"),
                    );
                    None
                }
            });
        DatastoreGroup {
            metrics_listen,
            mount_point: PathBuf::from(
                self.str_or(
                    &group_name,
                    "mount_point",
                    crate::registry::profile(&group_name)
                        .map_or("/var/lib/trove-datastore", |p| p.default_mount_point),
                ),
            ),
            device_path: PathBuf::from(self.str_or(&group_name, "device_path", "/dev/vdb")),
            database_service_uid: uid,
            database_service_gid: gid,
            values: self
                .groups
                .get(&group_name)
                .map(|g| {
                    g.iter()
                        .map(|(k, v)| (k.clone(), v.clone().into_string().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default(),
            name: group_name.clone(),
        }
    }

    /// Names every key of the agent's groups that no one knows as a
    /// problem; returns the upstream options this agent does not use.
    fn check_unknown(&mut self, group_name: &str) -> Vec<String> {
        const D: &str = "DEFAULT";
        const R: &str = "oslo_messaging_rabbit";
        let mut ignored = Vec::new();
        const USED_DEFAULT: &[&str] = &[
            "guest_id",
            "datastore_manager",
            "datastore_version",
            "tenant_id",
            "instance_rpc_encr_key",
            "transport_url",
            "control_exchange",
            "conductor_queue",
            "report_interval",
            "state_change_wait_time",
            "graceful_shutdown_timeout",
            "debug",
            "agent_state_dir",
            "volume_fstype",
            "format_options",
            "mount_options",
            "volume_format_timeout",
            "backup_swift_container",
            "backup_segment_max_size",
            "backup_aes_cbc_key",
            "swift_api_insecure",
            "guest_log_container_name",
            "guest_log_limit",
            "guest_log_expiry",
            "swift_url",
            "swift_service_type",
            "swift_endpoint_type",
            "log_dir",
            "log_file",
        ];
        let known_default: Vec<&str> = UPSTREAM_DEFAULT_OPTIONS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        self.check_known(D, &known_default, &mut ignored, USED_DEFAULT);
        const USED_RABBIT: &[&str] = &[
            "amqp_durable_queues",
            "amqp_auto_delete",
            "rabbit_ha_queues",
            "rabbit_quorum_queue",
            "rabbit_transient_quorum_queue",
            "rabbit_quorum_delivery_limit",
            "rabbit_quorum_max_memory_length",
            "rabbit_quorum_max_memory_bytes",
            "rabbit_transient_queues_ttl",
            "rabbit_stream_fanout",
            "rabbit_qos_prefetch_count",
            "enable_cancel_on_failover",
            "heartbeat_timeout_threshold",
            "rabbit_retry_interval",
            "rabbit_retry_backoff",
            "rabbit_interval_max",
            "ssl",
            "ssl_ca_file",
            "ssl_cert_file",
            "ssl_key_file",
        ];
        let known_rabbit: Vec<&str> = UPSTREAM_RABBIT_OPTIONS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        self.check_known(R, &known_rabbit, &mut ignored, USED_RABBIT);
        if let Some(profile) = crate::registry::profile(group_name) {
            // Every key of the group is handed to the driver, so none is
            // "ignored".
            self.check_known(group_name, &[], &mut ignored, profile.options);
        }
        ignored
    }

    /// `[DEFAULT]`'s backup options.
    fn backup(&mut self) -> BackupOptions {
        const D: &str = "DEFAULT";
        let segment_max_size =
            self.uint_or::<u64>(D, "backup_segment_max_size", 2 * 1024 * 1024 * 1024);
        if segment_max_size < MIN_SEGMENT_SIZE {
            let file = self
                .file_of(D, "backup_segment_max_size")
                .unwrap_or_default();
            self.problem(
                &file,
                D,
                "backup_segment_max_size",
                format!("{segment_max_size} is below the smallest segment accepted ({MIN_SEGMENT_SIZE} bytes)"),
            );
        }
        BackupOptions {
            swift_container: self.str_or(D, "backup_swift_container", "database_backups"),
            segment_max_size,
            aes_cbc_key: self.opt_str(D, "backup_aes_cbc_key").map(Secret::new),
            swift_api_insecure: self.bool_or(D, "swift_api_insecure", false),
        }
    }

    /// `[DEFAULT]`'s guest log options and `[<datastore>]
    /// guest_log_exposed_logs` (default: the datastore's own logs, not the
    /// agent's).
    fn guest_log(&mut self, datastore: &DatastoreGroup) -> GuestLogOptions {
        const D: &str = "DEFAULT";
        let limit = self.uint_or::<u64>(D, "guest_log_limit", 1_000_000);
        if limit < 1024 {
            let file = self.file_of(D, "guest_log_limit").unwrap_or_default();
            self.problem(
                &file,
                D,
                "guest_log_limit",
                format!("{limit} is below the smallest object accepted (1024 bytes)"),
            );
        }
        let exposed = datastore
            .values
            .get("guest_log_exposed_logs")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_else(|| vec!["chmpx".to_owned(), "k2hdkc".to_owned(), "debug".to_owned()]);
        // oslo.log: log_file alone is a path; with log_dir, a name in it.
        let log_file = match (self.opt_str(D, "log_dir"), self.opt_str(D, "log_file")) {
            (Some(dir), Some(file)) => Some(PathBuf::from(dir).join(file)),
            (None, Some(file)) => Some(PathBuf::from(file)),
            (Some(dir), None) => Some(PathBuf::from(dir).join("trove-guestagent.log")),
            (None, None) => None,
        };
        GuestLogOptions {
            container: self.str_or(D, "guest_log_container_name", "database_logs"),
            limit: limit.max(1024) as usize,
            expiry: self.uint_or::<u64>(D, "guest_log_expiry", 2_592_000),
            exposed,
            swift_url: self.opt_str(D, "swift_url"),
            swift_service_type: self.str_or(D, "swift_service_type", "object-store"),
            swift_endpoint_type: self.str_or(D, "swift_endpoint_type", "publicURL"),
            log_file,
        }
    }

    /// The whole config; every problem met on the way is in `problems`.
    pub(super) fn build(mut self) -> Config {
        const D: &str = "DEFAULT";
        let guest_id = self.required_str(D, "guest_id", "Trove injects it in guest_info.conf");
        let datastore_manager = self.required_str(
            D,
            "datastore_manager",
            "Trove injects it in guest_info.conf",
        );
        let url_text = self.required_str(
            D,
            "transport_url",
            "the RabbitMQ URL, e.g. rabbit://user:pass@host:5672/",
        );
        let transport_url = self.transport_url(&url_text);
        let report_interval = self.uint_or::<u64>(D, "report_interval", 30).max(1);
        let state_change_wait_time = self.uint_or::<u64>(D, "state_change_wait_time", 600);
        let graceful_shutdown_timeout = self.uint_or::<u64>(D, "graceful_shutdown_timeout", 60);
        let rabbit = self.rabbit(transport_url.tls);
        let datastore = self.datastore_group(&datastore_manager);
        let ignored = self.check_unknown(&datastore.name);
        let backup = self.backup();
        let guest_log = self.guest_log(&datastore);
        Config {
            backup,
            guest_log,
            guest_id,
            datastore_version: self.opt_str(D, "datastore_version"),
            tenant_id: self.opt_str(D, "tenant_id"),
            instance_rpc_encr_key: self.opt_str(D, "instance_rpc_encr_key").map(Secret::new),
            transport_url,
            control_exchange: self.str_or(D, "control_exchange", "trove"),
            conductor_queue: self.str_or(D, "conductor_queue", "trove-conductor"),
            report_interval: Duration::from_secs(report_interval),
            state_change_wait_time: Duration::from_secs(state_change_wait_time),
            graceful_shutdown_timeout: Duration::from_secs(graceful_shutdown_timeout),
            debug: self.bool_or(D, "debug", false),
            rabbit,
            datastore,
            state_dir: PathBuf::from(self.str_or(
                D,
                "agent_state_dir",
                "/var/lib/trove-guestagent",
            )),
            volume: crate::volume::VolumeOptions {
                fstype: self.str_or(D, "volume_fstype", "ext4"),
                format_options: self.str_or(D, "format_options", "-m 5"),
                mount_options: self.str_or(D, "mount_options", "defaults,noatime"),
                format_timeout: Duration::from_secs(self.uint_or::<u64>(
                    D,
                    "volume_format_timeout",
                    120,
                )),
            },
            ignored,
            datastore_manager,
        }
    }
}
