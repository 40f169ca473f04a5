//! Joining: the ring steps that bring a member into the ring (CONTRACTS.md
//! §7): its ini and chmpx reaching every member (converge), `SERVICEIN`,
//! and k2hdkc attached again after a restart (reattach).

use std::future::Future;
use std::time::{Duration, Instant};

use driver_api::DatastoreError;
use serde_json::{json, Value};

use super::merge;
use super::view::{send_until, RingView, POLL, SLOW_ANSWER};
use crate::chmpx;

/// How long converge waits for chmpx to drop servers the ini no longer
/// lists: the role watcher holds such a change back at most this long
/// (until chmpx sees the leaver down), and the reload then drops it.
const EXTRAS_WAIT: Duration = crate::watcher::DROP_HOLD;

const NOT_ALLOWED: &str = "ERROR: Could not change status, because status is not allowed.";

/// `k2hdkc_ring_converge`: waits until the ini (`read_view`, read again
/// each round) lists exactly `cuks`, then until this chmpx has reached
/// every one of them.
pub async fn converge<F, Fut>(
    read_view: F,
    cuks: &[String],
    within: Duration,
) -> Result<Value, DatastoreError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<RingView, DatastoreError>>,
{
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
        let view = read_view().await?;
        let mut have = view.ini_cuks();
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

/// `k2hdkc_ring_service_in`: `SERVICEIN` of this node, until the ring
/// shows it in.
pub async fn service_in(view: &RingView, within: Duration) -> Result<Value, DatastoreError> {
    let deadline = Instant::now() + within;
    let st = view.self_status(deadline).await?;
    if st.ring == "SERVICE IN" {
        return Ok(json!({ "status": st.to_string(), "reply": "already in the ring" }));
    }
    let reply = send_until(&view.ctl, "SERVICEIN", deadline).await?;
    if !reply.starts_with("SUCCEED") && !reply.starts_with(NOT_ALLOWED) {
        return Err(DatastoreError::failed("SERVICEIN", reply));
    }
    loop {
        let st = view.self_status(deadline).await?;
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

/// After `k2hdkc_ring_reattach` restarted k2hdkc: waits until it is
/// attached to chmpx again (`NoSuspend`).
pub async fn wait_attached_again(
    view: &RingView,
    within: Duration,
) -> Result<Value, DatastoreError> {
    let deadline = Instant::now() + within;
    loop {
        match view.self_status(deadline).await {
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
