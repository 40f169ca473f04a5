//! What a driver asks of the guest host: containers. The agent implements
//! [`Containers`] with the Docker API; a driver only describes what it
//! wants running.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

/// A bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Path on the host.
    pub host: String,
    /// Path in the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The container's IPC namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipc {
    /// Its own, which others may join.
    Shareable,
    /// The namespace of another container (by name).
    Container(String),
}

/// The container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// The host's (the guest VM's): what a Trove guest runs with.
    Host,
    /// The namespace of another container (by name), e.g. a guest host of
    /// a local test cloud whose network is that container's.
    Container(String),
}

/// A container a driver wants running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container name (unique on the host).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// The command, as an argument vector (never a shell string).
    pub cmd: Vec<String>,
    /// `uid:gid` to run as.
    pub user: String,
    /// Network namespace.
    pub network: Network,
    /// IPC namespace.
    pub ipc: Ipc,
    /// Share the PID namespace of this container.
    pub pid_of: Option<String>,
    /// Bind mounts.
    pub binds: Vec<Bind>,
    /// Namespaced kernel parameters (e.g. `fs.mqueue.msg_max`).
    pub sysctls: BTreeMap<String, String>,
    /// Resource limits of the container's processes (e.g. `msgqueue`).
    pub ulimits: Vec<Ulimit>,
    /// Labels (e.g. the Trove instance id).
    pub labels: BTreeMap<String, String>,
    /// Environment, `NAME=value`.
    pub env: Vec<String>,
    /// Signal that stops the main process (chmpx wants SIGINT).
    pub stop_signal: Option<String>,
    /// Restart policy `unless-stopped`.
    pub restart_unless_stopped: bool,
}

/// One resource limit (`setrlimit`), by Docker's name for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// Docker's name: `msgqueue`, `nofile`, ...
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// A container's state as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// No such container.
    Missing,
    /// Created, never started.
    Created,
    /// Running, since `started_at` (the engine's `State.StartedAt`). A
    /// new value nobody asked for means the restart policy brought it
    /// back: a crash that may have healed before anyone looked.
    Running {
        /// When this run started, as the engine says.
        started_at: Option<String>,
    },
    /// Paused.
    Paused,
    /// Being restarted by its restart policy.
    Restarting,
    /// Exited with this code.
    Exited(i64),
    /// Dead or removing.
    Dead,
}

/// What a command run in a container printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code.
    pub code: i64,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A host failure, naming what was being done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{context}: {cause}")]
pub struct HostError {
    /// What was being done ("pull image antpickax/k2hdkc:1.0.17").
    pub context: String,
    /// Why it failed.
    pub cause: String,
}

impl HostError {
    /// A host error.
    pub fn new(context: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        Self {
            context: context.into(),
            cause: cause.to_string(),
        }
    }
}

/// Containers on the guest host.
#[async_trait]
pub trait Containers: Send + Sync + 'static {
    /// Makes sure the image is present, pulling it if not.
    async fn ensure_image(&self, image: &str) -> Result<(), HostError>;
    /// Creates the container if missing (replacing one created from a
    /// different spec) and starts it if not running.
    async fn run(&self, spec: &ContainerSpec) -> Result<(), HostError>;
    /// The container's state.
    async fn state(&self, name: &str) -> Result<ContainerState, HostError>;
    /// Starts an existing container.
    async fn start(&self, name: &str) -> Result<(), HostError>;
    /// Stops it with its stop signal, waiting at most `grace`.
    async fn stop(&self, name: &str, grace: Duration) -> Result<(), HostError>;
    /// Removes it (stopped or not).
    async fn remove(&self, name: &str) -> Result<(), HostError>;
    /// Runs a command in it, bounded by `timeout`.
    async fn exec(
        &self,
        name: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, HostError>;
    /// Sends `signal` (e.g. `SIGUSR1`) to the container's main process.
    async fn signal(&self, name: &str, signal: &str) -> Result<(), HostError> {
        Err(HostError::new(
            format!("send {signal} to container {name}"),
            "this container engine cannot",
        ))
    }
    /// Copies the container's output so far (stdout and stderr, each line
    /// with the engine's timestamp) into `file`, replacing it at once
    /// when complete; the bytes written.
    async fn save_output(&self, name: &str, _file: &std::path::Path) -> Result<u64, HostError> {
        Err(HostError::new(
            format!("copy the output of container {name}"),
            "this container engine cannot",
        ))
    }
}
