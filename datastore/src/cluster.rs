//! The ring steps Trove's k2hdkc cluster taskmanager asks a member for
//! (`packaging/trove/src/trove_k2hdkc/cluster/guestagent.py`): custom
//! guest methods, each a typed request with a bounded wait, each answering
//! a JSON object.
//!
//! | method                     | does                                               |
//! |----------------------------|----------------------------------------------------|
//! | `k2hdkc_ring_status`       | this node's CUK and ring name, `ALLSTATUS`, ini CUKs (`error` if no ring) |
//! | `k2hdkc_ring_converge`     | waits until the ini lists exactly the given CUKs, and chmpx sees them all UP |
//! | `k2hdkc_ring_service_in`   | `SERVICEIN` of this node, until the ring shows it  |
//! | `k2hdkc_ring_service_out`  | `SERVICEOUT` of a member, in the ini's grammar     |
//! | `k2hdkc_ring_reattach`     | restarts k2hdkc so chmpx marks this node pending   |
//! | `k2hdkc_ring_merge`        | merges the whole ring and waits ([`crate::merge`]) |
//!
//! The order that keeps every key (CONTRACTS.md §7) is the taskmanager's:
//! these steps do one thing each and say what they saw.

use std::time::{Duration, Instant};

use driver_api::DatastoreError;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::chmpx;
use crate::merge;
use crate::node::{Node, RingView};

/// How long converge waits for chmpx to drop servers the ini no longer
/// lists: the role watcher holds such a change back at most this long
/// (until chmpx sees the leaver down), and the reload then drops it.
const EXTRAS_WAIT: Duration = crate::watcher::DROP_HOLD;
/// The longest wait a caller may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The wait when the caller names none.
const DEFAULT_WAIT: Duration = Duration::from_secs(120);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(250);
/// How long one control command may take (a merging chmpx answers late).
pub(crate) const SLOW_ANSWER: Duration = Duration::from_secs(10);

const NOT_ALLOWED: &str = "ERROR: Could not change status, because status is not allowed.";
const OPERATING: &str = "ERROR: Could not change status, because server is operating now.";
const ALREADY_OUT: &str = "SUCCEED: Already server has been SERVICEOUT.";

/// Every method's bound: `timeout` in seconds.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Bound {
    timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Converge {
    cuks: Vec<String>,
    timeout: Option<u64>,
}

/// `k2hdkc_ring_merge`: `rearm_after` (seconds) is how long after a MERGE
/// that left a server stuck the next MERGE may go (`merge.rs`: chmpx's
/// lost-answer poll must have ended); default 120, at most the timeout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Merge {
    timeout: Option<u64>,
    rearm_after: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceOut {
    cuk: String,
    timeout: Option<u64>,
}

fn parse<T: for<'de> Deserialize<'de>>(
    method: &str,
    args: &Map<String, Value>,
) -> Result<T, DatastoreError> {
    serde_json::from_value(Value::Object(args.clone()))
        .map_err(|e| DatastoreError::BadRequest(format!("{method}: {e}")))
}

fn bound(timeout: Option<u64>) -> Result<Duration, DatastoreError> {
    let d = timeout.map(Duration::from_secs).unwrap_or(DEFAULT_WAIT);
    if d.is_zero() || d > MAX_WAIT {
        return Err(DatastoreError::BadRequest(format!(
            "timeout must be between 1 and {} seconds",
            MAX_WAIT.as_secs()
        )));
    }
    Ok(d)
}

/// Whether `name` is one of this module's methods.
pub fn is_ring_method(name: &str) -> bool {
    name.starts_with("k2hdkc_ring_")
}

