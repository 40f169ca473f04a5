//! The manager's upgrades: `upgrade` kept in the journal while it runs,
//! and, at agent start, an upgrade an earlier run did not finish run again
//! to its end.
//!
//! Trove records the new datastore version before it casts `upgrade` and
//! then waits for `HEALTHY`; a guest that came back from a crash on the
//! old version and said `HEALTHY` would end the upgrade in Trove with the
//! node still on the old one. So the request is kept until the upgrade
//! ends, and a restarted agent runs it again (the driver makes that safe:
//! the same version again on a node that does not serve is a restart).

use driver_api::request::UpgradeRequest;
use serde_json::Value;

use super::{Failure, Manager};
use crate::conductor::now_epoch;
use crate::journal::RunningUpgrade;

impl Manager {
    /// `upgrade`, kept in the journal until it ends either way.
    pub(super) async fn upgrade(
        &self,
        req: UpgradeRequest,
        notification: Option<Value>,
    ) -> Result<Value, Failure> {
        let running = RunningUpgrade {
            began: now_epoch(),
            args: req,
            notification,
        };
        if let Err(e) = self.journal.begin_upgrade(&running) {
            tracing::warn!(error = %e, "could not keep the upgrade request; an agent restart during it could not resume it");
        }
        let result = self.run_upgrade(&running.args).await;
        if let Err(e) = self.journal.end_upgrade() {
            tracing::error!(error = %e, "could not clear the upgrade record");
        }
        result
    }

    async fn run_upgrade(&self, req: &UpgradeRequest) -> Result<Value, Failure> {
        let ds = self.datastore.manager();
        self.datastore
            .upgrade(req)
            .await
            .map(|_| Value::Null)
            .map_err(|e| Failure::Trove(e.to_trove(ds)))
    }

    /// At agent start, after the driver resumed: an upgrade the restart
    /// interrupted is run again, and its end reported as the cast's would
    /// have been (the status at once, the notification's end).
    pub(super) async fn resume_upgrade(&self) {
        let running = match self.journal.running_upgrade() {
            None => return,
            Some(Ok(running)) => running,
            Some(Err(e)) => {
                tracing::error!(error = %e, "an upgrade was under way when the agent stopped, and its record cannot be used: the node runs the version it saved");
                if let Err(e) = self.journal.end_upgrade() {
                    tracing::error!(error = %e, "could not clear the upgrade record");
                }
                return;
            }
        };
        tracing::warn!(
            version = %running.args.upgrade_info.datastore_version,
            began_s_ago = (now_epoch() - running.began).max(0.0) as u64,
            "the agent restarted during an upgrade; running it again"
        );
        let result = self.run_upgrade(&running.args).await;
        match &result {
            Ok(_) => tracing::info!("the interrupted upgrade finished"),
            Err(e) => tracing::error!(error = ?e, "the interrupted upgrade failed"),
        }
        if let Err(e) = self.journal.end_upgrade() {
            tracing::error!(error = %e, "could not clear the upgrade record");
        }
        let status = self.datastore.status().await;
        self.report(status);
        self.end_notification(running.notification, false, &result);
    }
}
