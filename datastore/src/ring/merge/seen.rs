//! What a merge reads of `ALLSTATUS`: the phase the ring is in, where
//! each server takes commands, the servers that keep chmpx from starting
//! a merge, and the reader that tells a busy ring from a dead one.

use super::SLOW_ANSWER;
use crate::chmpx::{self, ServerStatus};

/// Where a server of `ALLSTATUS` takes commands: the address the ini
/// gives for its CUK (chmpx shows peers under their reverse-DNS names,
/// which the agent may not resolve), else its name.
pub(super) fn control_addr(
    s: &ServerStatus,
    members: &[(String, String)],
    default_ctlport: u16,
) -> String {
    members
        .iter()
        .find(|(cuk, _)| !cuk.is_empty() && *cuk == s.cuk)
        .map(|(_, addr)| addr.clone())
        .unwrap_or_else(|| format!("{}:{}", s.name, s.ctlport.unwrap_or(default_ctlport)))
}

/// One line per server: name, status, hashes.
pub fn describe(servers: &[ServerStatus]) -> String {
    servers
        .iter()
        .map(|s| format!("{} {} hash {}/{}", s.name, s.status, s.hashes.0, s.hashes.1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the ring asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Nothing pending, no merge running, hashes agree.
    Settled,
    /// Some server is pending and none is merging: start the merge.
    Start,
    /// Some server is merging.
    Merging,
    /// Every server that merged is done: complete it.
    Complete,
}

pub(super) fn phase(servers: &[ServerStatus]) -> Phase {
    let has = |m: &str| servers.iter().any(|s| s.status.merge == m);
    // Done before Pending: servers that merged are completed first, a
    // server the merge did not start (it missed the spread) gets its own
    // MERGE after that; a ring with both is refused a new MERGE.
    if has("Doing") {
        Phase::Merging
    } else if has("Done") {
        Phase::Complete
    } else if has("Pending") {
        Phase::Start
    } else if servers.iter().all(|s| s.hashes.0 == s.hashes.1) {
        Phase::Settled
    } else {
        // Hashes still differ with no status asking for anything: the
        // status notices are on their way.
        Phase::Merging
    }
}

/// A server as `ALLSTATUS` names it: name, custom ID seed, CUK.
pub(super) fn key(s: &ServerStatus) -> (String, String, String) {
    (s.name.clone(), s.custom_id_seed.clone(), s.cuk.clone())
}

/// Whether two `ALLSTATUS` entries, read from different servers, are the
/// same server: a server names itself as its ini does and its peers by
/// their reverse-DNS names, so by CUK, else custom ID seed, else name.
pub(super) fn same_server(a: &ServerStatus, b: &ServerStatus) -> bool {
    if !a.cuk.is_empty() && !b.cuk.is_empty() {
        a.cuk == b.cuk
    } else if !a.custom_id_seed.is_empty() && !b.custom_id_seed.is_empty() {
        a.custom_id_seed == b.custom_id_seed
    } else {
        a.name == b.name
    }
}

pub(super) enum ReadError {
    /// Some server answered late: the ring is busy.
    Busy(String),
    /// Nothing listens.
    None(String),
}

/// `ALLSTATUS` from the first reader that answers in time.
pub(super) async fn read_ring(readers: &[String]) -> Result<Vec<ServerStatus>, ReadError> {
    let mut late = Vec::new();
    let mut refused = Vec::new();
    for addr in readers {
        match chmpx::all_status_within(addr, SLOW_ANSWER).await {
            Ok(s) if !s.is_empty() => return Ok(s),
            Ok(_) => late.push(format!("{addr}: empty ALLSTATUS")),
            Err(e) if e.is_busy() => late.push(e.to_string()),
            Err(e) => refused.push(e.to_string()),
        }
    }
    if late.is_empty() {
        Err(ReadError::None(refused.join("; ")))
    } else {
        Err(ReadError::Busy(late.join("; ")))
    }
}

/// The servers for which chmpx refuses any `MERGE` (chmpx 1.0.111
/// `ChmEventSock::CheckAllStatusForMergeStart`): in service and up with
/// no k2hdkc attached (`[Suspend]`), or in service, down and with no
/// change pending. Each with why, for the error that ends a merge.
pub(super) fn blocking_merge(servers: &[ServerStatus]) -> Vec<String> {
    servers
        .iter()
        .filter(|s| s.status.ring == "SERVICE IN")
        .filter_map(|s| {
            let st = &s.status;
            if st.live == "UP" && st.suspend == "Suspend" {
                Some(format!(
                    "{} shows {} (its k2hdkc is not attached to its chmpx)",
                    s.name, st
                ))
            } else if st.live == "DOWN" && st.action == "n/a" {
                Some(format!("{} shows {} (down, still in service)", s.name, st))
            } else {
                None
            }
        })
        .collect()
}
