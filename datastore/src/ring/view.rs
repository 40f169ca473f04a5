//! This node as the ring steps see it: its CUK, its control address, the
//! ini its chmpx runs with; and the commands every step sends to it.

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
}

/// Sends `command` to `addr` until chmpx takes it: a merging ring refuses
/// with "operating", a busy chmpx answers late.
pub async fn send_until(
    addr: &str,
    command: &str,
    deadline: Instant,
) -> Result<String, DatastoreError> {
    let mut last = String::new();
    while Instant::now() < deadline {
        match chmpx::command_within(addr, command, SLOW_ANSWER).await {
            Ok(r) if r.trim_start().starts_with(OPERATING) => last = r.trim().to_owned(),
            Ok(r) => return Ok(r.trim().to_owned()),
            Err(e) if e.is_busy() => last = e.to_string(),
            Err(e) => {
                return Err(DatastoreError::failed(
                    format!("send {command} to {addr}"),
                    e,
                ))
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

/// A stand-in chmpx control port for the ring steps' tests: answers each
/// connection's one command line with `answer(command)`. Returns its address.
#[cfg(test)]
pub(crate) async fn fake_control_port<F>(answer: F) -> String
where
    F: Fn(&str) -> String + Send + Sync + 'static,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut line = String::new();
            let _ = BufReader::new(r).read_line(&mut line).await;
            let _ = w.write_all(answer(line.trim()).as_bytes()).await;
        }
    });
    addr
}
