//! Test helpers shared by the unit tests (compiled for tests only).

/// A chmpx control port on 127.0.0.1 that answers each command (one per
/// connection, as chmpx's control port takes them) with `answer(cmd)`;
/// returns its `host:port`. An empty answer closes the connection with
/// nothing said: an answer lost.
pub(crate) async fn fake_ctlport<F>(answer: F) -> String
where
    F: Fn(&str) -> String + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            // A client gone early (its bound passed) is no failure here.
            let Ok(n) = s.read(&mut buf).await else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
            let _ = s.write_all(answer(&cmd).as_bytes()).await;
        }
    });
    addr
}

use std::sync::Mutex;
use std::time::Duration;

use driver_api::host::{ContainerSpec, ContainerState, Containers, ExecOutput, HostError};

/// A container engine for the node's tests: chmpx always running, with
/// the `StartedAt` the test sets; with `refuse_rlimit`, one that may not
/// raise RLIMIT_MSGQUEUE (as Docker refuses then); with `pull_refused`,
/// one whose registry refuses every pull. It keeps what it was asked.
#[derive(Default)]
pub(crate) struct Engine {
    pub(crate) started_at: Mutex<Option<String>>,
    pub(crate) refuse_rlimit: bool,
    pub(crate) pull_refused: bool,
    pub(crate) ran: Mutex<Vec<ContainerSpec>>,
    pub(crate) pulled: Mutex<Vec<String>>,
    pub(crate) stopped: Mutex<Vec<String>>,
    /// Containers started again, with when.
    pub(crate) started: Mutex<Vec<(String, std::time::Instant)>>,
    /// Each container's output so far; a `SIGUSR1` appends the line a
    /// server prints when it steps its debug level (from `ERR`).
    pub(crate) output: Mutex<std::collections::HashMap<String, String>>,
    /// Containers that take signals but never print (a hung server).
    pub(crate) deaf: Vec<String>,
    /// Containers that show as exited (status 0); the others run.
    pub(crate) exited: Vec<String>,
}

#[async_trait::async_trait]
impl Containers for Engine {
    async fn ensure_image(&self, image: &str) -> Result<(), HostError> {
        self.pulled.lock().unwrap().push(image.to_owned());
        if self.pull_refused {
            return Err(HostError::new(
                format!("pull {image}"),
                "Docker responded with status code 404: manifest unknown",
            ));
        }
        Ok(())
    }
    async fn run(&self, spec: &ContainerSpec) -> Result<(), HostError> {
        if self.refuse_rlimit && !spec.ulimits.is_empty() {
            return Err(HostError::new(
                format!("start container {}", spec.name),
                "Docker responded with status code 500: OCI runtime create failed: \
                 error setting rlimit type 12: operation not permitted: unknown",
            ));
        }
        self.ran.lock().unwrap().push(spec.clone());
        Ok(())
    }
    async fn state(&self, name: &str) -> Result<ContainerState, HostError> {
        if self.exited.iter().any(|e| e == name) {
            return Ok(ContainerState::Exited(0));
        }
        Ok(ContainerState::Running {
            started_at: self.started_at.lock().unwrap().clone(),
        })
    }
    async fn start(&self, name: &str) -> Result<(), HostError> {
        self.started
            .lock()
            .unwrap()
            .push((name.to_owned(), std::time::Instant::now()));
        Ok(())
    }
    async fn stop(&self, name: &str, _: Duration) -> Result<(), HostError> {
        self.stopped.lock().unwrap().push(name.to_owned());
        Ok(())
    }
    async fn remove(&self, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    async fn exec(&self, _: &str, _: &[String], _: Duration) -> Result<ExecOutput, HostError> {
        Err(HostError::new("exec", "not in this test"))
    }
    async fn signal(&self, name: &str, signal: &str) -> Result<(), HostError> {
        assert_eq!(signal, "SIGUSR1");
        if self.deaf.iter().any(|d| d == name) {
            return Ok(());
        }
        let mut out = self.output.lock().unwrap();
        let text = out.entry(name.to_owned()).or_default();
        const ROUND: [&str; 5] = ["SLT", "ERR", "WAN", "MSG", "DMP"];
        let now = crate::node::level_in(text);
        let next = ROUND[(ROUND.iter().position(|l| *l == now).unwrap() + 1) % ROUND.len()];
        text.push_str(&format!(
            "MESSAGE: Caught signal SIGUSR1, bumpup the logging level to {next}.\n"
        ));
        Ok(())
    }
    async fn save_output(&self, name: &str, file: &std::path::Path) -> Result<u64, HostError> {
        let text = self
            .output
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default();
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, &text).unwrap();
        Ok(text.len() as u64)
    }
}
