//! From merged text to a typed [`Config`]: each value checked, defaults
//! filled in, and every key no one knows named as a problem with its file.

use std::path::PathBuf;
use std::time::Duration;

use super::files::{Merged, Setting};
use super::{
    BackupOptions, Config, ConfigProblem, DatastoreGroup, RabbitOptions, Secret, TransportUrl,
    MIN_SEGMENT_SIZE,
};

const UPSTREAM_DEFAULT_OPTIONS: &str = include_str!("upstream_default_options.txt");
const UPSTREAM_RABBIT_OPTIONS: &str = include_str!("upstream_rabbit_options.txt");

/// Typed reads over the merged view, collecting every problem.
pub(super) struct Typed<'a> {
    merged: &'a Merged,
    problems: &'a mut Vec<ConfigProblem>,
}

impl<'a> Typed<'a> {
    pub(super) fn new(merged: &'a Merged, problems: &'a mut Vec<ConfigProblem>) -> Self {
        Self { merged, problems }
    }

    fn raw(&self, group: &str, key: &str) -> Option<&'a Setting> {
        self.merged.groups.get(group).and_then(|g| g.get(key))
    }

    fn problem(&mut self, file: &str, group: &str, key: &str, reason: impl Into<String>) {
        self.problems.push(ConfigProblem {
            file: file.to_owned(),
            key: format!("[{group}] {key}"),
            reason: reason.into(),
        });
    }

    /// A string; empty or `None` count as unset.
    fn opt_str(&self, group: &str, key: &str) -> Option<String> {
        self.raw(group, key)
            .map(|s| s.value.clone())
            .filter(|v| !v.is_empty() && v != "None")
    }

    fn required_str(&mut self, group: &str, key: &str, why: &str) -> String {
        match self.opt_str(group, key) {
            Some(v) => v,
            None => {
                let file = self
                    .raw(group, key)
                    .map(|s| s.file.clone())
                    .unwrap_or_else(|| "<all files>".into());
                self.problem(&file, group, key, format!("missing: {why}"));
                String::new()
            }
        }
    }

    fn str_or(&self, group: &str, key: &str, default: &str) -> String {
        self.opt_str(group, key)
            .unwrap_or_else(|| default.to_owned())
    }

    fn bool_or(&mut self, group: &str, key: &str, default: bool) -> bool {
        let Some(setting) = self.raw(group, key) else {
            return default;
        };
        match setting.value.to_ascii_lowercase().as_str() {
            "" | "none" => default,
            "true" | "yes" | "on" | "1" => true,
            "false" | "no" | "off" | "0" => false,
            _ => {
                let file = setting.file.clone();
                self.problem(
                    &file,
                    group,
                    key,
                    "not a boolean (true/false, yes/no, on/off, 1/0)",
                );
                default
            }
        }
    }

    fn uint_or<T: std::str::FromStr + Copy>(&mut self, group: &str, key: &str, default: T) -> T {
        let Some(setting) = self.raw(group, key) else {
            return default;
        };
        let v = setting.value.trim();
        if v.is_empty() || v == "None" {
            return default;
        }
        match v.parse::<T>() {
            Ok(n) => n,
            Err(_) => {
                let file = setting.file.clone();
                self.problem(
                    &file,
                    group,
                    key,
                    format!("not a whole number in range: {v:?}"),
                );
                default
            }
        }
    }

    fn check_known(
        &mut self,
        group: &str,
        known: &[&str],
        ignored: &mut Vec<String>,
        used: &[&str],
    ) {
        let Some(entries) = self.merged.groups.get(group) else {
            return;
        };
        for (key, setting) in entries {
            if used.contains(&key.as_str()) {
                continue;
            }
            if known.contains(&key.as_str()) {
                ignored.push(format!("[{group}] {key} (from {})", setting.file));
            } else {
                let file = setting.file.clone();
                self.problem(
                    &file,
                    group,
                    key,
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
                    let file = self
                        .raw(D, "transport_url")
                        .map(|s| s.file.clone())
                        .unwrap_or_default();
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
            let file = self
                .raw(R, "rabbit_quorum_queue")
                .map(|s| s.file.clone())
                .unwrap_or_default();
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
        DatastoreGroup {
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
                .merged
                .groups
                .get(&group_name)
                .map(|g| {
                    g.iter()
                        .map(|(k, s)| (k.clone(), s.value.clone()))
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
                .raw(D, "backup_segment_max_size")
                .map(|s| s.file.clone())
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
        Config {
            backup,
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
