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

/// How long a member may stay DOWN in this chmpx's view before a node not
/// yet in the ring restarts its chmpx. Two chmpx started within
/// milliseconds of each other (a cluster's members) can miss each other's
/// handshake: one then shows the other `[SERVICE OUT][DOWN]` for good
/// while the other shows it UP (seen on the real chmpx 1.0.111 in the box,
/// 1 cluster create of 4); a chmpx started again connects to every
/// server it lists, and the peer is UP at once.
const PEER_DOWN_RESTART_AFTER: Duration = Duration::from_secs(20);

/// `k2hdkc_ring_converge`: waits until the ini (`read_view`, read again
/// each round) lists exactly `cuks`, then until this chmpx has reached
/// every one of them; a node not yet in the ring whose chmpx keeps a
/// member DOWN is started again once (`restart`).
pub async fn converge<F, Fut, R, RFut>(
    read_view: F,
    restart: R,
    cuks: &[String],
    within: Duration,
) -> Result<Value, DatastoreError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<RingView, DatastoreError>>,
    R: Fn() -> RFut,
    RFut: Future<Output = Result<(), DatastoreError>>,
{
    converge_with(read_view, restart, cuks, within, PEER_DOWN_RESTART_AFTER).await
}

async fn converge_with<F, Fut, R, RFut>(
    read_view: F,
    restart: R,
    cuks: &[String],
    within: Duration,
    restart_after: Duration,
) -> Result<Value, DatastoreError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<RingView, DatastoreError>>,
    R: Fn() -> RFut,
    RFut: Future<Output = Result<(), DatastoreError>>,
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
    let mut watch = PeerWatch {
        down_since: None,
        restarted: false,
        restart_after,
    };
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
                watch
                    .after(&view, &servers, &down, deadline, &restart)
                    .await;
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

/// Restarts a node's chmpx, once, when it keeps a member DOWN while the
/// node is not in the ring yet (see [`PEER_DOWN_RESTART_AFTER`]).
struct PeerWatch {
    down_since: Option<Instant>,
    restarted: bool,
    restart_after: Duration,
}

