//! What `k2hdkc-slave status` shows: the state the running slave records
//! in `status.json` (no secret in it), and chmpx's own view, asked live.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chmpx::{self, ChmpxError, NodeStatus, ServerStatus};

/// Why `status.json` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusFileError {
    /// Not there or not readable: the slave never ran here, most likely.
    #[error("no state at {} ({source}): has k2hdkc-slave run here?", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not what the slave writes.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// The slave's recorded state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// `starting`, `up`, `stopped` or `failed`.
    pub state: String,
    /// The slave role's YRN.
    pub role: String,
    /// Registered in the role now.
    pub registered: bool,
    /// This slave's seed and K2HR3 tag.
    pub seed: String,
    /// The container.
    pub container: String,
    /// The control port.
    pub ctlport: u16,
    /// The server nodes the ini lists (`name:port`).
    pub servers: Vec<String>,
    /// When the ini last changed (RFC 3339, UTC).
    pub ini_updated_at: String,
    /// Why the slave failed or what it last could not do.
    pub last_error: Option<String>,
}

impl Recorded {
    /// Reads `status.json`.
    pub fn read(path: &Path) -> Result<Recorded, StatusFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| StatusFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| StatusFileError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes it atomically (0644: nothing secret in it).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::ini::write_atomic(path, &(text + "\n"), 0o644).map(|_| ())
    }
}

/// The live view: the slave's own status and the servers it sees.
pub struct Live {
    /// `SELFSTATUS`, or why not.
    pub own: Result<NodeStatus, ChmpxError>,
    /// `ALLSTATUS`, or why not.
    pub servers: Result<Vec<ServerStatus>, ChmpxError>,
}

/// How often a dropped or late answer is asked again, and how far apart:
/// a chmpx that has just started (or reloaded its ini) can reset a control
/// connection or answer late once, and answers the next (seen in CI: a
/// slave's `ALLSTATUS` reset 0.85 s after it came up).
const ASK_TRIES: usize = 3;
const ASK_GAP: std::time::Duration = std::time::Duration::from_millis(300);

/// `ask()` again while chmpx drops the connection or answers late, at most
/// [`ASK_TRIES`] times; any other answer, or the last one, is returned.
async fn asked<T, F, Fut>(ask: F) -> Result<T, chmpx::ChmpxError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, chmpx::ChmpxError>>,
{
    let mut answer = ask().await;
    for _ in 1..ASK_TRIES {
        match &answer {
            Err(chmpx::ChmpxError::Dropped { .. } | chmpx::ChmpxError::Timeout(..)) => {
                tokio::time::sleep(ASK_GAP).await;
                answer = ask().await;
            }
            _ => break,
        }
    }
    answer
}

impl Live {
    /// Asks the slave's chmpx at `ctl`.
    pub async fn ask(ctl: &str) -> Live {
        Live {
            own: asked(|| chmpx::self_status(ctl)).await,
            servers: asked(|| chmpx::all_status(ctl)).await,
        }
    }

    /// The slave is up and at least one server serves.
    pub fn healthy(&self) -> bool {
        self.own.as_ref().is_ok_and(NodeStatus::is_slave_up)
            && self
                .servers
                .as_ref()
                .is_ok_and(|s| s.iter().any(|s| s.status.is_serving()))
    }
}

