//! The chmpx control port: one command per TCP connection, chmpx replies
//! and closes (yahoojapan/chmpx `chmpxctrl*`; CONTRACTS.md §6). Every call
//! is bounded.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one control command may take (connect, send, read to close).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// Replies are a few KiB; ALLSTATUS of a large cluster a few tens.
const MAX_REPLY: usize = 1024 * 1024;

/// Why a control command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChmpxError {
    /// Could not connect, or the connection broke.
    #[error("chmpx control port {addr}: {cause}")]
    Io {
        /// `host:port`.
        addr: String,
        /// Why.
        cause: String,
    },
    /// No full reply within [`COMMAND_TIMEOUT`].
    #[error("chmpx control port {0}: no reply within {COMMAND_TIMEOUT:?}")]
    Timeout(String),
    /// chmpx answered with an error line.
    #[error("chmpx refused {command}: {reply}")]
    Refused {
        /// The command.
        command: String,
        /// chmpx's reply.
        reply: String,
    },
    /// The reply has no status line.
    #[error("chmpx reply has no status line")]
    NoStatus,
}

/// Sends `command` to the control port at `addr` and returns the reply.
pub async fn command(addr: &str, command: &str) -> Result<String, ChmpxError> {
    let io = |e: std::io::Error| ChmpxError::Io { addr: addr.to_owned(), cause: e.to_string() };
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        stream.write_all(command.as_bytes()).await.map_err(io)?;
        stream.write_all(b"\n").await.map_err(io)?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.map_err(io)?;
            if n == 0 || reply.len() + n > MAX_REPLY {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&reply).into_owned())
    };
    tokio::time::timeout(COMMAND_TIMEOUT, exchange).await.map_err(|_| ChmpxError::Timeout(addr.to_owned()))?
}

/// Sends a command that answers `SUCCEED` on success.
pub async fn command_ok(addr: &str, cmd: &str) -> Result<(), ChmpxError> {
    let reply = command(addr, cmd).await?;
    if reply.trim_start().starts_with("SUCCEED") {
        Ok(())
    } else {
        Err(ChmpxError::Refused { command: cmd.to_owned(), reply: reply.trim().to_owned() })
    }
}

/// A node's ring status, as chmpx prints it:
/// `[SERVICE IN][UP][n/a][Nothing][NoSuspend]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// `SERVICE IN`, `SERVICE OUT` or `SLAVE`.
    pub ring: String,
    /// `UP` or `DOWN`.
    pub live: String,
    /// `n/a`, `ADD` or `DELETE`: a pending membership change.
    pub action: String,
    /// `Nothing`, `Doing`, `Pending`, `Done`: merge progress.
    pub merge: String,
    /// `Suspend` (no k2hdkc attached) or `NoSuspend`.
    pub suspend: String,
}

impl NodeStatus {
    /// Serving: in the ring, up, k2hdkc attached (the old system's health
    /// check: `[SERVICE IN][UP][n/a][Nothing][NoSuspend]`; a merge in
    /// progress still serves).
    pub fn is_serving(&self) -> bool {
        self.ring == "SERVICE IN" && self.live == "UP" && self.suspend == "NoSuspend"
    }

    /// A slave that is up.
    pub fn is_slave_up(&self) -> bool {
        self.ring == "SLAVE" && self.live == "UP"
    }
}

/// Parses one `[..][..][..][..][..]` group from a status line.
pub fn parse_status_line(line: &str) -> Option<NodeStatus> {
    let start = line.find('[')?;
    let parts: Vec<&str> = line[start..]
        .split(']')
        .filter_map(|p| p.trim().strip_prefix('['))
        .collect();
    if parts.len() < 5 {
        return None;
    }
    Some(NodeStatus {
        ring: parts[0].to_owned(),
        live: parts[1].to_owned(),
        action: parts[2].to_owned(),
        merge: parts[3].to_owned(),
        suspend: parts[4].to_owned(),
    })
}

/// The status in a `SELFSTATUS` reply.
pub fn parse_selfstatus(reply: &str) -> Result<NodeStatus, ChmpxError> {
    reply
        .lines()
        .filter(|l| l.contains("Status") && l.contains("->"))
        .find_map(parse_status_line)
        .ok_or(ChmpxError::NoStatus)
}

/// Asks chmpx at `addr` for its own status.
pub async fn self_status(addr: &str) -> Result<NodeStatus, ChmpxError> {
    parse_selfstatus(&command(addr, "SELFSTATUS").await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVING: &str = "chmpx self status\n  hostname  = 10.0.0.5\n  Server Status = 0x21(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])\n";

    #[test]
    fn parses_observed_states() {
        let s = parse_selfstatus(SERVING).unwrap();
        assert!(s.is_serving());
        let started = parse_selfstatus("  Server Status = 0x10011(SAFE -> [SERVICE OUT][UP][n/a][Nothing][Suspend])").unwrap();
        assert!(!started.is_serving());
        assert_eq!(started.ring, "SERVICE OUT");
        let no_k2hdkc = parse_selfstatus("Server Status = 0x10021(SAFE -> [SERVICE IN][UP][n/a][Nothing][Suspend])").unwrap();
        assert!(!no_k2hdkc.is_serving(), "k2hdkc not attached is not healthy");
        let merging = parse_selfstatus("Server Status = 0x..(SAFE -> [SERVICE IN][UP][ADD][Doing][NoSuspend])").unwrap();
        assert!(merging.is_serving());
        assert_eq!(merging.merge, "Doing");
        let slave = parse_selfstatus("Server Status = 0x1(SAFE -> [SLAVE][UP][n/a][Nothing][NoSuspend])").unwrap();
        assert!(slave.is_slave_up() && !slave.is_serving());
        assert_eq!(parse_selfstatus("Unknown command(X)"), Err(ChmpxError::NoStatus));
    }

    #[tokio::test]
    async fn talks_one_command_per_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap();
                let cmd = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
                let reply = if cmd == "SELFSTATUS" { SERVING.to_owned() } else { format!("Unknown command({cmd})") };
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        assert!(self_status(&addr).await.unwrap().is_serving());
        let err = command_ok(&addr, "BOGUS").await.unwrap_err();
        assert!(matches!(err, ChmpxError::Refused { .. }), "{err}");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_named_io_error() {
        let err = self_status("127.0.0.1:1").await.unwrap_err();
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    }
}
