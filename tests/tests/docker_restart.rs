//! The Docker engine restarts under a healthy K2HDKC node: the agent keeps
//! reporting and answering RPC while dockerd is away, the containers come
//! back by their restart policy (unless-stopped), and `healthy` is reported
//! again within two report intervals of the node serving.
//!
//! A test binary of its own: stopping dockerd stops every container on the
//! machine, and cargo runs test binaries one after another. It also waits
//! for other end-to-end test binaries (other checkouts) to finish first.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::docker;
use e2e_tests::node::{epoch_now, node};
use e2e_tests::Peer;
use serde_json::{json, Value};

/// Where tests/setup.sh sends dockerd's output.
const DOCKERD_LOG: &str = "/var/log/k2hdkc-trove-tests-dockerd.log";
/// `report_interval` of the harness config.
const REPORT_INTERVAL: f64 = 1.0;

fn docker_answers() -> bool {
    Command::new("timeout")
        .args(["10", "docker", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn dockerd_pids() -> Vec<String> {
    let out = Command::new("pidof")
        .arg("dockerd")
        .output()
        .expect("pidof runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Starts dockerd as tests/setup.sh does (`dockerd`, output to its log,
/// appended here), in a session of its own so it outlives the test.
fn start_dockerd() {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(DOCKERD_LOG)
        .expect("dockerd log");
    Command::new("setsid")
        .args(["-f", "dockerd"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("setsid -f dockerd runs");
}

fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// Keeps dockerd running when the test ends, also by a failed assertion:
/// every other test on this machine needs it.
struct DockerdGuard;

impl Drop for DockerdGuard {
    fn drop(&mut self) {
        if !docker_answers() {
            eprintln!("restarting dockerd on the way out");
            // A dockerd still shutting down would hold its pid file.
            wait_until(Duration::from_secs(60), || dockerd_pids().is_empty());
            start_dockerd();
            if !wait_until(Duration::from_secs(60), docker_answers) {
                eprintln!("dockerd did not come back; see {DOCKERD_LOG}");
            }
        }
    }
}

/// Waits (bounded: 10 minutes) until no other end-to-end test binary runs:
/// a dockerd restart would kill their containers.
fn wait_for_other_e2e_tests() {
    let me = std::process::id().to_string();
    let others = || {
        let out = Command::new("pgrep")
            .args([
                "-f",
                "target/[^ ]*/deps/(tests|broker_restart|docker_restart)-[0-9a-f]+",
            ])
            .output()
            .expect("pgrep runs");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|p| *p != me)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let t = Instant::now();
    let mut said = false;
    while !others().is_empty() {
        if !said {
            eprintln!(
                "waiting for other e2e test binaries to finish: {:?}",
                others()
            );
            said = true;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "other e2e test binaries still running after 10 minutes: {:?}",
            others()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A heartbeat's status and `sent` (epoch seconds).
async fn heartbeat(
    conductor: &mut Peer,
    within: Duration,
    since: f64,
    want: impl Fn(&str) -> bool,
) -> Option<(String, f64)> {
    let status = |v: &Value| {
        v["kwargs"]["payload"]["service_status"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let sent = |v: &Value| v["kwargs"]["sent"].as_f64().unwrap_or(0.0);
    conductor
        .next_matching(within, |v| {
            v["method"] == "heartbeat" && sent(v) >= since && want(&status(v))
        })
        .await
        .map(|v| (status(&v), sent(&v)))
}

/// A container's StartedAt, epoch seconds.
fn started_at(name: &str) -> f64 {
    let at = docker(&["inspect", "-f", "{{.State.StartedAt}}", name]);
    let out = Command::new("date")
        .args(["-d", &at, "+%s.%N"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("StartedAt {at:?} of {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_restart_under_a_healthy_node() {
    wait_for_other_e2e_tests();
    let t0 = Instant::now();
    let mut n = node("").await;
    let guest = n.agent.guest_id.clone();
    let (chmpx, server) = (
        format!("k2hdkc-chmpx-{guest}"),
        format!("k2hdkc-server-{guest}"),
    );

    // 1. A healthy node.
    n.prepare().await;
    assert_eq!(
        heartbeat(&mut n.conductor, Duration::from_secs(90), 0.0, |s| s
            == "healthy"
            || s == "failed to spawn")
        .await
        .map(|h| h.0)
        .as_deref(),
        Some("healthy")
    );
    let names = docker(&[
        "ps",
        "--filter",
        &format!("label=org.openstack.trove.instance={guest}"),
        "--format",
        "{{.Names}}",
    ]);
    assert!(
        names.contains(&chmpx) && names.contains(&server),
        "both containers run: {names}"
    );
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}",
            &chmpx
        ]),
        "unless-stopped"
    );
    let before = (started_at(&chmpx), started_at(&server));

    // 2. dockerd goes away (SIGTERM, as a service manager stops it).
    let _dockerd = DockerdGuard;
    wait_for_other_e2e_tests();
    let pids = dockerd_pids();
    assert!(!pids.is_empty(), "dockerd runs");
    let t_stop = Instant::now();
    for pid in &pids {
        assert!(Command::new("kill")
            .args(["-TERM", pid])
            .status()
            .unwrap()
            .success());
    }
    assert!(
        wait_until(Duration::from_secs(30), || !docker_answers()),
        "docker still answers 30 s after SIGTERM"
    );
    assert!(
        wait_until(Duration::from_secs(45), || pids
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())),
        "dockerd {pids:?} still there 45 s after SIGTERM"
    );
    let gone_at = epoch_now();
    eprintln!("dockerd gone {:?} after SIGTERM", t_stop.elapsed());

    // While it is away: heartbeats still go out (any status), RPC is answered.
    let while_down = heartbeat(&mut n.conductor, Duration::from_secs(5), gone_at, |_| true).await;
    assert!(while_down.is_some(), "a heartbeat while dockerd is away");
    eprintln!("heartbeat while dockerd is away: {while_down:?}");
    assert_eq!(
        n.trove.call("rpc_ping", json!({}), 10, false).await,
        json!({"ok": true, "result": true})
    );
    let vol = n.trove.call("get_volume_info", json!({}), 10, false).await;
    assert_eq!(vol["ok"], true, "{vol}");
    let diag = n.trove.call("get_diagnostics", json!({}), 10, false).await;
    assert_eq!(diag["ok"], true, "{diag}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!docker_answers(), "dockerd stayed away during the checks");
    let later = heartbeat(
        &mut n.conductor,
        Duration::from_secs(5),
        epoch_now(),
        |_| true,
    )
    .await;
    assert!(
        later.is_some(),
        "heartbeats keep coming while dockerd is away"
    );
    eprintln!("heartbeat 2 s later: {later:?}");

    // 3. dockerd comes back, as tests/setup.sh starts it.
    start_dockerd();
    let t_start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), docker_answers),
        "dockerd answers within 60 s; see {DOCKERD_LOG}"
    );
    let up_at = epoch_now();
    eprintln!("dockerd answering {:?} after start", t_start.elapsed());

    // 4. The containers come back by their restart policy.
    let running = |name: &str| docker(&["inspect", "-f", "{{.State.Running}}", name]) == "true";
    assert!(
        wait_until(Duration::from_secs(30), || running(&chmpx)),
        "chmpx running again within 30 s"
    );
    let chmpx_back = started_at(&chmpx);
    assert!(chmpx_back > before.0, "chmpx started anew");
    // Time to serve: chmpx's own view, polled from here.
    let ctl = format!("127.0.0.1:{}", n.ports.1);
    let serving = tokio::spawn(async move {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if datastore::chmpx::self_status(&ctl)
                .await
                .is_ok_and(|s| s.is_serving())
            {
                return Some(epoch_now());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    });
    let healthy = heartbeat(&mut n.conductor, Duration::from_secs(30), up_at, |s| {
        s == "healthy"
    })
    .await;
    let (_, healthy_sent) = healthy.expect("healthy again within 30 s of dockerd answering");
    let serving_at = serving.await.unwrap().expect("chmpx serves again");
    assert!(running(&server), "k2hdkc running again");
    let server_back = started_at(&server);
    let node_back = chmpx_back.max(server_back);
    let lag = healthy_sent - serving_at;
    eprintln!(
        "figures: chmpx started {:.2} s after dockerd answered, k2hdkc {:.2} s; serving {:.2} s after the containers started; \
         healthy sent {:.2} s after dockerd answered, {:.2} s after the containers started, {lag:.2} s after chmpx served",
        chmpx_back - up_at,
        server_back - up_at,
        serving_at - node_back,
        healthy_sent - up_at,
        healthy_sent - node_back,
    );
    assert!(
        lag <= 2.0 * REPORT_INTERVAL + 0.5,
        "healthy within two report intervals of serving, took {lag:.2} s"
    );
    assert!(
        healthy_sent - node_back < 20.0,
        "healthy within 20 s of the containers starting, took {:.2} s",
        healthy_sent - node_back
    );
    assert_eq!(
        n.trove.call("rpc_ping", json!({}), 10, false).await,
        json!({"ok": true, "result": true})
    );

    // 5. Clean up.
    n.cleanup().await;
    eprintln!("done in {:?} (after waiting for other tests)", t0.elapsed());
}
