//! Crash safety: the agent process SIGKILLed in the middle of prepare and
//! started again, as systemd's `Restart=` does, against the real
//! multi-worker trove-conductor. Trove acknowledged the prepare cast
//! before it ran, so only the agent's journal can finish it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e_tests::controlplane::{ControlPlane, Instance};
use e2e_tests::process::AgentProcess;
use e2e_tests::{docker, http_json, k2hdkc_image, node_ports, K2hr3StandIn, Peer};
use serde_json::json;

/// One guest host's files: the config dir Trove injects into, the agent's
/// state, the data volume (a directory here).
struct Host {
    dir: tempfile::TempDir,
    inst: Instance,
}

impl Host {
    fn new(inst: Instance, state_change_wait_time: u64) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf.d");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("guest_info.conf"), &inst.guest_info).unwrap();
        std::fs::write(conf.join("trove-guestagent.conf"), &inst.guest_config).unwrap();
        let d = dir.path().display();
        std::fs::write(
            conf.join("zz-test.conf"),
            format!(
                "[DEFAULT]\nagent_state_dir = {d}/state\nstate_change_wait_time = {state_change_wait_time}\n\
                 [oslo_messaging_rabbit]\nrabbit_retry_interval = 1\nrabbit_retry_backoff = 0\n\
                 [k2hdkc]\nmount_point = {d}/data\ndevice_path = /nonexistent/test-volume\nconfig_dir = {d}/data/etc\n\
                 docker_image = {}\nstartup_wait = 60\nk2hr3_poll_interval_ms = 500\n{}",
                k2hdkc_image(),
                e2e_tests::msgqueue_line()
            ),
        )
        .unwrap();
        Host { dir, inst }
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("conf.d")
    }

    fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join("state").join(&self.inst.id).join(name)
    }

    fn containers(&self) -> Vec<String> {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=org.openstack.trove.instance={}", self.inst.id),
            "--format",
            "{{.Names}} {{.State}}",
        ]);
        out.lines().map(str::to_owned).collect()
    }

    fn remove_containers(&self) {
        for line in self.containers() {
            if let Some(name) = line.split_whitespace().next() {
                docker(&["rm", "-f", name]);
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.remove_containers();
    }
}

async fn wait_for(what: &str, within: Duration, check: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !check() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a prepare that hangs in K2HR3 (the stand-in answers after
/// `delay` s) and kills the agent while it does.
async fn prepare_and_kill(
    cp: &mut ControlPlane,
    host: &Host,
    k2hr3: &K2hr3StandIn,
    ports: (u16, u16, u16),
    delay: u64,
) -> AgentProcess {
    http_json(
        "POST",
        &format!("{}/_standin/fault", k2hr3.info["url"].as_str().unwrap()),
        Some(json!({"mode": "slow", "delay_s": delay})),
    )
    .await;
    let mut agent = AgentProcess::start(&host.conf_dir());
    let mut trove = Peer::client(&host.inst.id, Some(&host.inst.key), &[]).await;
    let overrides = json!({
        "cluster-name": format!("c{}", ports.0), "extdata-url": k2hr3.info["extdata_url"],
        "chmpx-server-port": ports.0, "chmpx-server-ctlport": ports.1, "chmpx-slave-ctlport": ports.2,
    });
    let r = trove
        .send(json!({"op": "cast", "method": "prepare", "kwargs": {
        "memory_mb": 1024, "packages": [], "databases": [], "users": [], "overrides": overrides}}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    trove.quit().await;
    if let Err(e) = cp
        .wait_status(&host.inst.id, "building", Duration::from_secs(30))
        .await
    {
        panic!("{e}\nagent log:\n{}", agent.log());
    }
    // In K2HR3 now (the call is recorded before the stand-in stalls).
    let request = host.state("prepare-request.json");
    wait_for("prepare waiting on K2HR3", Duration::from_secs(10), || {
        request.exists()
    })
    .await;
    let t = std::time::Instant::now();
    while k2hr3.calls().await.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "prepare never reached K2HR3"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mode = std::fs::metadata(&request).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the kept request holds secrets");
    agent.kill().await;
    agent
}

/// The regression of issue "Crash-safe operations": killed mid-prepare,
/// the restarted agent finishes it and the conductor stores healthy; 10
/// times in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_prepare_resumes_it_after_a_restart() {
    let mut cp = ControlPlane::start().await;
    for round in 1..=10 {
        let ports = node_ports();
        let k2hr3 = K2hr3StandIn::start(&format!("c{}", ports.0), ports).await;
        let host = Host::new(cp.create_instance(&format!("crash-{round}")).await, 120);
        let killed = prepare_and_kill(&mut cp, &host, &k2hr3, ports, 6).await;
        k2hr3.fault("ok").await;
        let agent = AgentProcess::start(&host.conf_dir());
        if let Err(e) = cp
            .wait_status(&host.inst.id, "healthy", Duration::from_secs(90))
            .await
        {
            panic!("round {round}: {e}\nagent log:\n{}", agent.log());
        }
        let log = agent.log();
        assert!(
            log.contains("the agent restarted during prepare; resuming it"),
            "round {round}: {log}"
        );
        assert!(
            !host.state("prepare-request.json").exists(),
            "round {round}: the request is removed when prepare ends"
        );
        assert!(host.state("prepare-end").exists(), "round {round}");
        let running = host.containers();
        assert_eq!(
            running.iter().filter(|l| l.ends_with("running")).count(),
            2,
            "round {round}: {running:?}"
        );
        assert_eq!(
            cp.status(&host.inst.id).await,
            "healthy",
            "round {round}: still healthy"
        );
        drop(killed);
        agent.stop().await;
        k2hr3.stop().await;
    }
    cp.stop().await;
}

/// Past `state_change_wait_time` since prepare began, the restarted agent
/// gives up: `failed to spawn` stored, the cause logged, nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_too_late_reports_the_interrupted_prepare_failed() {
    let mut cp = ControlPlane::start().await;
    let ports = node_ports();
    let k2hr3 = K2hr3StandIn::start(&format!("c{}", ports.0), ports).await;
    let host = Host::new(cp.create_instance("crash-late").await, 4);
    let _killed = prepare_and_kill(&mut cp, &host, &k2hr3, ports, 30).await;
    // The guest stays down past the bound.
    tokio::time::sleep(Duration::from_secs(5)).await;
    k2hr3.fault("ok").await;
    let agent = AgentProcess::start(&host.conf_dir());
    if let Err(e) = cp
        .wait_status(&host.inst.id, "failed to spawn", Duration::from_secs(30))
        .await
    {
        panic!("{e}\nagent log:\n{}", agent.log());
    }
    let log = agent.log();
    assert!(
        log.contains(
            "the agent restarted during prepare and state_change_wait_time (4s) has passed"
        ),
        "{log}"
    );
    assert!(
        !host.state("prepare-request.json").exists(),
        "no request (and its secrets) left"
    );
    assert!(host.state("prepare-failed").exists());
    assert!(
        host.containers().is_empty(),
        "nothing started: {:?}",
        host.containers()
    );
    // Still reported later (report_interval = 1 s here), never building again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cp.status(&host.inst.id).await, "failed to spawn");
    assert!(!Path::new(&host.state("prepare-end")).exists());
    agent.stop().await;
    k2hr3.stop().await;
    cp.stop().await;
}
