//! The node after prepare: stop (leaving the ring and K2HR3), restart,
//! resume after an agent restart, new parameters, k2hdkc reattached.

use std::time::Duration;

use driver_api::DatastoreError;
use serde_json::{Map, Value};

use super::saved::{load_saved, store_saved};
use super::{failed, k2hr3_member, Node};
use crate::chmpx;
use crate::ini;
use crate::overrides::Parameters;
use crate::ring::{self, rejoin};

/// Grace for chmpx to leave on SIGINT.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a reattach waits for chmpx to show the old k2hdkc gone.
const DETACH_WAIT: Duration = Duration::from_secs(15);

impl Node {
    /// `stop_db`: leave the ring (SERVICEOUT), stop, leave K2HR3.
    ///
    /// A cluster member's ring steps are the cluster taskmanager's: it
    /// stops without SERVICEOUT. Trove's reboot and delete both send
    /// `stop_db` without the flag, and a reboot must not change the
    /// membership, so a member leaves K2HR3 only when told it is removed
    /// (`do_not_start_on_reboot`, what the k2hdkc cluster strategy sends
    /// after the ring gave its data away, or to every member on a cluster
    /// delete).
    pub async fn stop(&self, do_not_start_on_reboot: bool) -> Result<(), DatastoreError> {
        let _changing = self.changing();
        self.stop_watcher().await;
        let (params, client) = {
            let mut live = self.live.lock().await;
            live.stopped = true;
            (live.params.clone(), live.k2hr3.clone())
        };
        let member = self.is_member();
        let client = client.filter(|_| !member || do_not_start_on_reboot);
        if member {
            tracing::info!(
                removed = do_not_start_on_reboot,
                "a cluster member stops: no ring step here"
            );
        } else if let Err(e) = self.leave_ring(&params).await {
            // Still a member: keep it registered, serving and watched.
            self.live.lock().await.stopped = false;
            self.start_watcher().await;
            return Err(e);
        }
        // Stopped before it leaves K2HR3: the other nodes' inis drop it
        // when K2HR3 does, and chmpx drops a server at that reload only
        // if it is DOWN by then (seen on the real chmpx: a leaver still UP
        // stayed listed [SERVICE OUT][DOWN] on one member for good).
        self.stop_containers("stop the k2hdkc containers").await?;
        if let Some(client) = &client {
            client
                .deregister(&k2hr3_member(&self.settings, params.server_port))
                .await
                .map_err(|e| failed("remove the node from K2HR3", e))?;
            tracing::info!("removed from the K2HR3 role");
        }
        let mut saved = load_saved(&self.settings.state_dir).unwrap_or_default();
        saved.stopped = do_not_start_on_reboot;
        store_saved(&self.settings.state_dir, &saved).map_err(|e| failed("save node state", e))?;
        Ok(())
    }

    /// Leaves the ring before the containers stop: SERVICEOUT in the
    /// grammar of the ini's CHMPXIDTYPE, confirmed by ALLSTATUS, bounded by
    /// `startup_wait`. A refusal or a ring that does not let the node go
    /// fails the operation: stopping anyway would leave keys with a dead
    /// owner.
    pub(super) async fn leave_ring(&self, params: &Parameters) -> Result<(), DatastoreError> {
        let text = match std::fs::read_to_string(self.ini_path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(failed(&format!("read {}", self.ini_path().display()), e)),
        };
        let facts = ini::facts(&text);
        let outcome = ring::leave::leave(
            &facts,
            &self.settings.cuk,
            &self.ctl_addr(params),
            params.server_ctlport,
            self.settings.startup_wait,
        )
        .await
        .map_err(|e| failed("leave the ring (SERVICEOUT)", e))?;
        match outcome {
            ring::leave::Left::Out {
                command,
                confirmed_by,
            } => tracing::info!(command = %command, confirmed_by, "left the ring"),
            other => tracing::info!(outcome = ?other, "nothing to leave in the ring"),
        }
        Ok(())
    }

    /// Stops k2hdkc, then chmpx (k2hdkc lives on chmpx's shared memory).
    pub(super) async fn stop_containers(&self, what: &str) -> Result<(), DatastoreError> {
        for name in [
            self.settings.server_container(),
            self.settings.chmpx_container(),
        ] {
            self.containers
                .stop(&name, STOP_GRACE)
                .await
                .map_err(|e| failed(what, e))?;
        }
        Ok(())
    }

