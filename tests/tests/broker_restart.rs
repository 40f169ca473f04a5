//! The broker restarts mid-run; the agent reconnects, re-declares and
//! serves again within seconds, without restarting the process.
//!
//! A test binary of its own: restarting RabbitMQ would disturb the other
//! end-to-end tests, and cargo runs test binaries one after another.

use std::time::{Duration, Instant};

use e2e_tests::{start_agent, AgentSetup, Peer};
use serde_json::json;

fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_serves_again_after_broker_restart() {
    let mut agent = start_agent(AgentSetup::new()).await;
    let mut trove = Peer::client(&agent.guest_id, agent.key.as_deref(), &[]).await;
    assert_eq!(
        trove.call("rpc_ping", json!({}), 10, false).await["result"],
        true
    );

    rabbitmqctl(&["stop_app"]);
    let t = Instant::now();
    while agent.is_ready() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "agent never noticed the broker going away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = Instant::now();
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);

    assert!(
        agent.wait_ready(Duration::from_secs(30)).await,
        "agent consuming again"
    );
    let reconnect = back.elapsed();
    // The peer (oslo.messaging) reconnects on its own too.
    let mut ok = false;
    while back.elapsed() < Duration::from_secs(60) {
        if trove.call("rpc_ping", json!({}), 5, false).await["result"] == true {
            ok = true;
            break;
        }
    }
    assert!(ok, "rpc_ping answered after the broker restart");
    eprintln!("agent consuming again {reconnect:?} after start_app");
    assert!(
        reconnect < Duration::from_secs(10),
        "reconnected within seconds, took {reconnect:?}"
    );
    trove.quit().await;
    agent.stop().await;
}
