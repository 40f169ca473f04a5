//! Tests of reading the files as oslo.config does.

use super::*;

const GUEST_INFO: &str = "[DEFAULT]\nguest_id=0f6a3c38-1111\ndatastore_manager=k2hdkc\ndatastore_version=1.0.17\n\
    tenant_id=abc\ndatastore_registry_ext=None\nreplication_strategy=None\nssl_mode=None\nnetwork_isolation=False\n\
    instance_rpc_encr_key=TOPSECRETKEY\n";
const AGENT_CONF: &str = "[DEFAULT]\ntransport_url = rabbit://trove:pa%40ss@10.0.0.1:5672,trove:pa%40ss@10.0.0.2:5672/trove\n\
    control_exchange = trove\nreport_interval = 10\ndebug = True\nlog_dir = /var/log/trove\n\
    [oslo_messaging_rabbit]\nrabbit_quorum_queue = true\nkombu_reconnect_delay = 1.0\n\
    [k2hdkc]\nmount_point = /mnt/data\ndocker_image = antpickax/k2hdkc\n\
    [mysql]\nwhatever_mysql_says = 1\n";

fn load(texts: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_texts(texts.iter().copied())
}

#[test]
fn reads_trove_injected_files() {
    let c = load(&[
        ("guest_info.conf", GUEST_INFO),
        ("trove-guestagent.conf", AGENT_CONF),
    ])
    .unwrap();
    assert_eq!(c.guest_id, "0f6a3c38-1111");
    assert_eq!(c.datastore_manager, "k2hdkc");
    assert_eq!(
        c.instance_rpc_encr_key.as_ref().unwrap().expose(),
        "TOPSECRETKEY"
    );
    assert_eq!(c.transport_url.hosts.len(), 2);
    assert_eq!(c.transport_url.hosts[1].host, "10.0.0.2");
    assert_eq!(c.transport_url.hosts[0].password.expose(), "pa@ss");
    assert_eq!(c.transport_url.vhost, "trove");
    assert_eq!(c.report_interval, Duration::from_secs(10));
    assert!(c.rabbit.rabbit_quorum_queue);
    assert_eq!(c.datastore.mount_point, PathBuf::from("/mnt/data"));
    assert_eq!(c.datastore.database_service_uid, 1001);
    assert!(c.debug);
    // log_dir alone: the agent's log file is oslo.log's default name in it
    // (the guest log `guest`); the guest log options keep upstream's
    // defaults and expose the datastore's own logs.
    assert_eq!(
        c.guest_log.log_file.as_deref(),
        Some(std::path::Path::new("/var/log/trove/trove-guestagent.log"))
    );
    assert_eq!(c.guest_log.container, "database_logs");
    assert_eq!(c.guest_log.limit, 1_000_000);
    assert_eq!(c.guest_log.exposed, vec!["chmpx", "k2hdkc", "debug"]);
    assert!(!c.ignored.iter().any(|i| i.contains("log_dir")));
    assert!(c
        .ignored
        .iter()
        .any(|i| i.contains("kombu_reconnect_delay")));
}

#[test]
fn later_files_win_and_none_means_unset() {
    let c = load(&[
        ("a.conf", GUEST_INFO),
        ("b.conf", AGENT_CONF),
        (
            "c.conf",
            "[DEFAULT]\nreport_interval = 5\ninstance_rpc_encr_key = None\n",
        ),
    ])
    .unwrap();
    assert_eq!(c.report_interval, Duration::from_secs(5));
    assert!(c.instance_rpc_encr_key.is_none());
}

#[test]
fn every_problem_is_reported_with_file_and_key() {
    let err = load(&[
        ("guest_info.conf", GUEST_INFO),
        ("trove-guestagent.conf", AGENT_CONF),
        ("bad.conf", "[DEFAULT]\nreport_intervall = 5\nstate_change_wait_time = soon\n[oslo_messaging_rabbit]\nssl = maybe\n[k2hdkc]\nmount_pont = /x\n"),
    ])
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.0.len(), 4, "{text}");
    assert!(
        text.contains("bad.conf: [DEFAULT] report_intervall: unknown option"),
        "{text}"
    );
    assert!(
        text.contains("bad.conf: [DEFAULT] state_change_wait_time: not a whole number"),
        "{text}"
    );
    assert!(
        text.contains("bad.conf: [oslo_messaging_rabbit] ssl: not a boolean"),
        "{text}"
    );
    assert!(
        text.contains("bad.conf: [k2hdkc] mount_pont: unknown option"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.starts_with("config error: ")));
}

#[test]
fn numbers_are_taken_as_oslo_takes_them() {
    // The `config` crate would read `on` as 1 and wrap nothing; oslo's
    // IntOpt refuses a word, and a value out of the option's range.
    let err = load(&[
        ("g.conf", GUEST_INFO),
        ("t.conf", AGENT_CONF),
        (
            "n.conf",
            "[DEFAULT]\nreport_interval = on\n[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 70000\nrabbit_retry_interval = -1\n",
        ),
    ])
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.0.len(), 3, "{text}");
    assert!(
        text.contains("n.conf: [DEFAULT] report_interval: not a whole number in range: \"on\""),
        "{text}"
    );
    assert!(
        text.contains("n.conf: [oslo_messaging_rabbit] heartbeat_timeout_threshold: not a whole number in range: \"70000\""),
        "{text}"
    );
    assert!(
        text.contains("rabbit_retry_interval: not a whole number"),
        "{text}"
    );
}

#[test]
fn missing_essentials_are_named() {
    let err = load(&[("x.conf", "[DEFAULT]\ndebug = false\n")]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("guest_id: missing"), "{text}");
    assert!(text.contains("transport_url: missing"), "{text}");
}

#[test]
fn malformed_lines_name_the_line() {
    let err = load(&[("broken.conf", "[DEFAULT\nguest_id = x\n")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("config error: broken.conf: line "),
        "{err}"
    );
}

#[test]
fn dashes_quotes_and_hashes_are_taken_as_oslo_does() {
    let c = load(&[
        ("g.conf", GUEST_INFO),
        (
            "t.conf",
            "[DEFAULT]\ntransport-url = \"rabbit://u:p#w;x@h:5672/\"\n",
        ),
    ])
    .unwrap();
    assert_eq!(c.transport_url.hosts[0].password.expose(), "p#w;x");
}

#[test]
fn render_masks_secrets() {
    let c = load(&[("g.conf", GUEST_INFO), ("t.conf", AGENT_CONF)]).unwrap();
    let shown = c.render();
    assert!(!shown.contains("TOPSECRETKEY"), "{shown}");
    assert!(
        !shown.contains("pa@ss") && !shown.contains("pa%40ss"),
        "{shown}"
    );
    assert!(shown.contains("guest_id = 0f6a3c38-1111"), "{shown}");
    assert!(!format!("{c:?}").contains("TOPSECRETKEY"));
}

#[test]
fn config_dir_reads_conf_files_sorted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b.conf"),
        "[DEFAULT]\nreport_interval = 7\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.conf"),
        format!("{GUEST_INFO}report_interval = 3\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.conf"),
        AGENT_CONF.replace("report_interval = 10\n", ""),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "[DEFAULT]\nbogus=1\n").unwrap();
    let c = Config::load(&[Source::Dir(dir.path().to_path_buf())]).unwrap();
    assert_eq!(c.report_interval, Duration::from_secs(7));
}
