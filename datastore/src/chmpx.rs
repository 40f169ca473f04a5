//! The chmpx control port: one command per TCP connection, chmpx replies
//! and closes (yahoojapan/chmpx `chmpxctrl*`; CONTRACTS.md §6). Every call
//! is bounded.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ini::{IdType, NodeEntry};

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
    /// No full reply within the bound.
    #[error("chmpx control port {0}: no reply within {1:?}")]
    Timeout(String, Duration),
    /// Connected, then the connection broke before the reply (chmpx
    /// restarting, or closing a control socket under load): a live
    /// server, busy.
    #[error("chmpx control port {addr}: connection dropped before the reply: {cause}")]
    Dropped {
        /// `host:port`.
        addr: String,
        /// Why.
        cause: String,
    },
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

impl ChmpxError {
    /// A live server that did not answer this time (late, or it dropped
    /// the connection): ask again, within the caller's bound.
    pub fn is_busy(&self) -> bool {
        matches!(self, ChmpxError::Timeout(..) | ChmpxError::Dropped { .. })
    }
}

/// Sends `command` to the control port at `addr` and returns the reply.
pub async fn command(addr: &str, command: &str) -> Result<String, ChmpxError> {
    command_within(addr, command, COMMAND_TIMEOUT).await
}

/// The commands that only ask: sent again at once when chmpx drops them.
const QUESTIONS: [&str; 2] = ["SELFSTATUS", "ALLSTATUS"];

/// [`command`] with another bound: during a merge the real chmpx answers
/// its control port seconds late (3.9-5 s seen on a 2-node ring).
///
/// A question ([`QUESTIONS`]) dropped before its reply is asked once
/// more within the same bound: chmpx 1.0.111 can close a control
/// connection that closely follows another under a thread still busy
/// with the old one (`AcceptCtlport ... errno=9`, every merge in the
/// box), and a health check or a restart failed on one such drop in CI.
/// A command that changes the ring is never sent twice here: its caller
/// reads the status first (`ring::view::send_checked`).
pub async fn command_within(
    addr: &str,
    command: &str,
    within: Duration,
) -> Result<String, ChmpxError> {
    let question = QUESTIONS.contains(&command);
    let both = async {
        match exchange(addr, command).await {
            Err(ChmpxError::Dropped { .. }) if question => exchange(addr, command).await,
            other => other,
        }
    };
    tokio::time::timeout(within, both)
        .await
        .map_err(|_| ChmpxError::Timeout(addr.to_owned(), within))?
}

/// One command on one connection, unbounded (the caller bounds it).
async fn exchange(addr: &str, command: &str) -> Result<String, ChmpxError> {
    let io = |e: std::io::Error| ChmpxError::Io {
        addr: addr.to_owned(),
        cause: e.to_string(),
    };
    let dropped = |e: std::io::Error| ChmpxError::Dropped {
        addr: addr.to_owned(),
        cause: e.to_string(),
    };
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    // One write, sent at once: chmpx takes its first recv as the whole
    // command and closes, so a newline sent apart came after the close
    // and reset the connection (the reply was lost).
    stream.set_nodelay(true).map_err(io)?;
    let line = format!("{command}\n");
    stream.write_all(line.as_bytes()).await.map_err(dropped)?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.map_err(dropped)?;
        if n == 0 || reply.len() + n > MAX_REPLY {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    // chmpx answers every command; a close with nothing said is an
    // answer lost, not an empty one.
    if reply.is_empty() {
        return Err(ChmpxError::Dropped {
            addr: addr.to_owned(),
            cause: "closed without a reply".into(),
        });
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Sends a command that answers `SUCCEED` on success.
pub async fn command_ok(addr: &str, cmd: &str) -> Result<(), ChmpxError> {
    let reply = command(addr, cmd).await?;
    if reply.trim_start().starts_with("SUCCEED") {
        Ok(())
    } else {
        Err(ChmpxError::Refused {
            command: cmd.to_owned(),
            reply: reply.trim().to_owned(),
        })
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

impl std::fmt::Display for NodeStatus {
    /// As chmpx prints it: `[SERVICE IN][UP][n/a][Nothing][NoSuspend]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}][{}][{}][{}][{}]",
            self.ring, self.live, self.action, self.merge, self.suspend
        )
    }
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

/// The argument `SERVICEOUT` needs for server `node` of an ini whose
/// `CHMPXIDTYPE` is `id_type`: chmpx identifies the node by the id it
/// derives (lib/chmhash.cc `MakeBaseSeed`) and refuses any other shape
/// (lib/chmeventsock.cc, `CTL_COMMAND_SERVICE_OUT`): NAME `name:ctlport`,
/// CUK `name:ctlport:cuk`, CTLENDPOINTS `name:ctlport:endpoints`, CUSTOM
/// `name:ctlport:seed`. The name also routes the command when the node is
/// another live server. `ctlport` is the node's resolved control port.
pub fn serviceout_argument(
    id_type: Option<IdType>,
    node: &NodeEntry,
    ctlport: u16,
) -> Result<String, IdError> {
    if node.name.is_empty() {
        return Err(IdError::NoName);
    }
    let base = format!("{}:{ctlport}", node.name);
    let third = |what: &'static str, value: &Option<String>| {
        value
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| format!("{base}:{v}"))
            .ok_or_else(|| IdError::Missing {
                what,
                node: node.name.clone(),
            })
    };
    match id_type {
        Some(IdType::Name) => Ok(base),
        Some(IdType::Cuk) => third("CUK", &node.cuk),
        Some(IdType::CtlEndpoints) => third("CTLENDPOINTS", &node.ctlendpoints),
        Some(IdType::Custom) => third("CUSTOM_ID_SEED", &node.custom_id_seed),
        None => Err(IdError::UnknownType),
    }
}

/// Why a server's chmpx id cannot be written for a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A `[SVRNODE]` without NAME.
    #[error("the node's [SVRNODE] entry has no NAME")]
    NoName,
    /// The part the id type needs is not in the entry.
    #[error("the ini's CHMPXIDTYPE needs {what} in the node's [SVRNODE] entry ({node}), and it has none")]
    Missing {
        /// CUK, CTLENDPOINTS or CUSTOM_ID_SEED.
        what: &'static str,
        /// The entry's NAME.
        node: String,
    },
    /// A `CHMPXIDTYPE` chmpx does not know.
    #[error(
        "the ini's [GLOBAL] CHMPXIDTYPE is not one chmpx knows (NAME, CUK, CTLENDPOINTS, CUSTOM)"
    )]
    UnknownType,
}

