//! Casts to trove-conductor, received by an oslo RPC server using trove's
//! host-side ConductorHostSerializer (which decrypts with the instance key).

use std::time::Duration;

use e2e_tests::{start_agent, AgentSetup, FakeDatastore, Peer};
use serde_json::{json, Value};

fn is_heartbeat(v: &Value) -> bool {
    v["method"] == "heartbeat"
}

fn status_of(v: &Value) -> &str {
    v["kwargs"]["payload"]["service_status"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_reports_building_then_healthy_then_periodic_heartbeats() {
    let queue = format!("conductor-{}", uuid_like());
    let fake = FakeDatastore::new(Duration::from_millis(300));
    let setup = AgentSetup {
        datastore: Some(fake.clone()),
        extra: format!("[DEFAULT]\nconductor_queue = {queue}\n"),
        ..AgentSetup::new()
    };
    let (guest, key) = (setup.guest_id.clone(), setup.key.clone().unwrap());
    let mut conductor = Peer::conductor(&guest, &key, &queue).await;
    let agent = start_agent(setup).await;

    // Before prepare no periodic heartbeat is sent (report_interval = 1 s).
    assert!(
        conductor.next(Duration::from_millis(2500)).await.is_none(),
        "no heartbeat before prepare"
    );

    let mut trove = Peer::client(&guest, Some(&key), &[]).await;
    let r = trove.send(json!({"op": "cast", "method": "prepare", "kwargs": {"memory_mb": 512, "packages": [], "databases": [], "users": [], "overrides": {}}})).await;
    assert_eq!(r["ok"], true, "{r}");

    let first = conductor
        .next_matching(Duration::from_secs(20), is_heartbeat)
        .await
        .expect("building heartbeat");
    assert_eq!(status_of(&first), "building", "{first}");
    assert_eq!(first["kwargs"]["instance_id"], guest.as_str());
    assert!(
        first["kwargs"]["sent"].as_f64().unwrap() > 1.7e9,
        "sent is an epoch float: {first}"
    );
    assert!(
        first["context_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "request_id"),
        "context decrypted: {first}"
    );
    assert_eq!(first["signature_error"], Value::Null, "{first}");
    let second = conductor
        .next_matching(Duration::from_secs(20), is_heartbeat)
        .await
        .expect("end heartbeat");
    assert_eq!(status_of(&second), "healthy", "{second}");
    assert!(second["kwargs"]["sent"].as_f64() > first["kwargs"]["sent"].as_f64());

    // Then every report_interval.
    let periodic = conductor
        .next_matching(Duration::from_secs(5), is_heartbeat)
        .await
        .expect("periodic heartbeat");
    assert_eq!(status_of(&periodic), "healthy");

    // stop_db changes what the periodic report says.
    let r = trove.call("stop_db", json!({}), 10, false).await;
    assert_eq!(r["ok"], true, "{r}");
    let after = conductor
        .next_matching(Duration::from_secs(5), |v| {
            is_heartbeat(v) && status_of(v) == "shutdown"
        })
        .await;
    assert!(after.is_some(), "shutdown reported after stop_db");
    assert_eq!(fake.prepares.load(std::sync::atomic::Ordering::SeqCst), 1);

    trove.quit().await;
    conductor.quit().await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_prepare_is_reported_as_failed() {
    let queue = format!("conductor-{}", uuid_like());
    // The K2HDKC driver of this build cannot prepare yet: the control
    // plane must see the failure, not wait for a timeout.
    let setup = AgentSetup {
        extra: format!("[DEFAULT]\nconductor_queue = {queue}\n"),
        ..AgentSetup::new()
    };
    let (guest, key) = (setup.guest_id.clone(), setup.key.clone().unwrap());
    let mut conductor = Peer::conductor(&guest, &key, &queue).await;
    let agent = start_agent(setup).await;
    let mut trove = Peer::client(&guest, Some(&key), &[]).await;
    trove.send(json!({"op": "cast", "method": "prepare", "kwargs": {"memory_mb": 512, "packages": [], "databases": [], "users": []}})).await;
    let first = conductor
        .next_matching(Duration::from_secs(20), is_heartbeat)
        .await
        .unwrap();
    assert_eq!(status_of(&first), "building");
    let second = conductor
        .next_matching(Duration::from_secs(20), is_heartbeat)
        .await
        .unwrap();
    assert_eq!(status_of(&second), "failed to spawn", "{second}");
    trove.quit().await;
    conductor.quit().await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_agent_resumes_heartbeats_without_second_prepare() {
    let queue = format!("conductor-{}", uuid_like());
    let state = tempfile::tempdir().unwrap();
    let fake = FakeDatastore::new(Duration::from_millis(10));
    let setup = AgentSetup {
        datastore: Some(fake.clone()),
        extra: format!("[DEFAULT]\nconductor_queue = {queue}\n"),
        state_dir: Some(state.path().to_path_buf()),
        ..AgentSetup::new()
    };
    let (guest, key) = (setup.guest_id.clone(), setup.key.clone().unwrap());
    let mut conductor = Peer::conductor(&guest, &key, &queue).await;
    let agent = start_agent(setup).await;
    let mut trove = Peer::client(&guest, Some(&key), &[]).await;
    trove.send(json!({"op": "cast", "method": "prepare", "kwargs": {"memory_mb": 512, "packages": [], "databases": [], "users": []}})).await;
    conductor
        .next_matching(Duration::from_secs(20), |v| {
            is_heartbeat(v) && status_of(v) == "healthy"
        })
        .await
        .expect("prepared");
    agent.stop().await;

    // Same guest, same state dir, fresh process state.
    let fake2 = FakeDatastore::new(Duration::from_millis(10));
    let again = start_agent(AgentSetup {
        guest_id: guest.clone(),
        key: Some(key.clone()),
        datastore: Some(fake2.clone()),
        extra: format!("[DEFAULT]\nconductor_queue = {queue}\n"),
        state_dir: Some(state.path().to_path_buf()),
    })
    .await;
    let hb = conductor
        .next_matching(Duration::from_secs(10), is_heartbeat)
        .await
        .expect("heartbeats resume");
    assert_eq!(status_of(&hb), "healthy");
    // A re-delivered prepare is ignored.
    trove.send(json!({"op": "cast", "method": "prepare", "kwargs": {"memory_mb": 512, "packages": [], "databases": [], "users": []}})).await;
    assert_eq!(
        trove.call("rpc_ping", json!({}), 10, false).await["result"],
        true
    );
    assert_eq!(
        fake2.prepares.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no second prepare"
    );
    trove.quit().await;
    conductor.quit().await;
    again.stop().await;
}

fn uuid_like() -> String {
    e2e_tests::guest_id()
}

/// A cast whose context carries Trove's notification, published raw so
/// the context is exactly what the taskmanager sends.
fn cast_with_notification(method: &str, args: Value, key: &str) -> Vec<u8> {
    let k = driver_api::secure::RpcKey::new(key);
    let enc: serde_json::Map<String, Value> = args
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), Value::String(k.encrypt_json(v))))
        .collect();
    let context = json!({
        "request_id": "req-n", "tenant": "t",
        "trove_notification": {"notification_classname": "trove.common.notification.DBaaSInstanceCreate", "request_id": "req-n", "server_type": "guest"},
    });
    let msg = json!({"method": method, "args": enc, "version": "1.0", "_unique_id": uuid_like(), "_context_context": k.encrypt_json(&context)});
    json!({"oslo.version": "2.0", "oslo.message": msg.to_string()})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_started_with_a_notification_end_with_one() {
    let queue = format!("conductor-{}", uuid_like());
    let fake = FakeDatastore::new(Duration::from_millis(10));
    let setup = AgentSetup {
        datastore: Some(fake),
        extra: format!("[DEFAULT]\nconductor_queue = {queue}\n"),
        ..AgentSetup::new()
    };
    let (guest, key) = (setup.guest_id.clone(), setup.key.clone().unwrap());
    let mut conductor = Peer::conductor(&guest, &key, &queue).await;
    let agent = start_agent(setup).await;
    let raw = e2e_tests::raw::Raw::connect().await;
    let topic = format!("guestagent.{guest}");

    // prepare succeeds: notify_end with the notification, naming the instance.
    raw.publish(
        &topic,
        &cast_with_notification(
            "prepare",
            json!({"memory_mb": 512, "packages": [], "databases": [], "users": []}),
            &key,
        ),
    )
    .await;
    let end = conductor
        .next_matching(Duration::from_secs(20), |v| v["method"] == "notify_end")
        .await
        .expect("notify_end");
    assert_eq!(end["signature_error"], Value::Null, "{end}");
    assert_eq!(
        end["kwargs"]["serialized_notification"]["request_id"], "req-n",
        "{end}"
    );
    assert_eq!(
        end["kwargs"]["serialized_notification"]["instance_id"],
        guest.as_str(),
        "{end}"
    );

    // create_user is not a K2HDKC operation: notify_exc_info with the reason.
    raw.publish(
        &topic,
        &cast_with_notification("create_user", json!({"users": []}), &key),
    )
    .await;
    let exc = conductor
        .next_matching(Duration::from_secs(20), |v| {
            v["method"] == "notify_exc_info"
        })
        .await
        .expect("notify_exc_info");
    assert_eq!(exc["signature_error"], Value::Null, "{exc}");
    assert!(
        exc["kwargs"]["message"]
            .as_str()
            .unwrap()
            .contains("create_user"),
        "{exc}"
    );
    assert_eq!(
        exc["kwargs"]["serialized_notification"]["instance_id"],
        guest.as_str(),
        "{exc}"
    );
    conductor.quit().await;
    agent.stop().await;
}
