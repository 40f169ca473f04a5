//! Joining: `SERVICEIN` of a member (with the repair of a node its chmpx
//! keeps suspended), a lone node's join, and k2hdkc attached again after
//! a restart (reattach) (CONTRACTS.md §7). Reaching the members first is
//! [`super::converge`]'s.

use std::future::Future;
use std::time::{Duration, Instant};

use driver_api::DatastoreError;
use serde_json::{json, Value};

use super::merge;
use super::view::{send_checked, RingView, Sent, POLL, SLOW_ANSWER};
use crate::chmpx;

const NOT_ALLOWED: &str = "ERROR: Could not change status, because status is not allowed.";

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
            // The step's bound, not a fresh one: the restart took some of it.
            let left = deadline.saturating_duration_since(Instant::now());
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
    let ctl = view.ctl.as_str();
    let taken = || async move {
        let st =
            chmpx::parse_selfstatus(&chmpx::command_within(ctl, "SELFSTATUS", SLOW_ANSWER).await?)?;
        Ok((st.ring == "SERVICE IN").then(|| st.to_string()))
    };
    match send_checked(ctl, "SERVICEIN", deadline, taken).await? {
        Sent::Taken(seen) => Ok(format!("answer lost; this node shows {seen}")),
        Sent::Answered(reply) if reply.starts_with("SUCCEED") || reply.starts_with(NOT_ALLOWED) => {
            Ok(reply)
        }
        Sent::Answered(reply) => Err(DatastoreError::failed("SERVICEIN", reply)),
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

    /// A member's control port whose answers to the first `lost`
    /// SERVICEINs are lost (closed with nothing said); SERVICEIN number
    /// `takes_from` (1-based) and later put the node in.
    async fn member_with_lost_answers(
        lost: u32,
        takes_from: u32,
    ) -> (Result<Value, DatastoreError>, u32) {
        let status = Arc::new(Mutex::new(
            "[SERVICE OUT][UP][n/a][Nothing][NoSuspend]".to_owned(),
        ));
        let serviceins = Arc::new(Mutex::new(0u32));
        let (st, sent) = (status.clone(), serviceins.clone());
        let ctl = crate::testing::fake_ctlport(move |command| match command {
            "SELFSTATUS" => format!("    Server Status = 0x0(SAFE -> {})\n", st.lock().unwrap()),
            "SERVICEIN" => {
                let n = {
                    let mut n = sent.lock().unwrap();
                    *n += 1;
                    *n
                };
                if n >= takes_from {
                    *st.lock().unwrap() = "[SERVICE IN][UP][ADD][Pending][NoSuspend]".into();
                }
                if n <= lost {
                    String::new()
                } else {
                    "SUCCEED\n".into()
                }
            }
            _ => "ERROR: not allowed\n".into(),
        })
        .await;
        let out = service_in(
            &RingView {
                cuk: "cuk-a".into(),
                ctl,
                ctlport: 8021,
                facts: crate::ini::facts("[GLOBAL]\nGROUP = c1\nCTLPORT = 8021\n[SVRNODE]\nNAME = 10.0.0.1\nCUK = cuk-a\n"),
            },
            || async { Ok(()) },
            Duration::from_secs(10),
        )
        .await;
        let sent = *serviceins.lock().unwrap();
        (out, sent)
    }

    /// Issue 31's first failure on a member: SERVICEIN taken, its answer
    /// lost. The status shows it taken; it is not sent again.
    #[tokio::test]
    async fn a_members_servicein_taken_with_its_answer_lost_is_sent_once() {
        let (out, sent) = member_with_lost_answers(1, 1).await;
        let out = out.unwrap();
        assert_eq!(sent, 1, "{out}");
        assert!(
            out["reply"].as_str().unwrap().starts_with("answer lost"),
            "{out}"
        );
        assert!(
            out["status"].as_str().unwrap().starts_with("[SERVICE IN]"),
            "{out}"
        );
    }

    /// The answer lost and the status still out: sent again, once.
    #[tokio::test]
    async fn a_members_servicein_lost_and_not_taken_is_sent_again() {
        let (out, sent) = member_with_lost_answers(1, 2).await;
        let out = out.unwrap();
        assert_eq!(sent, 2, "{out}");
        assert_eq!(out["reply"], "SUCCEED");
    }

    /// A member's control port whose own status shows `Suspend` (a peer's
    /// stale copy won) and refuses SERVICEIN while it does.
    async fn serve_suspended(status: Arc<Mutex<String>>, serviceins: Arc<Mutex<u32>>) -> String {
        crate::testing::fake_ctlport(move |command| match command {
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
        })
        .await
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
            &RingView {
                cuk: "cuk-a".into(),
                ctl: ctl.clone(),
                ctlport: 8021,
                facts: crate::ini::facts("[GLOBAL]\nGROUP = c1\nCTLPORT = 8021\n[SVRNODE]\nNAME = 10.0.0.1\nCUK = cuk-a\n"),
            },
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
}