/// One server of an `ALLSTATUS` reply (chmpx `CtlComAllServerStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// `Server Name` (as chmpx normalised it).
    pub name: String,
    /// `Control Port`.
    pub ctlport: Option<u16>,
    /// `CUK`.
    pub cuk: String,
    /// `Custom ID Seed`.
    pub custom_id_seed: String,
    /// `Server Status`.
    pub status: NodeStatus,
    /// `Enable Hash Value` and `Pending Hash Value`: a merge is over when
    /// they agree on every server.
    pub hashes: (String, String),
}

impl ServerStatus {
    /// Whether this entry is `node` of the ini, compared as chmpx
    /// identifies nodes under `id_type`.
    pub fn is(&self, id_type: Option<IdType>, node: &NodeEntry, ctlport: u16) -> bool {
        match id_type {
            Some(IdType::Custom) => {
                node.custom_id_seed.as_deref() == Some(self.custom_id_seed.as_str())
            }
            Some(IdType::Cuk) => node.cuk.as_deref() == Some(self.cuk.as_str()),
            _ => self.name == node.name && self.ctlport == Some(ctlport),
        }
    }
}

/// Parses an `ALLSTATUS` reply: one entry per `No.N` block.
pub fn parse_allstatus(reply: &str) -> Result<Vec<ServerStatus>, ChmpxError> {
    let mut out = Vec::new();
    let mut current: Option<Vec<(String, String)>> = None;
    let finish =
        |block: Vec<(String, String)>, out: &mut Vec<ServerStatus>| -> Result<(), ChmpxError> {
            let get = |k: &str| {
                block
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let status = parse_status_line(&get("Server Status")).ok_or(ChmpxError::NoStatus)?;
            out.push(ServerStatus {
                name: get("Server Name"),
                ctlport: get("Control Port").parse().ok(),
                cuk: get("CUK"),
                custom_id_seed: get("Custom ID Seed"),
                status,
                hashes: (get("Enable Hash Value"), get("Pending Hash Value")),
            });
            Ok(())
        };
    for line in reply.lines() {
        let t = line.trim();
        if t.starts_with("No.") && t[3..].chars().all(|c| c.is_ascii_digit()) && t.len() > 3 {
            if let Some(block) = current.take() {
                finish(block, &mut out)?;
            }
            current = Some(Vec::new());
        } else if let (Some(block), Some((k, v))) = (current.as_mut(), t.split_once('=')) {
            block.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    if let Some(block) = current.take() {
        finish(block, &mut out)?;
    }
    if out.is_empty() && !reply.contains("RING Name") {
        return Err(ChmpxError::Refused {
            command: "ALLSTATUS".into(),
            reply: reply.trim().to_owned(),
        });
    }
    Ok(out)
}

/// Asks chmpx at `addr` for every server's status as it knows them.
pub async fn all_status(addr: &str) -> Result<Vec<ServerStatus>, ChmpxError> {
    all_status_within(addr, COMMAND_TIMEOUT).await
}

/// [`all_status`] with another bound.
pub async fn all_status_within(
    addr: &str,
    within: Duration,
) -> Result<Vec<ServerStatus>, ChmpxError> {
    parse_allstatus(&command_within(addr, "ALLSTATUS", within).await?)
}

/// Asks chmpx at `addr` for its own status.
pub async fn self_status(addr: &str) -> Result<NodeStatus, ChmpxError> {
    parse_selfstatus(&command(addr, "SELFSTATUS").await?)
}

#[cfg(test)]
mod tests;
