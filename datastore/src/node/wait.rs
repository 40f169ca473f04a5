//! The node's bounded waits: for K2HR3 to list the ring, for the ring's
//! servers to know this node, for chmpx to answer, for k2hdkc to attach,
//! for a node to serve. Each is bounded by `startup_wait` or less.

use std::time::{Duration, Instant};

use driver_api::DatastoreError;

use super::{failed, Node};
use crate::chmpx;
use crate::ini;
use crate::k2hr3::K2hr3;
use crate::overrides::Parameters;
use crate::ring::join;

/// The longest a new member waits for K2HR3 to list its whole ring.
const RING_LISTED_WAIT: Duration = Duration::from_secs(60);

impl Node {
    /// Waits until K2HR3 lists `size` servers, rewriting the ini as it
    /// grows. Members register together: seen on the real image, chmpx
    /// started with a partial ini (1, 2 and 3 of 3 servers) was refused by
    /// its peers, and after the full ini loaded two members saw a third
    /// DOWN for good. Past [`RING_LISTED_WAIT`] chmpx starts anyway; the
    /// taskmanager's converge step then names what is missing.
    pub(super) async fn wait_ring_listed(
        &self,
        client: &K2hr3,
        mut facts: ini::IniFacts,
        size: usize,
    ) -> Result<ini::IniFacts, DatastoreError> {
        let deadline = Instant::now() + RING_LISTED_WAIT.min(self.settings.startup_wait);
        let mut said = false;
        while facts.servers.len() < size {
            if Instant::now() >= deadline {
                tracing::warn!(
                    listed = facts.servers.len(),
                    expected = size,
                    "K2HR3 still lists fewer servers than the ring has; starting chmpx anyway"
                );
                break;
            }
            if !said {
                tracing::info!(
                    listed = facts.servers.len(),
                    expected = size,
                    "waiting for K2HR3 to list every server of the ring"
                );
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            facts = self.refresh_ini(client).await?;
        }
        Ok(facts)
    }

    /// Waits (bounded) until every running server of the ini lists this
    /// node in `ALLSTATUS`: their chmpx has loaded the ini with it. Seen on
    /// the real chmpx: a new member that connects to a server whose ini
    /// does not have it yet is refused ("could not allow from this
    /// server") and its chmpx never opens its control port. Servers that
    /// do not answer (not started yet, or down) are not waited for.
    pub(super) async fn wait_known_by_peers(&self, facts: &ini::IniFacts, params: &Parameters) {
        let me = self.settings.cuk.as_str();
        let peers: Vec<String> = facts
            .servers
            .iter()
            .filter(|n| n.cuk.as_deref() != Some(me))
            .map(|n| facts.ctl_addr_of(n, params.server_ctlport))
            .collect();
        let deadline = Instant::now() + self.settings.startup_wait.min(Duration::from_secs(60));
        loop {
            let mut waiting = Vec::new();
            for addr in &peers {
                if let Ok(servers) = chmpx::all_status_within(addr, Duration::from_secs(3)).await {
                    if !servers.iter().any(|s| s.cuk == me) {
                        waiting.push(addr.clone());
                    }
                }
            }
            if waiting.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(servers = ?waiting, "these servers still do not list this node; starting chmpx anyway");
                return;
            }
            tracing::info!(servers = ?waiting, "waiting for the ring's servers to load the ini with this node");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until chmpx answers on its control port (it has set up its
    /// shared memory by then).
    pub(super) async fn wait_chmpx_answers(
        &self,
        params: &Parameters,
    ) -> Result<(), DatastoreError> {
        let addr = self.ctl_addr(params);
        let deadline = Instant::now() + self.settings.startup_wait;
        loop {
            match chmpx::self_status(&addr).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(failed(
                        "wait for chmpx to answer",
                        format!("not within {:?}: {e}", self.settings.startup_wait),
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Waits until chmpx is up with k2hdkc attached (`NoSuspend`),
    /// whatever its place in the ring: what a cluster member needs before
    /// the taskmanager puts it into the ring.
    pub async fn wait_attached(&self, params: &Parameters) -> Result<(), DatastoreError> {
        let addr = self.ctl_addr(params);
        let deadline = Instant::now() + self.settings.startup_wait;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match chmpx::self_status(&addr).await {
                Ok(st) if st.live == "UP" && st.suspend == "NoSuspend" => {
                    tracing::info!(status = %st, "chmpx up with k2hdkc attached");
                    return Ok(());
                }
                Ok(st) => last = st.to_string(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(failed(
            "wait for k2hdkc to attach to chmpx",
            format!(
                "not attached after {:?}; last: {last}",
                self.settings.startup_wait
            ),
        ))
    }

    /// Waits until chmpx at `addr` serves, bounded by `startup_wait`.
    pub(super) async fn wait_serving(&self, addr: &str, who: &str) -> Result<(), DatastoreError> {
        let deadline = Instant::now() + self.settings.startup_wait;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match chmpx::self_status(addr).await {
                Ok(st) if st.is_serving() => return Ok(()),
                Ok(st) => last = st.to_string(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(failed(
            &format!("wait for {who} ({addr}) to serve"),
            format!(
                "not serving after {:?}; last: {last}",
                self.settings.startup_wait
            ),
        ))
    }

    /// Waits until this node serves ([`join::serve_alone`]), bounded by
    /// `startup_wait`.
    pub(super) async fn wait_self_serving(
        &self,
        params: &Parameters,
    ) -> Result<(), DatastoreError> {
        join::serve_alone(
            &self.ctl_addr(params),
            params.server_ctlport,
            self.settings.startup_wait,
        )
        .await
    }
}