/// Runs one ring step on `node`.
pub async fn handle(
    node: &Node,
    method: &str,
    args: &Map<String, Value>,
) -> Result<Value, DatastoreError> {
    if !node.is_member() && method != "k2hdkc_ring_status" {
        return Err(DatastoreError::Conflict(format!(
            "{method}: this instance was not prepared as a cluster member"
        )));
    }
    let started = Instant::now();
    let out = match method {
        "k2hdkc_ring_status" => {
            parse::<Bound>(method, args)?;
            status(node).await
        }
        "k2hdkc_ring_converge" => {
            let req: Converge = parse(method, args)?;
            converge(node, &req.cuks, bound(req.timeout)?).await
        }
        "k2hdkc_ring_service_in" => {
            let req: Bound = parse(method, args)?;
            service_in(&node.ring_view().await?, bound(req.timeout)?).await
        }
        "k2hdkc_ring_service_out" => {
            let req: ServiceOut = parse(method, args)?;
            service_out(&node.ring_view().await?, &req.cuk, bound(req.timeout)?).await
        }
        "k2hdkc_ring_reattach" => {
            let req: Bound = parse(method, args)?;
            reattach(node, bound(req.timeout)?).await
        }
        "k2hdkc_ring_merge" => {
            let req: Merge = parse(method, args)?;
            let within = bound(req.timeout)?;
            let mut bounds = merge::MergeBounds::within(within);
            if let Some(secs) = req.rearm_after {
                bounds.rearm_after = bound(Some(secs))?.min(within);
            }
            ring_merge(&node.ring_view().await?, bounds).await
        }
        other => return Err(DatastoreError::NoSuchMethod(other.to_owned())),
    };
    match &out {
        Ok(v) => {
            tracing::info!(method, seconds = started.elapsed().as_secs_f64(), result = %v, "ring step done")
        }
        Err(e) => {
            tracing::error!(method, seconds = started.elapsed().as_secs_f64(), error = %e, "ring step failed")
        }
    }
    out
}

fn ini_cuks(view: &RingView) -> Vec<String> {
    view.facts
        .servers
        .iter()
        .filter_map(|n| n.cuk.clone())
        .collect()
}

/// This node's CUK and ring. A node whose prepare failed has no ini or
/// no chmpx: it still answers with its CUK and the cause (`error`), so
/// that a shrink can remove a member that never joined the ring.
async fn status(node: &Node) -> Result<Value, DatastoreError> {
    let no_ring = |e: &dyn std::fmt::Display| json!({ "cuk": node.cuk(), "name": "", "ini_cuks": [], "servers": [], "error": e.to_string() });
    let view = match node.ring_view().await {
        Ok(v) => v,
        Err(e) => return Ok(no_ring(&e)),
    };
    let servers = match chmpx::all_status_within(&view.ctl, SLOW_ANSWER).await {
        Ok(s) => s,
        Err(e) => return Ok(no_ring(&format!("read ALLSTATUS: {e}"))),
    };
    let name = view
        .facts
        .servers
        .iter()
        .find(|n| n.cuk.as_deref() == Some(view.cuk.as_str()))
        .map(|n| n.name.clone())
        .unwrap_or_default();
    Ok(json!({
        "cuk": view.cuk,
        "name": name,
        "ini_cuks": ini_cuks(&view),
        "servers": servers.iter().map(|s| json!({
            "name": s.name, "cuk": s.cuk, "seed": s.custom_id_seed,
            "status": s.status.to_string(),
            "ring": s.status.ring, "live": s.status.live, "action": s.status.action,
            "merge": s.status.merge, "suspend": s.status.suspend,
            "enable_hash": s.hashes.0, "pending_hash": s.hashes.1,
        })).collect::<Vec<_>>(),
    }))
}

