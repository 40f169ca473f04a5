//! This node as the ring steps see it: its CUK, its control address, the
//! ini its chmpx runs with; and the commands every step sends to it.

use std::future::Future;
use std::time::{Duration, Instant};

use driver_api::DatastoreError;
use serde_json::{json, Value};

use crate::chmpx;
use crate::ini::IniFacts;

/// How often a wait looks again.
pub(crate) const POLL: Duration = Duration::from_millis(250);
/// How long one control command may take (a merging chmpx answers late).
pub const SLOW_ANSWER: Duration = Duration::from_secs(10);
/// chmpx's reply while a server of the ring is merging: try again.
const OPERATING: &str = "ERROR: Could not change status, because server is operating now.";

/// This node as the cluster's ring steps see it.
#[derive(Debug, Clone)]
pub struct RingView {
    /// This node's CUK (its `[SVRNODE]` in the ini).
    pub cuk: String,
    /// This node's control address.
    pub ctl: String,
    /// The server control port the parameters give.
    pub ctlport: u16,
    /// The ini chmpx runs with.
    pub facts: IniFacts,
}

impl RingView {
    /// The CUKs of the ini's servers.
    pub fn ini_cuks(&self) -> Vec<String> {
        self.facts
            .servers
            .iter()
            .filter_map(|n| n.cuk.clone())
            .collect()
    }

    /// The ini's servers as (CUK, control address), this node's own address
    /// for itself.
    pub fn member_addresses(&self) -> Vec<(String, String)> {
        self.facts
            .servers
            .iter()
            .map(|n| {
                let cuk = n.cuk.clone().unwrap_or_default();
                let addr = if cuk == self.cuk {
                    self.ctl.clone()
                } else {
                    self.facts.ctl_addr_of(n, self.ctlport)
                };
                (cuk, addr)
            })
            .collect()
    }

    /// This node's status; a late answer is asked again until `deadline`
    /// (a merging chmpx answers its control port seconds late).
    pub async fn self_status(
        &self,
        deadline: Instant,
    ) -> Result<chmpx::NodeStatus, DatastoreError> {
        loop {
            match chmpx::command_within(&self.ctl, "SELFSTATUS", SLOW_ANSWER)
                .await
                .and_then(|r| chmpx::parse_selfstatus(&r))
            {
                Ok(st) => return Ok(st),
                Err(e) if e.is_busy() && Instant::now() < deadline => {
                    tracing::info!(error = %e, "chmpx answers late; asking again");
                }
                Err(e) => return Err(DatastoreError::failed("read SELFSTATUS", e)),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// This node's chmpx's `ALLSTATUS`, asked again while chmpx answers
    /// late or drops the connection, until `deadline`. A chmpx just
    /// started reset the first control connections after k2hdkc attached
    /// (CI, a member upgraded to a new release), and a rejoin that read it
    /// once failed the upgrade.
    pub async fn all_status(
        &self,
        deadline: Instant,
    ) -> Result<Vec<chmpx::ServerStatus>, DatastoreError> {
        loop {
            match chmpx::all_status_within(&self.ctl, SLOW_ANSWER).await {
                Ok(s) if !s.is_empty() => return Ok(s),
                Ok(_) if Instant::now() < deadline => {
                    tracing::info!("chmpx lists no server yet; asking again");
                }
                Ok(_) => {
                    return Err(DatastoreError::failed(
                        "read ALLSTATUS",
                        "chmpx lists no server",
                    ))
                }
                Err(e) if e.is_busy() && Instant::now() < deadline => {
                    tracing::info!(error = %e, "chmpx answers late; asking again");
                }
                Err(e) => return Err(DatastoreError::failed("read ALLSTATUS", e)),
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// What became of a command sent by [`send_checked`].
#[derive(Debug, PartialEq)]
pub enum Sent {
    /// chmpx's answer (a refusal included: the caller judges it).
    Answered(String),
    /// The answer was lost or late, and the state the command changes
    /// showed it taken: what was seen.
    Taken(String),
}

/// Sends `command` to `addr` until chmpx answers it: a merging ring
/// refuses with "operating" (sent again). An answer lost or late is no
/// verdict (the real chmpx 1.0.111 once left a node out for a whole
/// minute after `no reply within 3s`): `taken` then reads the state the
/// command changes, and the command is sent again only when that state
/// says it did not take (`None`); `Some(seen)` ends with [`Sent::Taken`].
pub async fn send_checked<T, TFut>(
    addr: &str,
    command: &str,
    deadline: Instant,
    taken: T,
) -> Result<Sent, DatastoreError>
where
    T: Fn() -> TFut,
    TFut: Future<Output = Result<Option<String>, chmpx::ChmpxError>>,
{
    let mut last = String::new();
    let mut look_first = false;
    while Instant::now() < deadline {
        if look_first {
            match taken().await {
                Ok(Some(seen)) => {
                    tracing::info!(command, status = %seen, "the answer was lost; the status shows the command taken");
                    return Ok(Sent::Taken(seen));
                }
                Ok(None) => {
                    tracing::warn!(command, last = %last, "the answer was lost and the status shows the command did not take: sending it again");
                    look_first = false;
                    continue;
                }
                Err(e) if e.is_busy() => last = format!("{last}; status: {e}"),
                Err(e) => {
                    return Err(DatastoreError::failed(
                        format!("read the status after {command} to {addr}"),
                        e,
                    ))
                }
            }
        } else {
            match chmpx::command_within(addr, command, SLOW_ANSWER).await {
                Ok(r) if r.trim_start().starts_with(OPERATING) => last = r.trim().to_owned(),
                Ok(r) => return Ok(Sent::Answered(r.trim().to_owned())),
                Err(e) if e.is_busy() => {
                    last = e.to_string();
                    look_first = true;
                }
                Err(e) => {
                    return Err(DatastoreError::failed(
                        format!("send {command} to {addr}"),
                        e,
                    ))
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Err(DatastoreError::failed(
        format!("send {command} to {addr}"),
        format!("not taken in time; last: {last}"),
    ))
}

/// `k2hdkc_ring_status`: this node's CUK and ring. A node whose prepare
/// failed has no ini or no chmpx (`view` is the error): it still answers
/// with its CUK and the cause (`error`), so that a shrink can remove a
/// member that never joined the ring.
pub async fn status_report(cuk: &str, view: Result<RingView, DatastoreError>) -> Value {
    let no_ring = |e: &dyn std::fmt::Display| json!({ "cuk": cuk, "name": "", "ini_cuks": [], "servers": [], "error": e.to_string() });
    let view = match view {
        Ok(v) => v,
        Err(e) => return no_ring(&e),
    };
    let servers = match chmpx::all_status_within(&view.ctl, SLOW_ANSWER).await {
        Ok(s) => s,
        Err(e) => return no_ring(&format!("read ALLSTATUS: {e}")),
    };
    let name = view
        .facts
        .servers
        .iter()
        .find(|n| n.cuk.as_deref() == Some(view.cuk.as_str()))
        .map(|n| n.name.clone())
        .unwrap_or_default();
    json!({
        "cuk": view.cuk,
        "name": name,
        "ini_cuks": view.ini_cuks(),
        "servers": servers.iter().map(|s| json!({
            "name": s.name, "cuk": s.cuk, "seed": s.custom_id_seed,
            "status": s.status.to_string(),
            "ring": s.status.ring, "live": s.status.live, "action": s.status.action,
            "merge": s.status.merge, "suspend": s.status.suspend,
            "enable_hash": s.hashes.0, "pending_hash": s.hashes.1,
        })).collect::<Vec<_>>(),
    })
}