    /// The membership watcher stops while the node changes on purpose: it
    /// would otherwise register the node again between leave and join,
    /// with the parameters it started with.
    pub(super) async fn stop_watcher(&self) {
        if let Some(w) = self.live.lock().await.watcher.take() {
            w.abort();
        }
    }

    /// `restart`: stop both containers and start them again, rejoining.
    /// A cluster member does not leave the ring for it (its ring steps
    /// are the cluster taskmanager's; the replica serves meanwhile).
    pub async fn restart(&self) -> Result<(), DatastoreError> {
        self.restart_leaving(true).await
    }

    /// Both containers again with no ring step, for an upgrade an agent
    /// restart cut short: a lone node left the ring before its containers
    /// stopped, and a member never leaves it. SERVICEOUT to such a node's
    /// chmpx, just started and out of the ring, went unanswered for 10 s
    /// on the real image in CI, and failed the upgrade.
    pub(super) async fn start_again(&self) -> Result<(), DatastoreError> {
        self.restart_leaving(false).await
    }

    async fn restart_leaving(&self, leave_first: bool) -> Result<(), DatastoreError> {
        // Before anything stops: a node never prepared has nothing to restart.
        let client = self.prepared_client().await?;
        let _changing = self.changing();
        self.stop_watcher().await;
        let params = self.live.lock().await.params.clone();
        if self.is_member() {
            tracing::info!("a cluster member restarts: no ring step here");
        } else if !leave_first {
            tracing::info!("out of the ring already: no ring step before the restart");
        } else if let Err(e) = self.leave_ring(&params).await {
            self.start_watcher().await;
            return Err(e);
        }
        self.stop_containers("stop for restart").await?;
        self.join(&client, &params, None, None).await?;
        self.start_watcher().await;
        if self.is_member() {
            log_rejoin(rejoin::rejoin(&self.ring_view().await?, rejoin::REJOIN_WAIT).await)?;
        }
        Ok(())
    }

