//! Concurrency and shutdown: a long operation never blocks ping; SIGTERM
//! lets in-flight work finish.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e_tests::{start_agent, AgentSetup, FakeDatastore, Peer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_prepare_does_not_block_ping_and_changes_are_serialized() {
    let fake = FakeDatastore::new(Duration::from_secs(3));
    let agent = start_agent(AgentSetup {
        datastore: Some(fake.clone()),
        ..AgentSetup::new()
    })
    .await;
    let mut trove = Peer::client(&agent.guest_id, agent.key.as_deref(), &[]).await;
    trove.send(json!({"op": "cast", "method": "prepare", "kwargs": {"memory_mb": 512, "packages": [], "databases": [], "users": []}})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.prepares.load(Ordering::SeqCst), 1, "prepare running");

    let t = Instant::now();
    assert_eq!(
        trove.call("rpc_ping", json!({}), 10, false).await["result"],
        true
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "ping answered during prepare in {:?}",
        t.elapsed()
    );

    // restart changes the datastore: it waits for prepare to finish.
    let t = Instant::now();
    assert_eq!(
        trove.call("restart", json!({}), 20, false).await["ok"],
        true
    );
    assert!(
        t.elapsed() >= Duration::from_secs(4),
        "restart ran after prepare ({:?})",
        t.elapsed()
    );
    trove.quit().await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_calls_finish() {
    let fake = FakeDatastore::new(Duration::from_secs(2));
    let mut agent = start_agent(AgentSetup {
        datastore: Some(fake.clone()),
        ..AgentSetup::new()
    })
    .await;
    let (guest, key) = (agent.guest_id.clone(), agent.key.clone());
    let call = tokio::spawn(async move {
        let mut trove = Peer::client(&guest, key.as_deref(), &[]).await;
        let r = trove.call("restart", json!({}), 20, false).await;
        trove.quit().await;
        r
    });
    // Wait until the restart is running, then ask the agent to stop.
    let t = Instant::now();
    while fake.restarts.load(Ordering::SeqCst) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "restart never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.signal_stop();
    let r = call.await.unwrap();
    assert_eq!(
        r["ok"], true,
        "in-flight call answered during shutdown: {r}"
    );
    agent.join(Duration::from_secs(20)).await;
}
