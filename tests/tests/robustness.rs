//! Bad input never crashes or stalls the consumer; the wrong key is a
//! clear failure; duplicates run once.

use std::time::Duration;

use driver_api::secure::RpcKey;
use e2e_tests::raw::{next_body, Raw};
use e2e_tests::{start_agent, AgentSetup, Peer};
use serde_json::{json, Value};

fn inner(body: &[u8]) -> Value {
    let outer: Value = serde_json::from_slice(body).unwrap();
    serde_json::from_str(outer["oslo.message"].as_str().unwrap()).unwrap()
}

fn call_body(
    method: &str,
    args: Value,
    msg_id: &str,
    reply_q: &str,
    unique: &str,
    key: &str,
) -> Vec<u8> {
    let k = RpcKey::new(key);
    let enc_args: serde_json::Map<String, Value> = args
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), Value::String(k.encrypt_json(v))))
        .collect();
    let msg = json!({
        "method": method, "args": enc_args, "version": "1.0",
        "_msg_id": msg_id, "_reply_q": reply_q, "_unique_id": unique,
        "_context_context": k.encrypt_json(&json!({"request_id": "req-1", "tenant": "t"})),
    });
    json!({"oslo.version": "2.0", "oslo.message": msg.to_string()})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_answered_or_dropped_and_the_agent_keeps_serving() {
    let agent = start_agent(AgentSetup::new()).await;
    let key = agent.key.clone().unwrap();
    let queue = format!("guestagent.{}", agent.guest_id);
    let raw = Raw::connect().await;
    let (reply_q, mut replies) = raw.reply_queue().await;

    // Not JSON, wrong envelope version, an oversized body: no reply address, dropped.
    raw.publish(&queue, b"\x00\xffnot json").await;
    raw.publish(
        &queue,
        json!({"oslo.version": "9.9", "oslo.message": "{}"})
            .to_string()
            .as_bytes(),
    )
    .await;
    raw.publish(&queue, &vec![b'x'; 5 * 1024 * 1024]).await;

    // Args not an object, with a reply address: answered with BadRequest.
    let bad_args = json!({"oslo.version": "2.0", "oslo.message": json!({"method": "rpc_ping", "args": [1], "_msg_id": "m-bad", "_reply_q": reply_q}).to_string()});
    raw.publish(&queue, bad_args.to_string().as_bytes()).await;
    let reply = inner(
        &next_body(&mut replies, Duration::from_secs(10))
            .await
            .expect("reply to bad args"),
    );
    assert_eq!(reply["_msg_id"], "m-bad");
    let failure: Value = serde_json::from_str(reply["failure"].as_str().unwrap()).unwrap();
    assert_eq!(failure["class"], "BadRequest", "{failure}");

    // Wrong argument type for a typed method: BadRequest naming the field.
    raw.publish(
        &queue,
        &call_body(
            "get_filesystem_stats",
            json!({"fs_path": 5}),
            "m-type",
            &reply_q,
            "u-type",
            &key,
        ),
    )
    .await;
    let reply = inner(
        &next_body(&mut replies, Duration::from_secs(10))
            .await
            .expect("reply to bad type"),
    );
    let failure: Value = serde_json::from_str(reply["failure"].as_str().unwrap()).unwrap();
    assert_eq!(failure["class"], "BadRequest", "{failure}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap()
            .contains("get_filesystem_stats"),
        "{failure}"
    );

    // Still serving.
    raw.publish(
        &queue,
        &call_body("rpc_ping", json!({}), "m-ok", &reply_q, "u-ok", &key),
    )
    .await;
    let reply = inner(
        &next_body(&mut replies, Duration::from_secs(10))
            .await
            .expect("ping reply"),
    );
    assert_eq!(reply["_msg_id"], "m-ok");
    assert_eq!(
        RpcKey::new(&key)
            .decrypt_json(reply["result"].as_str().unwrap())
            .unwrap(),
        json!(true),
        "result is encrypted"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_unique_id_runs_once() {
    let agent = start_agent(AgentSetup::new()).await;
    let key = agent.key.clone().unwrap();
    let queue = format!("guestagent.{}", agent.guest_id);
    let raw = Raw::connect().await;
    let (reply_q, mut replies) = raw.reply_queue().await;
    let body = call_body(
        "rpc_ping",
        json!({}),
        "m-dup",
        &reply_q,
        "same-unique-id",
        &key,
    );
    raw.publish(&queue, &body).await;
    raw.publish(&queue, &body).await;
    assert!(
        next_body(&mut replies, Duration::from_secs(10))
            .await
            .is_some(),
        "first answered"
    );
    assert!(
        next_body(&mut replies, Duration::from_secs(2))
            .await
            .is_none(),
        "duplicate ignored"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_a_clear_failure_and_the_agent_lives_on() {
    let agent = start_agent(AgentSetup::new()).await;
    let mut intruder = Peer::client(&agent.guest_id, Some("not-the-instance-key"), &[]).await;
    let r = intruder.call("rpc_ping", json!({}), 10, true).await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["class"], "BadRequest", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("instance_rpc_encr_key"),
        "{r}"
    );
    intruder.quit().await;

    let mut trove = Peer::client(&agent.guest_id, agent.key.as_deref(), &[]).await;
    assert_eq!(
        trove.call("rpc_ping", json!({}), 10, false).await,
        json!({"ok": true, "result": true})
    );
    trove.quit().await;
    agent.stop().await;
}

/// `--show-config` gives the start's verdict: a value the driver refuses
/// at start (here a K2HDKC setting) makes it exit 2 with the cause, and a
/// config the start takes exits 0 with the secrets masked.
#[test]
fn show_config_refuses_what_the_start_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("trove-guestagent.conf");
    let write = |k2hdkc: &str| {
        std::fs::write(
            &conf,
            format!("[DEFAULT]\nguest_id = g1\ndatastore_manager = k2hdkc\ntransport_url = rabbit://u:s3cret@h:5672/\n[k2hdkc]\n{k2hdkc}\n"),
        )
        .unwrap()
    };
    let show = || {
        std::process::Command::new(e2e_tests::process::agent_binary())
            .arg("--config-dir")
            .arg(dir.path())
            .arg("--show-config")
            .output()
            .unwrap()
    };
    write("mq_msg_max = abc");
    let out = show();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {stderr}");
    assert!(stderr.contains("mq_msg_max"), "names the key: {stderr}");
    write("mq_msg_max = 2048");
    let out = show();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("s3cret"),
        "secrets masked"
    );
}