impl PeerWatch {
    async fn after<R, RFut>(
        &mut self,
        view: &RingView,
        servers: &[chmpx::ServerStatus],
        down: &[&str],
        deadline: Instant,
        restart: &R,
    ) where
        R: Fn() -> RFut,
        RFut: Future<Output = Result<(), DatastoreError>>,
    {
        if down.is_empty() {
            self.down_since = None;
            return;
        }
        let since = *self.down_since.get_or_insert_with(Instant::now);
        let out_of_ring = servers
            .iter()
            .any(|s| s.cuk == view.cuk && s.status.ring == "SERVICE OUT");
        let left = deadline.saturating_duration_since(Instant::now());
        if self.restarted
            || !out_of_ring
            || since.elapsed() < self.restart_after
            || left < self.restart_after
        {
            return;
        }
        self.restarted = true;
        self.down_since = None;
        tracing::warn!(ring = %merge::describe(servers), down = ?down, "chmpx keeps a member DOWN: starting it again (this node is not in the ring yet)");
        match tokio::time::timeout(left, restart()).await {
            Ok(Ok(())) => tracing::info!("chmpx started again"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not start chmpx again"),
            Err(_) => tracing::warn!("chmpx not started again within the step's bound"),
        }
    }
}

/// How long SERVICEIN waits on a node its own chmpx shows `Suspend` (no
/// k2hdkc attached) before k2hdkc is restarted to attach again. chmpx
/// 1.0.111 refuses SERVICEIN from a suspended node, and nothing in it
/// clears a `Suspend` that a peer's stale copy of this node wrote over
/// the real flag (peers' copies win within the same second; seen in CI,
/// a cluster member stuck for the step's 120 s):
/// `packaging/k2hdkc-image/patches/chmpx-1.0.111/0002`.
const SUSPEND_REATTACH_AFTER: Duration = Duration::from_secs(3);

/// `k2hdkc_ring_service_in`: `SERVICEIN` of this node, until the ring
/// shows it in. A node its chmpx keeps `Suspend` is reattached (k2hdkc
/// restarted, `reattach`) once, and SERVICEIN sent again.
pub async fn service_in<A, AFut>(
    view: &RingView,
    reattach: A,
    within: Duration,
) -> Result<Value, DatastoreError>
where
    A: Fn() -> AFut,
    AFut: Future<Output = Result<(), DatastoreError>>,
{
    let deadline = Instant::now() + within;
    let st = view.self_status(deadline).await?;
    if st.ring == "SERVICE IN" {
        return Ok(json!({ "status": st.to_string(), "reply": "already in the ring" }));
    }
    let mut reply = send_service_in(view, deadline).await?;
    let mut suspended_since: Option<Instant> = None;
    let mut reattached = false;
    loop {
        let st = view.self_status(deadline).await?;
        if st.ring == "SERVICE IN" {
            return Ok(
                json!({ "status": st.to_string(), "reply": reply, "reattached": reattached }),
            );
        }
        let suspended = st.ring == "SERVICE OUT" && st.live == "UP" && st.suspend == "Suspend";
        if !suspended {
            suspended_since = None;
        } else if !reattached
            && suspended_since.get_or_insert_with(Instant::now).elapsed() >= SUSPEND_REATTACH_AFTER
        {
            reattached = true;
            tracing::warn!(status = %st, reply = %reply, "chmpx shows this node with no k2hdkc attached and refuses SERVICEIN: restarting k2hdkc to attach again");
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, reattach()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(DatastoreError::failed(
                        "SERVICEIN",
                        format!("k2hdkc not restarted within {within:?} (this node showed {st})"),
                    ))
                }
            }
            let attached = wait_attached_again(view, left).await.map_err(|e| {
                DatastoreError::failed(
                    "SERVICEIN",
                    format!("this node showed {st}; k2hdkc restarted once: {e}"),
                )
            })?;
            tracing::info!(status = %attached["status"], "k2hdkc attached again: sending SERVICEIN again");
            reply = send_service_in(view, deadline).await?;
        }
        if Instant::now() >= deadline {
            let tried = if reattached {
                " (k2hdkc restarted once)"
            } else {
                ""
            };
            return Err(DatastoreError::failed(
                "SERVICEIN",
                format!("`{reply}`, but still {st} after {within:?}{tried}"),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends SERVICEIN; chmpx's "not allowed" is no verdict (the node's
/// status is), any other refusal is.
async fn send_service_in(view: &RingView, deadline: Instant) -> Result<String, DatastoreError> {
    let reply = send_until(&view.ctl, "SERVICEIN", deadline).await?;
    if !reply.starts_with("SUCCEED") && !reply.starts_with(NOT_ALLOWED) {
        return Err(DatastoreError::failed("SERVICEIN", reply));
    }
    Ok(reply)
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

/// How long a join may wait at `[ADD][Pending]` before the node merges
/// the ring itself (AUTOMERGE starts a merge within a second).
const PENDING_GRACE: Duration = Duration::from_secs(2);
/// How long after a `SERVICEIN` whose answer was lost, refused or late the
/// node's own status is trusted to show it: a `SERVICEIN` chmpx took shows
/// as `[SERVICE IN]` within a poll or two.
const SERVICEIN_AGAIN_AFTER: Duration = Duration::from_secs(3);

/// A lone node's join (not a cluster member): waits until this node at
/// `addr` serves, bounded by `within`. It sends `SERVICEIN` once k2hdkc is
/// attached and the ring did not take the node in by itself, and sends it
/// again only while its own status still shows it out: an answer lost or
/// late (seen on the real chmpx 1.0.111: `no reply within 3s`, then the
/// node stayed `[SERVICE OUT]` for the whole wait) is no verdict. A join
/// left at `[ADD][Pending]` (AUTOMERGE off) is merged here.
pub async fn serve_alone(addr: &str, ctlport: u16, within: Duration) -> Result<(), DatastoreError> {
    let deadline = Instant::now() + within;
    let mut asked: Option<Instant> = None;
    let mut sent = 0u32;
    let mut pending_since: Option<Instant> = None;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match chmpx::self_status(addr).await {
            Ok(st) if st.is_serving() && st.merge != "Pending" => {
                tracing::info!(
                    serviceins = sent,
                    "this node serves: [SERVICE IN][UP][NoSuspend]"
                );
                return Ok(());
            }
            Ok(st) => {
                let out = st.ring == "SERVICE OUT" && st.live == "UP" && st.suspend == "NoSuspend";
                if out && asked.is_none_or(|t| t.elapsed() >= SERVICEIN_AGAIN_AFTER) {
                    if sent > 0 {
                        tracing::warn!(status = %st, "the last SERVICEIN did not take: sending it again");
                    }
                    sent += 1;
                    match chmpx::command_ok(addr, "SERVICEIN").await {
                        Ok(()) => tracing::info!("SERVICEIN taken"),
                        Err(e) => {
                            tracing::warn!(error = %e, "SERVICEIN not confirmed; the node's status will tell")
                        }
                    }
                    asked = Some(Instant::now());
                }
                // AUTOMERGE off (the shipped template): the join waits at
                // [ADD][Pending] for a merge, which AUTOMERGE would have
                // started within a second.
                let pending =
                    st.ring == "SERVICE IN" && st.action == "ADD" && st.merge == "Pending";
                match (pending, pending_since) {
                    (true, None) => pending_since = Some(Instant::now()),
                    (true, Some(t)) if t.elapsed() >= PENDING_GRACE => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        tracing::info!(
                            "the join waits at [ADD][Pending] (AUTOMERGE off): merging the ring"
                        );
                        merge::merge_ring(
                            addr,
                            &[],
                            ctlport,
                            &|_| None,
                            merge::MergeBounds::within(left),
                        )
                        .await
                        .map_err(|e| DatastoreError::failed("merge the ring after SERVICEIN", e))?;
                        pending_since = None;
                    }
                    (false, _) => pending_since = None,
                    _ => {}
                }
                last = st.to_string();
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(DatastoreError::failed(
        "wait for this node to serve",
        format!("not serving after {within:?} ({sent} SERVICEIN sent); last: {last}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A lone chmpx's control port whose `SERVICEIN` answers get lost: the
    /// first `lost` of them are dropped unanswered; `takes_from` says
    /// which one (1-based) changes the status to `[SERVICE IN]`.
    struct Lossy {
        status: Mutex<String>,
        serviceins: Mutex<u32>,
        lost: u32,
        takes_from: u32,
    }

    async fn serve(port: Arc<Lossy>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let port = port.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut line = String::new();
                    if BufReader::new(r).read_line(&mut line).await.is_err() {
                        return;
                    }
                    let reply = match line.trim() {
                        "SELFSTATUS" => {
                            format!(
                                "    Server Status = 0x0(SAFE -> {})\n",
                                port.status.lock().unwrap()
                            )
                        }
                        "SERVICEIN" => {
                            let n = {
                                let mut n = port.serviceins.lock().unwrap();
                                *n += 1;
                                *n
                            };
                            if n >= port.takes_from {
                                *port.status.lock().unwrap() =
                                    "[SERVICE IN][UP][n/a][Nothing][NoSuspend]".into();
                            }
                            if n <= port.lost {
                                // No answer: hold the connection past the
                                // agent's 3 s bound, then drop it.
                                tokio::time::sleep(Duration::from_secs(4)).await;
                                return;
                            }
                            "SUCCEED\n".into()
                        }
                        _ => "ERROR: not allowed\n".to_owned(),
                    };
                    let _ = w.write_all(reply.as_bytes()).await;
                });
            }
        });
        addr
    }

    async fn join_with(lost: u32, takes_from: u32) -> (Result<(), DatastoreError>, u32) {
        let port = Arc::new(Lossy {
            status: Mutex::new("[SERVICE OUT][UP][n/a][Nothing][NoSuspend]".into()),
            serviceins: Mutex::new(0),
            lost,
            takes_from,
        });
        let addr = serve(port.clone()).await;
        let out = serve_alone(&addr, 8021, Duration::from_secs(20)).await;
        let sent = *port.serviceins.lock().unwrap();
        (out, sent)
    }

    #[tokio::test]
    async fn a_servicein_lost_and_not_taken_is_sent_again() {
        let (out, sent) = join_with(1, 2).await;
        assert!(out.is_ok(), "{out:?}");
        assert_eq!(
            sent, 2,
            "sent again once the status still showed the node out"
        );
    }

    #[tokio::test]
    async fn a_servicein_taken_whose_answer_was_lost_is_not_sent_again() {
        let (out, sent) = join_with(1, 1).await;
        assert!(out.is_ok(), "{out:?}");
        assert_eq!(sent, 1, "the status showed it in: nothing to send again");
    }

    /// A member's control port whose own status shows `Suspend` (a peer's
    /// stale copy won) and refuses SERVICEIN while it does.
    async fn serve_suspended(status: Arc<Mutex<String>>, serviceins: Arc<Mutex<u32>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let (r, mut w) = s.into_split();
                let mut line = String::new();
                let _ = BufReader::new(r).read_line(&mut line).await;
                let reply = match line.trim() {
                    "SELFSTATUS" => format!(
                        "    Server Status = 0x0(SAFE -> {})\n",
                        status.lock().unwrap()
                    ),
                    "SERVICEIN" => {
                        *serviceins.lock().unwrap() += 1;
                        let mut st = status.lock().unwrap();
                        if st.contains("[Suspend]") {
                            format!("{NOT_ALLOWED}\n")
                        } else {
                            *st = "[SERVICE IN][UP][ADD][Pending][NoSuspend]".into();
                            "SUCCEED\n".into()
                        }
                    }
                    _ => "ERROR: not allowed\n".into(),
                };
                let _ = w.write_all(reply.as_bytes()).await;
            }
        });
        addr
    }

    /// SERVICEIN on a node shown `Suspend`; `reattach_clears` says whether
    /// restarting k2hdkc clears it. Returns the outcome, restarts, SERVICEINs.
    async fn service_in_suspended(
        reattach_clears: bool,
        within: Duration,
    ) -> (Result<Value, DatastoreError>, u32, u32) {
        let status = Arc::new(Mutex::new(
            "[SERVICE OUT][UP][n/a][Nothing][Suspend]".to_owned(),
        ));
        let serviceins = Arc::new(Mutex::new(0));
        let ctl = serve_suspended(status.clone(), serviceins.clone()).await;
        let restarts = Mutex::new(0);
        let out = service_in(
            &two_members(&ctl),
            || async {
                *restarts.lock().unwrap() += 1;
                if reattach_clears {
                    *status.lock().unwrap() = "[SERVICE OUT][UP][n/a][Nothing][NoSuspend]".into();
                }
                Ok(())
            },
            within,
        )
        .await;
        let restarts = *restarts.lock().unwrap();
        let sent = *serviceins.lock().unwrap();
        (out, restarts, sent)
    }

    /// The CI failure: chmpx kept this member `Suspend` with k2hdkc
    /// attached and refused SERVICEIN for the step's whole bound. k2hdkc
    /// restarted once attaches again, and the second SERVICEIN takes.
    #[tokio::test]
    async fn a_member_kept_suspend_is_reattached_and_taken_in() {
        let (out, restarts, sent) = service_in_suspended(true, Duration::from_secs(15)).await;
        let out = out.unwrap();
        assert_eq!(restarts, 1);
        assert_eq!(sent, 2, "refused once, then taken");
        assert_eq!(out["reattached"], true);
        assert!(
            out["status"].as_str().unwrap().starts_with("[SERVICE IN]"),
            "{out}"
        );
    }

    /// A `Suspend` that a restart does not clear: one restart only, and
    /// the step fails within its bound, naming what it saw and tried.
    #[tokio::test]
    async fn a_suspend_a_restart_does_not_clear_fails_in_bound() {
        let t = Instant::now();
        let (out, restarts, _) = service_in_suspended(false, Duration::from_secs(5)).await;
        let err = out.unwrap_err().to_string();
        assert_eq!(restarts, 1);
        assert!(
            err.contains("[Suspend]") && err.contains("k2hdkc restarted once"),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(8));
    }

    /// Two members' ALLSTATUS as this node's chmpx shows them: this node
    /// (cuk-a, `self_ring`) and cuk-b, DOWN until `peer_up` is set.
    async fn serve_ring(
        self_ring: &'static str,
        peer_up: Arc<std::sync::atomic::AtomicBool>,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let (r, mut w) = s.into_split();
                let mut line = String::new();
                let _ = BufReader::new(r).read_line(&mut line).await;
                let peer = if peer_up.load(std::sync::atomic::Ordering::SeqCst) {
                    "UP"
                } else {
                    "DOWN"
                };
                let entry = |n: u32, cuk: &str, ring: &str, live: &str| {
                    format!("No.{n}\n  Server Name = 10.0.0.{n}\n    Control Port = 8021\n    CUK = {cuk}\n    Custom ID Seed = h{n}\n    Server Status = 0x0(SAFE -> [{ring}][{live}][n/a][Nothing][NoSuspend])\n    Enable Hash Value = 0xffffffffffffffff\n    Pending Hash Value = 0xffffffffffffffff\n")
                };
                let reply = format!(
                    "RING Name = c1\n{}{}",
                    entry(1, "cuk-a", self_ring, "UP"),
                    entry(2, "cuk-b", "SERVICE OUT", peer)
                );
                let _ = w.write_all(reply.as_bytes()).await;
            }
        });
        addr
    }

    fn two_members(ctl: &str) -> RingView {
        RingView {
            cuk: "cuk-a".into(),
            ctl: ctl.to_owned(),
            ctlport: 8021,
            facts: crate::ini::facts(
                "[GLOBAL]\nGROUP = c1\nCTLPORT = 8021\n[SVRNODE]\nNAME = 10.0.0.1\nCUK = cuk-a\n[SVRNODE]\nNAME = 10.0.0.2\nCUK = cuk-b\n",
            ),
        }
    }

    /// converge on cuk-a with this node `self_ring` and cuk-b DOWN; a
    /// restart brings cuk-b UP. Returns the outcome and how many restarts.
    async fn converge_two(
        self_ring: &'static str,
        within: Duration,
        restart_after: Duration,
    ) -> (Result<Value, DatastoreError>, usize) {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let up = Arc::new(AtomicBool::new(false));
        let ctl = serve_ring(self_ring, up.clone()).await;
        let restarts = AtomicUsize::new(0);
        let cuks = vec!["cuk-a".to_owned(), "cuk-b".to_owned()];
        let out = converge_with(
            || async { Ok(two_members(&ctl)) },
            || async {
                restarts.fetch_add(1, Ordering::SeqCst);
                up.store(true, Ordering::SeqCst);
                Ok(())
            },
            &cuks,
            within,
            restart_after,
        )
        .await;
        (out, restarts.load(Ordering::SeqCst))
    }

    /// A member this chmpx keeps DOWN (the handshake two chmpx started at
    /// once can miss): a node not yet in the ring starts its chmpx again,
    /// once, and then sees the member UP.
    #[tokio::test]
    async fn a_member_kept_down_is_reached_by_starting_chmpx_again() {
        let (out, restarts) = converge_two(
            "SERVICE OUT",
            Duration::from_secs(10),
            Duration::from_secs(1),
        )
        .await;
        let out = out.unwrap();
        assert_eq!(restarts, 1);
        assert!(
            out["ring"]
                .as_str()
                .unwrap()
                .contains("10.0.0.2 [SERVICE OUT][UP]"),
            "{out}"
        );
    }

    /// A node that serves keeps its chmpx: the step fails, naming the
    /// member, within its bound.
    #[tokio::test]
    async fn a_serving_node_is_never_restarted_for_a_member_down() {
        let t = Instant::now();
        let (out, restarts) = converge_two(
            "SERVICE IN",
            Duration::from_secs(3),
            Duration::from_millis(500),
        )
        .await;
        let err = out.unwrap_err();
        assert_eq!(restarts, 0);
        assert!(err.to_string().contains("not UP yet: [\"cuk-b\"]"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(6));
    }
}
