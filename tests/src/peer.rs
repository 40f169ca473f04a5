//! `tests/peer/peer.py`: upstream Trove's own RPC code (oslo.messaging,
//! trove's guest API) driven line by line from a test.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{peer_python, repo_root, transport_url};

/// A `peer.py` process.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    async fn spawn(args: &[&str]) -> Peer {
        let mut child = Command::new(peer_python())
            .arg(repo_root().join("tests/peer/peer.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("peer.py starts (is the venv made? run tests/run)");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Peer {
            child,
            stdin,
            lines,
        }
    }

    /// The control plane's client for `guest_id` (trove.guestagent.api.API).
    pub async fn client(guest_id: &str, key: Option<&str>, extra: &[&str]) -> Peer {
        let url = transport_url();
        let mut args = vec!["client", "--url", &url, "--guest-id", guest_id];
        if let Some(k) = key {
            args.extend(["--key", k]);
        }
        args.extend_from_slice(extra);
        Peer::spawn(&args).await
    }

    /// trove-conductor's RPC server with its host-side serializer.
    pub async fn conductor(guest_id: &str, key: &str, queue: &str) -> Peer {
        let url = transport_url();
        let mut p = Peer::spawn(&[
            "conductor",
            "--url",
            &url,
            "--guest-id",
            guest_id,
            "--key",
            key,
            "--queue",
            queue,
        ])
        .await;
        let ready = p
            .next(Duration::from_secs(30))
            .await
            .expect("conductor peer ready");
        assert_eq!(ready["ready"], true, "{ready}");
        p
    }

    /// Sends one command and reads its reply.
    pub async fn send(&mut self, command: Value) -> Value {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("peer stdin");
        self.next(Duration::from_secs(120))
            .await
            .expect("peer replied")
    }

    /// A `call` through trove's guest API; `direct` shows the remote class.
    pub async fn call(
        &mut self,
        method: &str,
        kwargs: Value,
        timeout_s: u64,
        direct: bool,
    ) -> Value {
        self.send(serde_json::json!({"op": "call", "method": method, "kwargs": kwargs, "timeout": timeout_s, "direct": direct})).await
    }

    /// The next JSON line, if one comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        match tokio::time::timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("peer printed non-JSON {line:?}: {e}")),
            ),
            _ => None,
        }
    }

    /// Reads lines until one matches, within `within` overall.
    pub async fn next_matching(
        &mut self,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next(left).await?;
            if pred(&v) {
                return Some(v);
            }
        }
    }

    /// Ends the peer.
    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"{\"op\":\"quit\"}\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}
