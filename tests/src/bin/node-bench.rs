//! node-bench: how fast a K2HDKC node comes up and follows membership.
//!
//! For each round: a fresh guest, the K2HR3 stand-in and the k2hdkc test
//! image (the real chmpx + k2hdkc when built here, else the stand-in: see
//! `k2hdkc_image`), the agent in-process on real RabbitMQ and
//! dockerd, Trove's client and conductor (upstream Python). Measures the
//! `prepare` cast -> `healthy` heartbeat, the chmpx container's start ->
//! `healthy`, and a new member registered in K2HR3 -> this node's ini on
//! disk updated, with the default poll interval.
//!
//! node-bench [ROUNDS]   (default 3). Run by tests/bench/node.

use std::time::{Duration, Instant, SystemTime};

use e2e_tests::{docker, k2hdkc_image, node_ports, start_agent, AgentSetup, K2hr3StandIn, Peer};
use serde_json::json;

fn parse_docker_time(text: &str) -> Option<SystemTime> {
    // 2026-11-22T15:40:46.123456789Z, via date(1) to keep this simple.
    let out = std::process::Command::new("date")
        .args(["-d", text, "+%s.%N"])
        .output()
        .ok()?;
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let mut results = Vec::new();
    for round in 1..=rounds {
        let ports = node_ports();
        let k2hr3 = K2hr3StandIn::start(&format!("bench{}", ports.0), ports).await;
        let queue = format!("conductor-{}", e2e_tests::guest_id());
        let setup = AgentSetup {
            extra: format!(
                "[DEFAULT]\nconductor_queue = {queue}\n[k2hdkc]\ndocker_image = {}\n{}",
                k2hdkc_image(),
                e2e_tests::msgqueue_line()
            ),
            ..AgentSetup::new()
        };
        let (guest, key) = (setup.guest_id.clone(), setup.key.clone().unwrap());
        let mut conductor = Peer::conductor(&guest, &key, &queue).await;
        let agent = start_agent(setup).await;
        let mut trove = Peer::client(&guest, Some(&key), &[]).await;
        let overrides = json!({
            "cluster-name": format!("bench{}", ports.0), "extdata-url": k2hr3.info["extdata_url"],
            "chmpx-server-port": ports.0, "chmpx-server-ctlport": ports.1, "chmpx-slave-ctlport": ports.2,
        });
        let cast = Instant::now();
        trove.send(json!({"op": "cast", "method": "prepare", "kwargs": {"memory_mb": 1024, "packages": [], "databases": [], "users": [], "overrides": overrides}})).await;
        let healthy = conductor
            .next_matching(Duration::from_secs(120), |v| {
                v["method"] == "heartbeat" && v["kwargs"]["payload"]["service_status"] != "building"
            })
            .await
            .expect("prepare ended");
        let prepare_ms = cast.elapsed().as_secs_f64() * 1000.0;
        let healthy_at = SystemTime::now();
        assert_eq!(
            healthy["kwargs"]["payload"]["service_status"], "healthy",
            "{healthy}"
        );
        let chmpx = format!("k2hdkc-chmpx-{guest}");
        let started =
            parse_docker_time(&docker(&["inspect", "-f", "{{.State.StartedAt}}", &chmpx]))
                .expect("container start time");
        let from_container_ms = healthy_at
            .duration_since(started)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN);

        let ini = agent.mount_point.join("etc/k2hdkc.ini");
        let joined = Instant::now();
        let absent = e2e_tests::AbsentHost::start();
        k2hr3
            .add_member(&absent.ip, ports.0, "bench-new-member")
            .await;
        while !std::fs::read_to_string(&ini)
            .unwrap_or_default()
            .contains("bench-new-member")
        {
            assert!(
                joined.elapsed() < Duration::from_secs(60),
                "membership never converged"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let converge_ms = joined.elapsed().as_secs_f64() * 1000.0;
        let r = json!({"round": round, "prepare_cast_to_healthy_ms": prepare_ms, "container_start_to_healthy_ms": from_container_ms, "membership_convergence_ms": converge_ms});
        println!("{r}");
        results.push(r);

        trove
            .send(json!({"op": "call", "method": "stop_db", "kwargs": {}, "timeout": 60}))
            .await;
        for name in [chmpx, format!("k2hdkc-server-{guest}")] {
            docker(&["rm", "-f", &name]);
        }
        trove.quit().await;
        conductor.quit().await;
        agent.stop().await;
        k2hr3.stop().await;
    }
    let median = |key: &str| {
        let mut v: Vec<f64> = results.iter().filter_map(|r| r[key].as_f64()).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "{}",
        json!({"rounds": rounds, "median_prepare_cast_to_healthy_ms": median("prepare_cast_to_healthy_ms"),
               "median_container_start_to_healthy_ms": median("container_start_to_healthy_ms"),
               "median_membership_convergence_ms": median("membership_convergence_ms")})
    );
}
