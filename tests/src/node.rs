//! A K2HDKC node under test (the fixture of the node tests): the real
//! agent in-process with the K2HDKC driver on the k2hdkc test image, its own
//! K2HR3 stand-in and ports, Trove's guest API client and a recording
//! conductor (`tests/peer/peer.py`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    docker, k2hdkc_image, msgqueue_line, node_ports, start_agent, AgentSetup, K2hr3StandIn, Peer,
    RunningAgent,
};

/// The node tests' `startup_wait`: each ring step's bound (a leave, a
/// join). The production default, 120 s: a loaded 2-core CI machine once
/// needed more than 30 s for a lone node's leave, and a join whose merge
/// the real chmpx loses is repaired 90 s after it began.
pub const STARTUP_WAIT_S: u64 = 120;

/// How long a test waits for a guest call that may leave and join the
/// ring (`restart`: both steps, each bounded by [`STARTUP_WAIT_S`]).
pub const RING_STEP_S: u64 = 2 * STARTUP_WAIT_S + 20;

/// A heartbeat's `service_status`.
pub fn status_of(v: &Value) -> &str {
    v["kwargs"]["payload"]["service_status"]
        .as_str()
        .unwrap_or("")
}

/// One K2HDKC node under test: the agent in-process, Trove's client and a
/// recording conductor, its own K2HR3 stand-in and ports.
pub struct Node {
    pub agent: RunningAgent,
    pub trove: Peer,
    pub conductor: Peer,
    pub k2hr3: K2hr3StandIn,
    pub ports: (u16, u16, u16),
    pub config_dir: std::path::PathBuf,
    pub conductor_queue: String,
    pub _containers: ContainerGuard,
    /// Heartbeats `sent` before this (epoch seconds) are ignored: they come
    /// from an agent process that has since been stopped.
    pub since: f64,
}

/// Removes the guest's containers when a test ends, also by a failed
/// assertion: they restart by policy and would load the machine.
pub struct ContainerGuard(pub String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=org.openstack.trove.instance={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
    }
}

/// Seconds since the epoch.
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A node on the k2hdkc test image with `extra` agent config appended;
/// not prepared yet. Its K2HR3 template has AUTOMERGE on.
pub async fn node(extra: &str) -> Node {
    node_with(extra, true).await
}

/// [`node`] whose K2HR3 template has AUTOMERGE `automerge`.
pub async fn node_with(extra: &str, automerge: bool) -> Node {
    let image = k2hdkc_image();
    let ports = node_ports();
    let cluster = format!("c{}", ports.0);
    let k2hr3 = K2hr3StandIn::start_with(&cluster, ports, automerge).await;
    let queue = format!("conductor-{}", crate::guest_id());
    let setup = AgentSetup {
        // A test that sets msgqueue_bytes itself gets no other value.
        extra: format!("[DEFAULT]\nconductor_queue = {queue}\n[k2hdkc]\ndocker_image = {image}\nstartup_wait = {STARTUP_WAIT_S}\nk2hr3_poll_interval_ms = 500\n{}{extra}",
            if extra.contains("msgqueue_bytes") { "" } else { msgqueue_line() }),
        ..AgentSetup::new()
    };
    let (guest, key) = (setup.guest_id.clone(), setup.key.clone().unwrap());
    let conductor = Peer::conductor(&guest, &key, &queue).await;
    let agent = start_agent(setup).await;
    let trove = Peer::client(&guest, Some(&key), &[]).await;
    let config_dir = agent.mount_point.join("etc");
    let _containers = ContainerGuard(guest);
    Node {
        agent,
        trove,
        conductor,
        k2hr3,
        ports,
        config_dir,
        conductor_queue: queue,
        _containers,
        since: 0.0,
    }
}

/// Stops the node's agent, then starts a new one on the same guest (same
/// state, config and data directories). Returns the directories to keep.
pub async fn restart_agent(mut n: Node) -> (Node, Vec<tempfile::TempDir>) {
    let (guest, key, state) = (
        n.agent.guest_id.clone(),
        n.agent.key.clone(),
        n.agent.state_dir.clone(),
    );
    let mount = n.agent.mount_point.clone();
    let keep = n.agent.take_dirs();
    let extra = format!(
        "[DEFAULT]\nconductor_queue = {}\n[k2hdkc]\ndocker_image = {}\nstartup_wait = {STARTUP_WAIT_S}\nk2hr3_poll_interval_ms = 500\nmount_point = {m}\nconfig_dir = {m}/etc\n{}",
        n.conductor_queue,
        k2hdkc_image(),
        msgqueue_line(),
        m = mount.display()
    );
    n.agent.stop().await;
    // The old agent's last periodic heartbeats may still be unread; only
    // what the new process sends counts from here on.
    let since = epoch_now();
    let agent = start_agent(AgentSetup {
        guest_id: guest,
        key,
        extra,
        datastore: None,
        state_dir: Some(state),
    })
    .await;
    (Node { agent, since, ..n }, keep)
}

impl Node {
    pub fn overrides(&self) -> Value {
        json!({
            "cluster-name": format!("c{}", self.ports.0),
            "extdata-url": self.k2hr3.info["extdata_url"],
            "chmpx-server-port": self.ports.0,
            "chmpx-server-ctlport": self.ports.1,
            "chmpx-slave-ctlport": self.ports.2,
        })
    }

    pub async fn prepare(&mut self) -> Value {
        let overrides = self.overrides();
        self.trove.send(json!({"op": "cast", "method": "prepare", "kwargs": {
            "memory_mb": 1024, "packages": [], "databases": [], "users": [], "overrides": overrides,
        }})).await
    }

    /// Prepares the node and waits (150 s at most) for the heartbeat that
    /// ends the build: it must say `healthy`.
    pub async fn prepare_healthy(&mut self) {
        assert_eq!(self.prepare().await["ok"], true);
        let end = self
            .heartbeat(Duration::from_secs(150), |s| s != "building")
            .await;
        assert_eq!(end.as_deref(), Some("healthy"), "prepare ends healthy");
    }

    pub async fn heartbeat(
        &mut self,
        within: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Option<String> {
        self.conductor
            .next_matching(within, |v| {
                v["method"] == "heartbeat"
                    && v["kwargs"]["sent"].as_f64().unwrap_or(f64::MAX) >= self.since
                    && want(status_of(v))
            })
            .await
            .map(|v| status_of(&v).to_owned())
    }

    pub fn containers(&self) -> Vec<String> {
        let out = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=org.openstack.trove.instance={}", self.agent.guest_id),
            "--format",
            "{{.Names}} {{.State}}",
        ]);
        let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
        v.sort();
        v
    }

    pub async fn cleanup(self) {
        let names: Vec<String> = self
            .containers()
            .iter()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        for n in names {
            docker(&["rm", "-f", &n]);
        }
        self.trove.quit().await;
        self.conductor.quit().await;
        self.agent.stop().await;
        self.k2hr3.stop().await;
    }
}
