//! A Trove control plane per test: upstream trove 26's real
//! `trove-conductor` (its default worker count, one per CPU) on a database
//! of its own in the MariaDB `tests/setup.sh` runs, with the instance rows
//! and injected files made by trove's own models. It is
//! `tests/controlplane/plane.py`, driven over JSON lines.
//!
//! ```text
//! let mut cp = ControlPlane::start().await;
//! let inst = cp.create_instance("name").await;   // guest_info.conf, trove-guestagent.conf, key
//! // ... run the agent on inst.guest_info + inst.guest_config ...
//! cp.wait_status(&inst.id, "healthy", Duration::from_secs(60)).await.unwrap();
//! cp.stop().await;
//! ```
//!
//! Dropping a `ControlPlane` without `stop` kills plane.py; a watcher it
//! started then stops the conductor and drops the database and queues.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{peer_python, repo_root, transport_url};

/// How long plane.py may take to be ready (database, schema, conductor).
const START_WITHIN: Duration = Duration::from_secs(90);
/// How long one command may take.
const REPLY_WITHIN: Duration = Duration::from_secs(60);

/// A running control plane (plane.py, its trove-conductor and database).
pub struct ControlPlane {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    work: tempfile::TempDir,
    /// The conductor's queue (`conductor_queue` of the guest config).
    pub queue: String,
}

/// One instance, as trove-api and trove-taskmanager made it.
pub struct Instance {
    /// The instance id (the guest id).
    pub id: String,
    /// The per-instance RPC key (guest_info.conf's instance_rpc_encr_key).
    pub key: String,
    /// guest_info.conf, as trove injects it.
    pub guest_info: String,
    /// trove-guestagent.conf, as trove injects it (the operator's guest
    /// config: transport_url, control_exchange, conductor_queue,
    /// report_interval = 1).
    pub guest_config: String,
}

impl ControlPlane {
    /// Starts one with a fresh queue name; panics (with plane.py's log) if
    /// it is not ready within 90 s.
    pub async fn start() -> ControlPlane {
        let work = tempfile::Builder::new()
            .prefix("controlplane-")
            .tempdir()
            .expect("a temporary directory");
        let queue = format!("trove-conductor-test-{}", uuid::Uuid::new_v4().simple());
        let log = std::fs::File::create(work.path().join("plane.log")).expect("plane.log");
        let mut child = Command::new(peer_python())
            .arg(repo_root().join("tests/controlplane/plane.py"))
            .arg("--work")
            .arg(work.path())
            .args(["--url", &transport_url(), "--queue", &queue])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("plane.py starts (is the venv made? run tests/run)");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut cp = ControlPlane {
            child,
            stdin,
            lines,
            work,
            queue,
        };
        match cp.next(START_WITHIN).await {
            Some(v) if v["ready"] == true => cp,
            other => panic!(
                "the control plane did not start within {START_WITHIN:?} (it said {other:?}); plane.log:\n{}\nconductor.log:\n{}",
                cp.log("plane.log"),
                cp.conductor_log()
            ),
        }
    }

    /// The instance rows (status NEW) and the files trove injects.
    pub async fn create_instance(&mut self, name: &str) -> Instance {
        let v = self
            .send(json!({"op": "create-instance", "name": name}))
            .await;
        let id = v["id"]
            .as_str()
            .unwrap_or_else(|| panic!("create-instance failed: {v}"))
            .to_owned();
        let file = |n: &str| {
            v["files"][n]
                .as_str()
                .unwrap_or_else(|| panic!("create-instance returned no {n}"))
                .to_owned()
        };
        let (guest_info, guest_config) = (file("guest_info.conf"), file("trove-guestagent.conf"));
        let key = guest_info
            .lines()
            .find_map(|l| {
                l.split_once('=')
                    .filter(|(k, _)| k.trim() == "instance_rpc_encr_key")
                    .map(|(_, v)| v.trim().to_owned())
            })
            .filter(|k| !k.is_empty())
            .expect("guest_info.conf has instance_rpc_encr_key");
        Instance {
            id,
            key,
            guest_info,
            guest_config,
        }
    }

    /// The status trove-conductor stored for the instance, by its
    /// description: "new", "building", "healthy", "failed to spawn",
    /// "shutdown", ...
    pub async fn status(&mut self, id: &str) -> String {
        let v = self.status_row(id).await;
        v["status"]
            .as_str()
            .unwrap_or_else(|| panic!("status of {id} failed: {v}"))
            .to_owned()
    }

    /// The whole stored row: status, api_status, updated_at,
    /// last_heartbeat_sent (conductor_lastseen), conductor_running.
    pub async fn status_row(&mut self, id: &str) -> Value {
        self.send(json!({"op": "status", "id": id})).await
    }

    /// Polls the stored status every 200 ms until it is `until`; Err names
    /// the last status seen.
    pub async fn wait_status(
        &mut self,
        id: &str,
        until: &str,
        within: Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let v = self.status_row(id).await;
            let now = v["status"].as_str().unwrap_or_default();
            if now == until {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let last = if now.is_empty() {
                    format!("no status ({v})")
                } else {
                    format!("{now:?}")
                };
                let conductor = if v["conductor_running"] == false {
                    "; trove-conductor has exited"
                } else {
                    ""
                };
                return Err(format!("instance {id}: stored status not {until:?} within {within:?}; last seen {last}{conductor}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The work directory (trove.conf, conductor.log, plane.log).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// trove-conductor's log, without the option dump it logs at start
    /// (trove does not mask inst_rpc_key_encr_key there).
    pub fn conductor_log(&self) -> String {
        self.log("conductor.log")
            .lines()
            .filter(|l| !l.contains("log_opt_values"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.path().join(name)).unwrap_or_default()
    }

    /// Stops the conductor, drops the database and user, deletes the
    /// queues; bounded (then plane.py is killed and its watcher cleans up).
    pub async fn stop(mut self) {
        if self.stdin.write_all(b"{\"op\":\"quit\"}\n").await.is_ok() {
            let _ = self.next(REPLY_WITHIN).await;
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    async fn send(&mut self, command: Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("plane.py stdin");
        match self.next(REPLY_WITHIN).await {
            Some(v) => v,
            None => panic!(
                "plane.py did not answer {command} within {REPLY_WITHIN:?}; plane.log:\n{}",
                self.log("plane.log")
            ),
        }
    }

    async fn next(&mut self, within: Duration) -> Option<Value> {
        match tokio::time::timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("plane.py printed non-JSON {line:?}: {e}")),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs RabbitMQ, MariaDB and the venv (tests/setup.sh).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plane_creates_an_instance_with_status_new() {
        let mut cp = ControlPlane::start().await;
        let inst = cp.create_instance("controlplane-selftest").await;
        assert!(
            inst.guest_info.contains(&format!("guest_id={}", inst.id)),
            "guest_info.conf names the instance"
        );
        assert!(inst.key.len() >= 16, "an instance key");
        assert!(
            inst.guest_config
                .contains(&format!("conductor_queue = {}", cp.queue)),
            "{}",
            inst.guest_config
        );
        assert!(
            inst.guest_config.contains("report_interval = 1"),
            "{}",
            inst.guest_config
        );
        assert_eq!(cp.status(&inst.id).await, "new");
        cp.wait_status(&inst.id, "new", Duration::from_secs(5))
            .await
            .unwrap();
        let err = cp
            .wait_status(&inst.id, "healthy", Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(err.contains("\"new\""), "{err}");
        let other = cp.create_instance("controlplane-selftest-2").await;
        assert_ne!(other.id, inst.id);
        assert_ne!(other.key, inst.key);
        cp.stop().await;
    }
}
