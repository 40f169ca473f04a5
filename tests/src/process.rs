//! The agent as systemd runs it: the `trove-guestagent` binary on a config
//! directory, as a process of its own that a test can SIGKILL and start
//! again (in-process agents cannot be killed that way).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::repo_root;

/// Builds `trove-guestagent` (debug) once per test process; its path.
pub fn agent_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = std::process::Command::new(
                std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            )
            .current_dir(repo_root())
            .args([
                "build",
                "--locked",
                "-q",
                "-p",
                "agent",
                "--bin",
                "trove-guestagent",
            ])
            .status()
            .expect("cargo runs");
            assert!(status.success(), "building trove-guestagent failed");
            repo_root().join("target/debug/trove-guestagent")
        })
        .clone()
}

/// A `trove-guestagent --config-dir DIR` process; its log (stderr) goes to
/// `DIR/../agent.log`, appended across restarts.
pub struct AgentProcess {
    child: Child,
    log: PathBuf,
}

impl AgentProcess {
    /// Starts the agent on `config_dir`.
    pub fn start(config_dir: &Path) -> AgentProcess {
        let log = config_dir.parent().unwrap_or(config_dir).join("agent.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("agent.log");
        let child = Command::new(agent_binary())
            .arg("--config-dir")
            .arg(config_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .env("TROVE_GUESTAGENT_LOG", "info")
            .kill_on_drop(true)
            .spawn()
            .expect("trove-guestagent starts");
        AgentProcess { child, log }
    }

    /// SIGKILL, as the OOM killer or a reset VM would end it; waits until
    /// it is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// SIGTERM (systemd stop) and a bounded wait for the exit.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            self.kill().await;
        }
    }

    /// What it logged so far (all runs on this directory).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
