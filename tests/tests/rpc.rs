//! Trove's own guest API client calling the agent.

use e2e_tests::{start_agent, AgentSetup, Peer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trove_client_pings_and_reads_filesystem_stats() {
    let agent = start_agent(AgentSetup::new()).await;
    let mut trove = Peer::client(&agent.guest_id, agent.key.as_deref(), &[]).await;

    let ping = trove.call("rpc_ping", json!({}), 10, false).await;
    assert_eq!(ping, json!({"ok": true, "result": true}));

    // get_volume_info is trove's name for the guest's get_filesystem_stats.
    let stats = trove.call("get_volume_info", json!({}), 10, false).await;
    assert_eq!(stats["ok"], true, "{stats}");
    let r = &stats["result"];
    let st = nix_statvfs(&agent.mount_point);
    assert_eq!(r["block_size"], st.0, "{r}");
    assert_eq!(r["total_blocks"], st.1, "{r}");
    for key in [
        "free_blocks",
        "avail_blocks",
        "total",
        "free",
        "used",
        "mgr_extra_info",
    ] {
        assert!(r.get(key).is_some(), "missing {key} in {r}");
    }

    let diag = trove.call("get_diagnostics", json!({}), 10, false).await;
    assert_eq!(diag["ok"], true, "{diag}");
    assert!(diag["result"]["vm_rss"].as_u64().unwrap() > 0, "{diag}");
    trove.quit().await;
    agent.stop().await;
}

fn nix_statvfs(path: &std::path::Path) -> (u64, u64) {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%s %b"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_methods_fail_fast_with_trove_exception() {
    let agent = start_agent(AgentSetup::new()).await;
    let mut trove = Peer::client(&agent.guest_id, agent.key.as_deref(), &[]).await;

    let started = std::time::Instant::now();
    let r = trove.call("list_users", json!({}), 10, true).await;
    assert_eq!(r["ok"], false);
    assert_eq!(r["class"], "DatastoreOperationNotSupported", "{r}");
    assert_eq!(r["module"], "trove.common.exception", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("'list_users' operation is not supported for the 'k2hdkc' datastore"),
        "{r}"
    );

    // Through trove's API wrapper, as the taskmanager sees it.
    let r = trove.call("list_databases", json!({}), 10, false).await;
    assert_eq!(r["class"], "GuestError", "{r}");
    assert_eq!(r["original_class"], "DatastoreOperationNotSupported", "{r}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered promptly, not by timeout"
    );

    // A method Trove's guest API does not have at all: oslo's NoSuchMethod.
    let r = trove.send(json!({"op": "call", "method": "drop_everything", "kwargs": {}, "timeout": 10, "raw": true, "direct": true})).await;
    assert_eq!(r["original_class"], "NoSuchMethod", "{r}");
    trove.quit().await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_api_version_is_refused_by_name() {
    let agent = start_agent(AgentSetup::new()).await;
    let mut trove = Peer::client(
        &agent.guest_id,
        agent.key.as_deref(),
        &["--set", "upgrade_levels.guestagent=1.9"],
    )
    .await;
    let r = trove.send(json!({"op": "call", "method": "rpc_ping", "kwargs": {}, "timeout": 10, "raw": true, "direct": true, "version": "1.9"})).await;
    assert_eq!(r["original_class"], "UnsupportedVersion", "{r}");
    trove.quit().await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_rpc_when_no_key_is_configured() {
    let agent = start_agent(AgentSetup {
        key: None,
        ..AgentSetup::new()
    })
    .await;
    let mut trove = Peer::client(&agent.guest_id, None, &[]).await;
    assert_eq!(
        trove.call("rpc_ping", json!({}), 10, false).await,
        json!({"ok": true, "result": true})
    );
    trove.quit().await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_predeclared_by_taskmanager_is_consumed() {
    // The taskmanager declares the guest's queue and casts prepare before
    // the guest boots; the agent must consume that queue, not refuse it.
    let setup = AgentSetup::new();
    let (guest, key) = (setup.guest_id.clone(), setup.key.clone());
    // Durable queues need a durable exchange: use one of this test's own,
    // so the shared non-durable `trove` exchange stays as other tests expect.
    let exchange = format!("trove-durable-{guest}");
    let mut taskmanager = Peer::client(
        &guest,
        key.as_deref(),
        &[
            "--exchange",
            &exchange,
            "--set",
            "oslo_messaging_rabbit.amqp_durable_queues=true",
        ],
    )
    .await;
    assert_eq!(
        taskmanager.send(json!({"op": "create_guest_queue"})).await["ok"],
        true
    );
    let extra = format!("[DEFAULT]\ncontrol_exchange = {exchange}\n[oslo_messaging_rabbit]\namqp_durable_queues = true\n");
    let agent = start_agent(AgentSetup { extra, ..setup }).await;
    assert_eq!(
        taskmanager.call("rpc_ping", json!({}), 10, false).await,
        json!({"ok": true, "result": true})
    );
    taskmanager.quit().await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_broker_is_verified() {
    let tls = e2e_tests::tls_dir();
    let over_tls = |ca: &str| {
        format!(
            "[DEFAULT]\ntransport_url = rabbit://guest:guest@localhost:5671/\n\
             [oslo_messaging_rabbit]\nssl = true\nssl_ca_file = {}\n",
            tls.join(ca).display()
        )
    };
    // Signed by the CA we trust: connects and serves.
    let agent = start_agent(AgentSetup {
        extra: over_tls("ca.pem"),
        ..AgentSetup::new()
    })
    .await;
    let mut trove = Peer::client(&agent.guest_id, agent.key.as_deref(), &[]).await;
    assert_eq!(
        trove.call("rpc_ping", json!({}), 10, false).await,
        json!({"ok": true, "result": true})
    );
    trove.quit().await;
    agent.stop().await;

    // A CA that did not sign the broker's certificate: never connects.
    let mut refused = e2e_tests::spawn_agent(AgentSetup {
        extra: over_tls("wrong-ca.pem"),
        ..AgentSetup::new()
    })
    .await;
    assert!(
        !refused.wait_ready(std::time::Duration::from_secs(5)).await,
        "must not trust an unverified broker"
    );
    refused.stop().await;
}