async fn converge(node: &Node, cuks: &[String], within: Duration) -> Result<Value, DatastoreError> {
    let mut want: Vec<String> = cuks.to_vec();
    want.sort();
    want.dedup();
    if want.is_empty() {
        return Err(DatastoreError::BadRequest(
            "k2hdkc_ring_converge: no CUK given".into(),
        ));
    }
    let deadline = Instant::now() + within;
    let view = loop {
        let view = node.ring_view().await?;
        let mut have = ini_cuks(&view);
        have.sort();
        if have == want {
            break view;
        }
        if Instant::now() >= deadline {
            return Err(DatastoreError::failed(
                "wait for k2hdkc.ini to list the cluster's members",
                format!("after {within:?} it lists {have:?}, not {want:?} (K2HR3 registrations not visible yet?)"),
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    // Then until this chmpx has reached every one of them: a SERVICEIN
    // sent before that finds "no server on RING", and each node would
    // form a ring of its own (seen on the real chmpx). And, for a while,
    // until it dropped the servers the ini no longer lists: chmpx drops
    // only those that are SERVICE OUT and DOWN when it reloads the ini
    // (chmpxman UpdateChmpxSvrs), and keeps one that was still UP then.
    let mut last;
    let extras_until = Instant::now() + EXTRAS_WAIT.min(within);
    loop {
        match chmpx::all_status_within(&view.ctl, SLOW_ANSWER).await {
            Ok(servers) => {
                let down: Vec<&str> = want
                    .iter()
                    .filter(|c| {
                        !servers
                            .iter()
                            .any(|s| s.cuk == **c && s.status.live == "UP")
                    })
                    .map(String::as_str)
                    .collect();
                let extras: Vec<String> = servers
                    .iter()
                    .filter(|s| !want.contains(&s.cuk))
                    .map(|s| format!("{} {}", s.name, s.status))
                    .collect();
                if down.is_empty() && (extras.is_empty() || Instant::now() >= extras_until) {
                    if !extras.is_empty() {
                        tracing::warn!(kept = ?extras, "chmpx still lists servers its ini no longer has (it kept them at the reload)");
                    }
                    return Ok(
                        json!({ "cuks": want, "ring": merge::describe(&servers), "stale": extras }),
                    );
                }
                last = format!("not UP yet: {down:?}; ring: {}", merge::describe(&servers));
            }
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(DatastoreError::failed(
                "wait for chmpx to reach every member",
                format!("after {within:?}: {last}"),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends `command` to `addr` until chmpx takes it: a merging ring refuses
/// with "operating", a busy chmpx answers late.
async fn send_until(
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

/// This node's status; a late answer is asked again until `deadline`
/// (a merging chmpx answers its control port seconds late).
pub(crate) async fn self_status(
    view: &RingView,
    deadline: Instant,
) -> Result<chmpx::NodeStatus, DatastoreError> {
    loop {
        match chmpx::command_within(&view.ctl, "SELFSTATUS", SLOW_ANSWER)
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

async fn service_in(view: &RingView, within: Duration) -> Result<Value, DatastoreError> {
    let deadline = Instant::now() + within;
    let st = self_status(view, deadline).await?;
    if st.ring == "SERVICE IN" {
        return Ok(json!({ "status": st.to_string(), "reply": "already in the ring" }));
    }
    let reply = send_until(&view.ctl, "SERVICEIN", deadline).await?;
    if !reply.starts_with("SUCCEED") && !reply.starts_with(NOT_ALLOWED) {
        return Err(DatastoreError::failed("SERVICEIN", reply));
    }
    loop {
        let st = self_status(view, deadline).await?;
        if st.ring == "SERVICE IN" {
            return Ok(json!({ "status": st.to_string(), "reply": reply }));
        }
        if Instant::now() >= deadline {
            return Err(DatastoreError::failed(
                "SERVICEIN",
                format!("`{reply}`, but still {st} after {within:?}"),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn service_out(
    view: &RingView,
    cuk: &str,
    within: Duration,
) -> Result<Value, DatastoreError> {
    let deadline = Instant::now() + within;
    let node = view
        .facts
        .servers
        .iter()
        .find(|n| n.cuk.as_deref() == Some(cuk))
        .ok_or_else(|| {
            DatastoreError::BadRequest(format!(
                "k2hdkc_ring_service_out: no server with CUK {cuk} in this node's k2hdkc.ini"
            ))
        })?;
    let ctlport = node.ctlport.or(view.facts.ctlport).unwrap_or(view.ctlport);
    let arg = chmpx::serviceout_argument(view.facts.id_type, node, ctlport)
        .map_err(|e| DatastoreError::failed("build SERVICEOUT", e))?;
    let command = format!("SERVICEOUT {arg}");
    let reply = send_until(&view.ctl, &command, deadline).await?;
    let took = reply.starts_with("SUCCEED") || reply.starts_with(ALREADY_OUT);
    // Refused as "not allowed": fine when it is already on its way out.
    if !took && !reply.starts_with(NOT_ALLOWED) {
        return Err(DatastoreError::failed(format!("`{command}`"), reply));
    }
    loop {
        let servers = chmpx::all_status_within(&view.ctl, SLOW_ANSWER)
            .await
            .unwrap_or_default();
        let it = servers
            .iter()
            .find(|s| s.is(view.facts.id_type, node, ctlport));
        if let Some(s) = it {
            if s.status.ring == "SERVICE OUT" || s.status.action == "DELETE" {
                return Ok(
                    json!({ "command": command, "reply": reply, "status": s.status.to_string() }),
                );
            }
        }
        if Instant::now() >= deadline {
            let seen = it
                .map(|s| s.status.to_string())
                .unwrap_or_else(|| "not listed".into());
            return Err(DatastoreError::failed(
                format!("`{command}`"),
                format!("`{reply}`, but the ring shows it {seen} after {within:?}"),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn reattach(node: &Node, within: Duration) -> Result<Value, DatastoreError> {
    let deadline = Instant::now() + within;
    node.reattach().await?;
    let view = node.ring_view().await?;
    loop {
        match self_status(&view, deadline).await {
            Ok(st) if st.live == "UP" && st.suspend == "NoSuspend" => {
                return Ok(json!({ "status": st.to_string() }))
            }
            Ok(st) if Instant::now() >= deadline => {
                return Err(DatastoreError::failed(
                    "restart k2hdkc",
                    format!("not attached again after {within:?}: {st}"),
                ))
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

async fn ring_merge(view: &RingView, bounds: merge::MergeBounds) -> Result<Value, DatastoreError> {
    let report = merge_the_ring(view, &view.ctl, bounds).await?;
    serde_json::to_value(report).map_err(|e| DatastoreError::failed("report the merge", e))
}

/// Merges the ring `view` belongs to ([`merge::merge_ring`]) from
/// `coordinator` (a control address), with the ini's members as where
/// commands go.
pub(crate) async fn merge_the_ring(
    view: &RingView,
    coordinator: &str,
    bounds: merge::MergeBounds,
) -> Result<merge::MergeReport, DatastoreError> {
    let members = member_addresses(view);
    let facts = &view.facts;
    let serviceout = |s: &chmpx::ServerStatus| {
        facts.servers.iter().find_map(|n| {
            let ctlport = n.ctlport.or(facts.ctlport).unwrap_or(view.ctlport);
            if !s.is(facts.id_type, n, ctlport) {
                return None;
            }
            chmpx::serviceout_argument(facts.id_type, n, ctlport)
                .ok()
                .map(|arg| format!("SERVICEOUT {arg}"))
        })
    };
    merge::merge_ring(coordinator, &members, view.ctlport, &serviceout, bounds)
        .await
        .map_err(|e| DatastoreError::failed("merge the ring", e))
}

/// The ini's servers as (CUK, control address), this node's own address
/// for itself.
pub(crate) fn member_addresses(view: &RingView) -> Vec<(String, String)> {
    view.facts
        .servers
        .iter()
        .map(|n| {
            let cuk = n.cuk.clone().unwrap_or_default();
            let addr = if cuk == view.cuk {
                view.ctl.clone()
            } else {
                format!(
                    "{}:{}",
                    n.name,
                    n.ctlport.or(view.facts.ctlport).unwrap_or(view.ctlport)
                )
            };
            (cuk, addr)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_typed_and_bounded() {
        let args = |v: Value| v.as_object().unwrap().clone();
        assert!(parse::<Converge>("m", &args(json!({"cuks": ["a"], "timeout": 5}))).is_ok());
        let e = parse::<Converge>("m", &args(json!({"cuks": "a"}))).unwrap_err();
        assert!(e.to_string().contains("m: invalid type"), "{e}");
        assert!(
            parse::<Bound>("m", &args(json!({"timeout": 5, "extra": 1}))).is_err(),
            "unknown fields refused"
        );
        assert!(parse::<Merge>("m", &args(json!({"timeout": 600, "rearm_after": 25}))).is_ok());
        assert!(bound(Some(0)).is_err());
        assert!(bound(Some(7200)).is_err());
        assert_eq!(bound(None).unwrap(), DEFAULT_WAIT);
        assert!(is_ring_method("k2hdkc_ring_merge") && !is_ring_method("prepare"));
    }
}
