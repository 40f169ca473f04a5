//! Converging: a member's ini and chmpx reaching every member of the
//! cluster before `SERVICEIN` (`k2hdkc_ring_converge`, CONTRACTS.md §7).

use std::future::Future;
use std::time::{Duration, Instant};

use driver_api::DatastoreError;
use serde_json::{json, Value};

use super::merge;
use super::view::{RingView, POLL, SLOW_ANSWER};
use crate::chmpx;

/// How long converge waits for chmpx to drop servers the ini no longer
/// lists: the role watcher holds such a change back at most this long
/// (until chmpx sees the leaver down), and the reload then drops it.
const EXTRAS_WAIT: Duration = crate::watcher::DROP_HOLD;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Two members' ALLSTATUS as this node's chmpx shows them: this node
    /// (cuk-a, `self_ring`) and cuk-b, DOWN until `peer_up` is set.
    async fn serve_ring(
        self_ring: &'static str,
        peer_up: Arc<std::sync::atomic::AtomicBool>,
    ) -> String {
        crate::testing::fake_ctlport(move |_| {
            let peer = if peer_up.load(std::sync::atomic::Ordering::SeqCst) {
                "UP"
            } else {
                "DOWN"
            };
            let entry = |n: u32, cuk: &str, ring: &str, live: &str| {
                format!("No.{n}\n  Server Name = 10.0.0.{n}\n    Control Port = 8021\n    CUK = {cuk}\n    Custom ID Seed = h{n}\n    Server Status = 0x0(SAFE -> [{ring}][{live}][n/a][Nothing][NoSuspend])\n    Enable Hash Value = 0xffffffffffffffff\n    Pending Hash Value = 0xffffffffffffffff\n")
            };
            format!(
                "RING Name = c1\n{}{}",
                entry(1, "cuk-a", self_ring, "UP"),
                entry(2, "cuk-b", "SERVICE OUT", peer)
            )
        })
        .await
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