/// The text `status` prints.
pub fn render(rec: &Recorded, live: &Live) -> String {
    let mut out = format!(
        "k2hdkc-slave: {} ({} in {} as {}, control port {}, container {})\n",
        rec.state,
        if rec.registered {
            "registered"
        } else {
            "not registered"
        },
        rec.role,
        rec.seed,
        rec.ctlport,
        rec.container
    );
    out += &format!(
        "ini: {} server node(s), last changed {}\n",
        rec.servers.len(),
        if rec.ini_updated_at.is_empty() {
            "never"
        } else {
            &rec.ini_updated_at
        }
    );
    if let Some(e) = &rec.last_error {
        out += &format!("last error: {e}\n");
    }
    match &live.own {
        Ok(s) => out += &format!("chmpx: {s}\n"),
        Err(e) => out += &format!("chmpx: no answer: {e}\n"),
    }
    match &live.servers {
        Ok(list) => {
            let up = list.iter().filter(|s| s.status.is_serving()).count();
            out += &format!("servers seen: {} ({up} serving)\n", list.len());
            for s in list {
                let port = s.ctlport.map(|p| p.to_string()).unwrap_or_default();
                out += &format!(
                    "  {}:{port} {} {}\n",
                    s.name,
                    s.status,
                    if s.status.is_serving() { "UP" } else { "DOWN" }
                );
            }
        }
        Err(e) => out += &format!("servers seen: unknown: {e}\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(text: &str) -> NodeStatus {
        chmpx::parse_status_line(text).unwrap()
    }

    #[test]
    fn renders_registration_servers_and_their_state() {
        let rec = Recorded {
            state: "up".into(),
            role: "yrn:yahoo:::t:role:c/slave".into(),
            registered: true,
            seed: "app-1".into(),
            container: "k2hdkc-slave".into(),
            ctlport: 8031,
            servers: vec!["10.0.0.1:8020".into(), "10.0.0.2:8020".into()],
            ini_updated_at: "2026-12-01T08:00:00Z".into(),
            last_error: None,
        };
        let serving = ServerStatus {
            name: "10.0.0.1".into(),
            ctlport: Some(8021),
            cuk: String::new(),
            custom_id_seed: String::new(),
            status: status("[SERVICE IN][UP][n/a][Nothing][NoSuspend]"),
            hashes: Default::default(),
        };
        let down = ServerStatus {
            name: "10.0.0.2".into(),
            status: status("[SERVICE IN][DOWN][n/a][Nothing][Suspend]"),
            ..serving.clone()
        };
        let live = Live {
            own: Ok(status("[SLAVE][UP][n/a][Nothing][NoSuspend]")),
            servers: Ok(vec![serving, down]),
        };
        let text = render(&rec, &live);
        assert!(
            text.contains(
                "up (registered in yrn:yahoo:::t:role:c/slave as app-1, control port 8031"
            ),
            "{text}"
        );
        assert!(text.contains("ini: 2 server node(s)"), "{text}");
        assert!(text.contains("servers seen: 2 (1 serving)"), "{text}");
        assert!(
            text.contains("10.0.0.1:8021 [SERVICE IN][UP][n/a][Nothing][NoSuspend] UP"),
            "{text}"
        );
        assert!(text.contains("10.0.0.2:8021 [SERVICE IN][DOWN]"), "{text}");
        assert!(live.healthy());
        let refused = || ChmpxError::Io {
            addr: "127.0.0.1:8031".into(),
            cause: "connection refused".into(),
        };
        let gone = Live {
            own: Err(refused()),
            servers: Err(refused()),
        };
        assert!(!gone.healthy());
        assert!(render(&rec, &gone)
            .contains("chmpx: no answer: chmpx control port 127.0.0.1:8031: connection refused"));
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let rec = Recorded {
            state: "starting".into(),
            ctlport: 8031,
            ..Recorded::default()
        };
        rec.write(&path).unwrap();
        assert_eq!(Recorded::read(&path).unwrap(), rec);
        let e = Recorded::read(&dir.path().join("none.json")).unwrap_err();
        assert!(e.to_string().contains("has k2hdkc-slave run here?"), "{e}");
    }

    /// A chmpx that resets the first connection after it starts: `status`
    /// asks again and shows the servers, not "unknown".
    #[tokio::test]
    async fn a_reset_control_connection_is_asked_again() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut resets = 1;
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let n = s.read(&mut buf).await.unwrap();
                let cmd = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
                if cmd == "ALLSTATUS" && resets > 0 {
                    resets -= 1;
                    // A zero linger resets at once; it never blocks.
                    #[allow(deprecated)]
                    s.set_linger(Some(std::time::Duration::ZERO)).unwrap();
                    drop(s); // RST: "connection reset by peer"
                    continue;
                }
                let status =
                    "Server Status = 0x21(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])";
                let reply = if cmd == "SELFSTATUS" {
                    "    Server Status = 0x1(SAFE -> [SLAVE][UP][n/a][Nothing][NoSuspend])\n"
                        .to_owned()
                } else {
                    format!("RING Name = c1\nNo.1\n  Server Name = 10.0.0.1\n    Control Port = 8021\n    CUK = a\n    Custom ID Seed = a\n    {status}\n")
                };
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let live = Live::ask(&addr).await;
        let servers = live.servers.as_ref().expect("asked again after the reset");
        assert_eq!(servers.len(), 1);
        assert!(live.healthy());
    }
}
