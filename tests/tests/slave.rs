//! `k2hdkc-slave` against a running node: the K2HR3 stand-in's slave
//! role, the k2hdkc test image, real dockerd. Data through the slave needs
//! k2hdkc's client tools, which only the real image has: with it, this
//! also writes and reads keys the way the README tells applications to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datastore::slave::config::SlaveConfig;
use datastore::slave::status::{Live, Recorded};
use e2e_tests::app::on_slave;
use e2e_tests::node::{node, RING_STEP_S};
use e2e_tests::{docker, k2hdkc_image, msgqueue_line, K2hr3StandIn, STANDIN_IMAGE};
use serde_json::{json, Value};

/// Removes the slave's container whatever happens to the test.
struct Gone(String);

impl Drop for Gone {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.0]);
    }
}

fn slave_config(extdata: &str, container: &str, ctlport: u16, state: &std::path::Path) -> String {
    format!(
        "# as the cloud-init user data writes it, plus what a test needs\n\
         extdata_url = {extdata}\nimage = {}\ncontainer = {container}\nctlport = {ctlport}\n\
         state_dir = {}\nseed = app-{ctlport}\npoll_interval_ms = 500\n{}",
        k2hdkc_image(),
        state.display(),
        msgqueue_line()
    )
}

async fn slaves_in_k2hr3(k2hr3: &K2hr3StandIn) -> Vec<Value> {
    k2hr3.get("/_standin/calls").await["slaves"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// What an application does (docs/applications.md): k2hdkc's own client
/// tool on the slave, running `commands`. Returns the tool's output.
fn through_the_slave(
    container: &str,
    state: &std::path::Path,
    ctlport: u16,
    commands: &str,
) -> String {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("commands");
    std::fs::write(&file, commands).unwrap();
    std::os::unix::fs::chown(work.path(), Some(1001), Some(1001)).unwrap();
    std::os::unix::fs::chown(&file, Some(1001), Some(1001)).unwrap();
    let args = ["-perm", "-run", "/work/commands"];
    on_slave(
        container,
        state,
        ctlport,
        Some(work.path()),
        "k2hdkclinetool",
        &args,
    )
    .output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_joins_follows_the_ring_and_leaves_on_sigterm() {
    let mut n = node("").await;
    n.prepare_healthy().await;

    let state = tempfile::tempdir().unwrap();
    let container = format!("k2hdkc-slave-{}", n.agent.guest_id);
    let _gone = Gone(container.clone());
    let ctlport = n.ports.2;
    let text = slave_config(
        n.k2hr3.info["slave_extdata_url"].as_str().unwrap(),
        &container,
        ctlport,
        state.path(),
    );
    let cfg = SlaveConfig::parse(text.as_bytes()).unwrap();
    let containers = Arc::new(agent::docker::DockerHost::new(None).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let began = Instant::now();
    let slave = tokio::spawn(datastore::slave::run(cfg, containers, async {
        let _ = stopped.await;
    }));

    // Up: registered in the slave role (the source address recorded), the
    // state says so, chmpx is [SLAVE][UP] and sees the server serving.
    let status = state.path().join("status.json");
    let rec = loop {
        if let Ok(r) = Recorded::read(&status) {
            if r.state == "up" {
                break r;
            }
            assert_ne!(r.state, "failed", "{r:?}");
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "the slave never came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let up_after = began.elapsed();
    assert!(rec.registered && rec.ctlport == ctlport, "{rec:?}");
    assert_eq!(rec.servers, [format!("127.0.0.1:{}", n.ports.0)]);
    let listed = slaves_in_k2hr3(&n.k2hr3).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (&listed[0]["ip"], &listed[0]["port"], &listed[0]["tag"]),
        (
            &json!("127.0.0.1"),
            &json!(ctlport),
            &json!(format!("app-{ctlport}"))
        )
    );
    let ctl = format!("127.0.0.1:{ctlport}");
    let live = {
        let t = Instant::now();
        loop {
            let live = Live::ask(&ctl).await;
            if live.healthy() || t.elapsed() > Duration::from_secs(20) {
                break live;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(
        live.healthy(),
        "own {:?}, servers {:?}",
        live.own,
        live.servers.as_ref().map(|s| s.len())
    );
    let ini = std::fs::read_to_string(state.path().join("etc/slave.ini")).unwrap();
    for want in [
        "MODE                   = SLAVE",
        &format!("CUSTOM_ID_SEED         = app-{ctlport}"),
    ] {
        assert!(ini.contains(want), "{want}:\n{ini}");
    }
    assert!(
        !ini.contains("[K2HDKC]") && !ini.contains("SELFCUK"),
        "{ini}"
    );
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.Config.User}} {{.HostConfig.IpcMode}} {{.HostConfig.RestartPolicy.Name}}",
            &container
        ]),
        "1001:1001 shareable unless-stopped"
    );
    eprintln!(
        "slave: registration to [SLAVE][UP] with a serving server: {:.2} s",
        up_after.as_secs_f64()
    );

    // With the real image: an application sets and gets keys through it.
    // (The stand-in has no client.)
    if k2hdkc_image() != STANDIN_IMAGE {
        let t = Instant::now();
        let out = loop {
            let out = through_the_slave(
                &container,
                state.path(),
                ctlport,
                "set slave-key-1 value-1\nprint slave-key-1\nexit\n",
            );
            if out.contains(r#""slave-key-1" => "value-1""#)
                || t.elapsed() > Duration::from_secs(30)
            {
                break out;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        assert!(out.contains(r#""slave-key-1" => "value-1""#), "{out}");
        eprintln!(
            "slave: registration to the first key set and read back: {:.2} s",
            (up_after + t.elapsed()).as_secs_f64()
        );
        // Many keys at once: every one written, then read with its value.
        let keys = "20000";
        for op in ["write", "read"] {
            let run = on_slave(
                &container,
                state.path(),
                ctlport,
                None,
                "k2hdkc-bulk",
                &[op, "-keys", keys, "-prefix", "bulk"],
            );
            let (ok, out) = (run.ok, run.output);
            assert!(ok, "k2hdkc-bulk {op}: {out}");
            assert!(
                out.contains(&format!("ok={keys} stale=0 missing=0 failed=0")),
                "{out}"
            );
            eprintln!("slave: k2hdkc-bulk {}", out.trim());
        }
    }

    // The ring changes: the ini follows within a few poll intervals.
    let absent = e2e_tests::AbsentHost::start();
    n.k2hr3
        .add_member(&absent.ip, n.ports.0, "another-node")
        .await;
    let ini_path = state.path().join("etc/slave.ini");
    let t = Instant::now();
    while !std::fs::read_to_string(&ini_path)
        .unwrap()
        .contains("another-node")
    {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the slave ini never listed the new server"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "slave: server added -> slave ini updated: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // The state file follows at the end of the same round.
    let t = Instant::now();
    loop {
        let rec = Recorded::read(&status).unwrap();
        if rec.servers.len() == 2 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{rec:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n.k2hr3.remove_member("another-node").await;
    let t = Instant::now();
    while std::fs::read_to_string(&ini_path)
        .unwrap()
        .contains("another-node")
    {
        // A dropped server waits for chmpx to see it down (at most 10 s,
        // 30 s while chmpx does not answer).
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "the slave ini never dropped the server"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "slave: server removed -> slave ini updated: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // K2HR3 loses the registration: the slave registers again.
    let cuk = std::fs::read_to_string(state.path().join("cuk")).unwrap();
    let url = format!(
        "{}/v1/role/{}?port={ctlport}&cuk={}",
        n.k2hr3.info["url"].as_str().unwrap(),
        n.k2hr3.info["slave_role_yrn"].as_str().unwrap(),
        cuk.trim()
    );
    let token = format!("R={}", n.k2hr3.info["slave_role_token"].as_str().unwrap());
    e2e_tests::http_json_auth("DELETE", &url, None, Some(&token)).await;
    assert!(
        slaves_in_k2hr3(&n.k2hr3).await.is_empty(),
        "removed behind its back"
    );
    let t = Instant::now();
    while slaves_in_k2hr3(&n.k2hr3).await.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the slave did not register again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A chmpx that dies is started again and finds the server serving
    // (chmpx calls itself [SLAVE][UP] even when no server answered).
    docker(&["rm", "-f", &container]);
    let t = Instant::now();
    loop {
        let live = Live::ask(&ctl).await;
        if live.healthy() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the slave was not started again: its chmpx says {:?}, servers {:?}; container {:?}",
            live.own,
            live.servers,
            docker(&[
                "ps",
                "-a",
                "--filter",
                &format!("name=^/{container}$"),
                "--format",
                "{{.Status}}"
            ])
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "slave: chmpx removed -> started again, [SLAVE][UP], server serving: {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // SIGTERM's path: chmpx stopped and removed, the role left.
    stop.send(()).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(90), slave)
        .await
        .expect("the slave stops within its bound")
        .unwrap();
    assert!(out.is_ok(), "{out:?}");
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name=^/{container}$")]),
        ""
    );
    assert!(slaves_in_k2hr3(&n.k2hr3).await.is_empty());
    let rec = Recorded::read(&status).unwrap();
    assert_eq!(
        (rec.state.as_str(), rec.registered),
        ("stopped", false),
        "{rec:?}"
    );

    // The node serves on.
    let r = n.trove.call("stop_db", json!({}), RING_STEP_S, false).await;
    assert_eq!(r["ok"], true, "{r}");
    n.cleanup().await;
}

/// A cluster with no server yet: the slave says so and leaves nothing
/// behind (no registration, no container).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_of_a_cluster_without_servers_fails_naming_why() {
    let ports = e2e_tests::node_ports();
    let k2hr3 = K2hr3StandIn::start(&format!("c{}", ports.0), ports).await;
    let state = tempfile::tempdir().unwrap();
    let container = format!("k2hdkc-slave-empty-{}", ports.0);
    let _gone = Gone(container.clone());
    let cfg = SlaveConfig::parse(
        slave_config(
            k2hr3.info["slave_extdata_url"].as_str().unwrap(),
            &container,
            ports.2,
            state.path(),
        )
        .as_bytes(),
    )
    .unwrap();
    let containers = Arc::new(agent::docker::DockerHost::new(None).unwrap());
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        datastore::slave::run(cfg, containers, std::future::pending()),
    )
    .await
    .expect("bounded")
    .unwrap_err()
    .to_string();
    assert!(err.contains("no [SVRNODE]"), "{err}");
    assert!(slaves_in_k2hr3(&k2hr3).await.is_empty());
    let rec = Recorded::read(&state.path().join("status.json")).unwrap();
    assert_eq!(rec.state, "failed", "status says why: {rec:?}");
    assert!(
        rec.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("no [SVRNODE]"),
        "{rec:?}"
    );
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name=^/{container}$")]),
        ""
    );

    // A wrong token is refused by K2HR3, and said so.
    let cfg = SlaveConfig::parse(
        format!(
            "k2hr3_api_url = {}\nrole = {}\nrole_token = wrong\nstate_dir = {}\n",
            k2hr3.info["url"].as_str().unwrap(),
            k2hr3.info["slave_role_yrn"].as_str().unwrap(),
            state.path().display()
        )
        .as_bytes(),
    )
    .unwrap();
    let containers = Arc::new(agent::docker::DockerHost::new(None).unwrap());
    let err = datastore::slave::run(cfg, containers, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused (401)"), "{err}");
    assert!(
        !err.contains("wrong"),
        "the token stays out of errors: {err}"
    );
    k2hr3.stop().await;
}
