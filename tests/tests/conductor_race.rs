//! The outcome of a prepare reaches a real, multi-worker trove-conductor.
//!
//! Regression for the defect seen with upstream trove-conductor 26.0.0 and
//! its default 2 workers: a prepare that failed (or succeeded) within
//! milliseconds sent `building` and its end status together; both workers
//! handled them at once, one lost its `conductor_lastseen` insert or saved
//! out of order, and `building` stayed stored for good. Here each prepare
//! ends within milliseconds, 20 times each way, and the stored status must
//! be the end status every time, and still be it once the agent's last
//! confirmation has landed.

use std::time::Duration;

use e2e_tests::controlplane::ControlPlane;
use e2e_tests::{start_agent, AgentSetup, FakeDatastore, K2hr3StandIn, Peer, RunningAgent};
use serde_json::json;

const REPEATS: usize = 20;
/// Prepares run this many at a time (the conductor's workers then also
/// see casts of different instances together).
const AT_ONCE: usize = 5;

struct Guest {
    agent: RunningAgent,
    trove: Peer,
    id: String,
}

async fn guest(cp: &mut ControlPlane, name: &str, fast_success: bool) -> Guest {
    let inst = cp.create_instance(name).await;
    let setup = AgentSetup {
        guest_id: inst.id.clone(),
        key: Some(inst.key.clone()),
        // Periodic reports would mend a lost cast a second later: one
        // report_interval longer than the test leaves only prepare's own casts.
        extra: format!(
            "[DEFAULT]\nconductor_queue = {}\nreport_interval = 300\n",
            cp.queue
        ),
        datastore: fast_success.then(|| FakeDatastore::new(Duration::ZERO) as _),
        state_dir: None,
    };
    let agent = start_agent(setup).await;
    let trove = Peer::client(&inst.id, Some(&inst.key), &[]).await;
    Guest {
        agent,
        trove,
        id: inst.id,
    }
}

async fn prepare_many(fast_success: bool, extdata_url: &str, expected: &str) {
    let mut cp = ControlPlane::start().await;
    let mut all = Vec::new();
    for batch in 0..REPEATS.div_ceil(AT_ONCE) {
        let mut guests = Vec::new();
        for i in 0..AT_ONCE.min(REPEATS - batch * AT_ONCE) {
            guests.push(
                guest(
                    &mut cp,
                    &format!("race-{}", batch * AT_ONCE + i),
                    fast_success,
                )
                .await,
            );
        }
        let overrides = json!({"cluster-name": "race", "extdata-url": extdata_url});
        for g in &mut guests {
            let r = g.trove.send(json!({"op": "cast", "method": "prepare", "kwargs": {
                "memory_mb": 512, "packages": [], "databases": [], "users": [], "overrides": overrides}})).await;
            assert_eq!(r["ok"], true, "{r}");
        }
        for g in &guests {
            if let Err(e) = cp
                .wait_status(&g.id, expected, Duration::from_secs(30))
                .await
            {
                panic!(
                    "instance {}: {e}\nconductor log:\n{}",
                    g.id,
                    cp.conductor_log()
                );
            }
        }
        all.extend(guests);
    }
    // No older status lands after the end status: still stored once the
    // agent's last confirmation has had time to land.
    tokio::time::sleep(agent::conductor::CONFIRM_AT[1] + Duration::from_secs(3)).await;
    let mut stored = Vec::new();
    for g in &all {
        stored.push(cp.status(&g.id).await);
    }
    if !stored.iter().all(|s| s == expected) {
        let mut why = String::new();
        for (g, s) in all.iter().zip(&stored).filter(|(_, s)| *s != expected) {
            let row = cp.status_row(&g.id).await;
            why.push_str(&format!("\ninstance {} stored {s:?}: {row}\n", g.id));
            for l in cp.conductor_log().lines().filter(|l| l.contains(&g.id)) {
                why.push_str(&format!("    {l}\n"));
            }
        }
        panic!("stored later: {stored:?}{why}");
    }
    for g in all {
        g.trove.quit().await;
        g.agent.stop().await;
    }
    cp.stop().await;
    assert_eq!(stored.len(), REPEATS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_failing_within_milliseconds_is_stored_as_failed_every_time() {
    // An EXTDATA URL that answers, but not with a K2HR3 init script: the
    // K2HDKC driver fails at once.
    let k2hr3 = K2hr3StandIn::start("race", (20001, 20002, 20003)).await;
    let not_extdata = format!("{}/_standin/calls", k2hr3.info["url"].as_str().unwrap());
    prepare_many(false, &not_extdata, "failed to spawn").await;
    k2hr3.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_succeeding_within_milliseconds_is_stored_as_healthy_every_time() {
    prepare_many(true, "https://k2hr3.invalid/v1/extdata/unused", "healthy").await;
}