    /// Resumes after an agent restart: the watcher, and the containers
    /// unless the node was stopped for good.
    pub async fn resume(&self) {
        let saved = load_saved(&self.settings.state_dir).unwrap_or_default();
        if saved.stopped {
            return;
        }
        let _changing = self.changing();
        let params = self.live.lock().await.params.clone();
        if let Err(e) = self.ensure_run_dir() {
            tracing::warn!(error = %e, "could not prepare the run directory on resume");
        }
        if let Ok(text) = std::fs::read_to_string(self.ini_path()) {
            if let Err(e) = self.ensure_k2hfile_dir(&ini::facts(&text)) {
                tracing::warn!(error = %e, "could not prepare the K2HFILE directory on resume");
            }
        }
        // In join's order: k2hdkc attaches to the shared memory chmpx
        // makes, and a chmpx that just started does not answer its
        // control port yet (seen in CI: a restart right after a reboot
        // sent SERVICEOUT to it and got no reply within 10 s).
        match self.run_spec(self.chmpx_spec(&params)).await {
            Ok(()) => {
                if let Err(e) = self.wait_chmpx_answers(&params).await {
                    tracing::warn!(error = %e, "chmpx does not answer after resume");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not start chmpx on resume"),
        }
        if let Err(e) = self.run_spec(self.server_spec(&params)).await {
            tracing::warn!(error = %e, "could not start k2hdkc on resume");
        }
        self.record_chmpx_run().await;
        self.start_watcher().await;
        if self.is_member() {
            // Back from a crash or a reboot: merge in what the replicas
            // took meanwhile. In the background: the agent answers Trove
            // while it waits.
            match self.ring_view().await {
                Ok(view) => {
                    tokio::spawn(async move {
                        log_rejoin(rejoin::rejoin(&view, rejoin::REJOIN_WAIT).await)
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot rejoin the ring on resume"),
            }
        }
    }

    /// Applies new parameters: validated first, nothing changed on error.
    /// Port or cluster changes re-register and restart; proxies only
    /// change how K2HR3 is reached.
    pub async fn update_parameters(
        &self,
        changes: &Map<String, Value>,
        remove: bool,
    ) -> Result<(), DatastoreError> {
        let old = self.live.lock().await.params.clone();
        let new = old
            .with(changes, remove)
            .map_err(|p| DatastoreError::BadRequest(p.join("; ")))?;
        if new == old {
            return Ok(());
        }
        let client = self.live.lock().await.k2hr3.clone();
        self.save(&new, client.as_ref().map(|c| c.access()), false)?;
        self.live.lock().await.params = new.clone();
        let needs_restart = (
            new.server_port,
            new.server_ctlport,
            new.slave_ctlport,
            &new.cluster_name,
        ) != (
            old.server_port,
            old.server_ctlport,
            old.slave_ctlport,
            &old.cluster_name,
        );
        if needs_restart {
            if let Some(client) = client {
                // Leave under the old registration, join under the new one.
                let _changing = self.changing();
                self.stop_watcher().await;
                if let Err(e) = self.leave_ring(&old).await {
                    // Nothing changed on the node: back to the old parameters.
                    self.save(&old, Some(client.access()), false)?;
                    self.live.lock().await.params = old.clone();
                    self.start_watcher().await;
                    return Err(e);
                }
                // Down before it leaves K2HR3, as in stop_db: the peers'
                // chmpx drops it at their ini reload only if it is DOWN.
                self.stop_containers("stop for new parameters").await?;
                let _ = client
                    .deregister(&k2hr3_member(&self.settings, old.server_port))
                    .await;
                for name in [
                    self.settings.server_container(),
                    self.settings.chmpx_container(),
                ] {
                    self.containers
                        .remove(&name)
                        .await
                        .map_err(|e| failed("remove for new parameters", e))?;
                }
                self.join(&client, &new, None, None).await?;
                self.start_watcher().await;
            }
        }
        Ok(())
    }

    /// Restarts k2hdkc alone, chmpx running on: chmpx then marks this node
    /// pending, so the next merge moves this node's new ranges to it
    /// (CONTRACTS.md §7). Not a crash for the status rounds.
    pub async fn reattach(&self) -> Result<(), DatastoreError> {
        let _changing = self.changing();
        let name = self.settings.server_container();
        self.containers
            .stop(&name, STOP_GRACE)
            .await
            .map_err(|e| failed("stop k2hdkc", e))?;
        self.wait_detached().await;
        self.containers
            .start(&name)
            .await
            .map_err(|e| failed("start k2hdkc", e))
    }

    /// Waits, at most [`DETACH_WAIT`], until chmpx shows the stopped
    /// k2hdkc gone (`[Suspend]`). Read in chmpx 1.0.111: its check thread
    /// notes "no client left" and `ChmCntrl::EventLoop` suspends the node
    /// on a later turn without looking again (`DoSuspend`); a busy chmpx
    /// applied it after the new k2hdkc had attached, and the member then
    /// stayed `[Suspend]`, for which chmpx refuses every MERGE (a
    /// 100,000-key shrink hung so). Past the bound it starts anyway: the
    /// status rounds catch a member left detached.
    async fn wait_detached(&self) {
        let params = self.live.lock().await.params.clone();
        let ctl = self.ctl_addr(&params);
        let until = tokio::time::Instant::now() + DETACH_WAIT;
        loop {
            let last = match chmpx::self_status(&ctl).await {
                Ok(st) if st.suspend == "Suspend" => return,
                Ok(st) => st.to_string(),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= until {
                tracing::warn!(last = %last, "chmpx did not show k2hdkc gone within {DETACH_WAIT:?}; starting it anyway");
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Logs how a rejoin went, and passes its error on.
pub(super) fn log_rejoin(
    out: Result<rejoin::Rejoined, DatastoreError>,
) -> Result<(), DatastoreError> {
    match &out {
        Ok(rejoin::Rejoined::Merged(report)) => tracing::info!(
            seconds = report.seconds,
            repairs = report.repairs.len(),
            "back in the ring: merged what this node missed"
        ),
        Ok(rejoin::Rejoined::InRing) => tracing::info!("back in the ring: nothing to merge"),
        Ok(rejoin::Rejoined::NotInRing(st)) => {
            tracing::info!(status = %st, "not in the ring: the cluster taskmanager puts it in")
        }
        Ok(rejoin::Rejoined::Changing(what)) => {
            tracing::info!(ring = %what, "the ring is changing membership: the taskmanager merges it")
        }
        Err(e) => tracing::error!(error = %e, "could not rejoin the ring"),
    }
    out.map(|_| ())
}
