//! The manager's backups: `create_backup` (BUILDING, the driver's backup
//! to Swift with the caller's token, then COMPLETED or FAILED) and, at
//! agent start, the end of a backup an earlier run did not finish.

use std::sync::atomic::{AtomicBool, Ordering};

use driver_api::request;
use driver_api::{BackupAccess, DatastoreError};
use serde_json::{json, Map, Value};

use super::{Failure, Manager};
use crate::conductor::now_epoch;
use crate::config::Secret;
use crate::host;
use crate::journal::RunningBackup;
use crate::swift::SwiftStore;

/// Trove's backup states (`trove/backup/state.py`).
mod backup_state {
    pub const BUILDING: &str = "BUILDING";
    pub const COMPLETED: &str = "COMPLETED";
    pub const FAILED: &str = "FAILED";
}

impl Manager {
    /// `create_backup`, as upstream's service: BUILDING with the volume's
    /// used size, the driver's backup to Swift with the caller's token,
    /// then COMPLETED with checksum, location and size, or FAILED with
    /// the cause logged. A cast: the caller sees only the states.
    pub(super) async fn create_backup(
        &self,
        req: request::CreateBackupRequest,
        token: Option<Secret>,
    ) -> Result<Value, Failure> {
        let ds = self.datastore.manager();
        let id = req.backup_info.id.clone();
        let backup_type = if req.backup_info.is_incremental() {
            "incremental"
        } else {
            "full"
        };
        let used_gb = host::filesystem_stats(&self.volume.mount_point)
            .ok()
            .and_then(|s| s.get("used").and_then(Value::as_f64))
            .unwrap_or(0.0);
        let mut state = Map::new();
        state.insert("size".into(), json!(used_gb));
        state.insert("state".into(), json!(backup_state::BUILDING));
        state.insert("backup_type".into(), json!(backup_type));
        self.conductor.update_backup(&id, state.clone());
        tracing::info!(backup = %id, backup_type, "backup started");
        let _backing_up = Raised::new(&self.backing_up);
        // Kept until its end is reported: see `recover_backup`.
        let running = RunningBackup {
            id: id.clone(),
            began: now_epoch(),
            swift_url: req.backup_info.swift_url().map(str::to_owned),
            container: req
                .backup_info
                .swift_container()
                .unwrap_or(&self.backup.swift_container)
                .to_owned(),
            auth_token: token.as_ref().map(|t| t.expose().to_owned()),
            reported: false,
        };
        if let Err(e) = self.journal.begin_backup(&running) {
            tracing::warn!(error = %e, "could not keep the running backup; an agent restart during it would leave it BUILDING");
        }

        let key = self.backup.aes_cbc_key.as_ref().map(|k| k.expose());
        let outcome = async {
            let url = req.backup_info.swift_url().ok_or_else(|| {
                DatastoreError::BadRequest("Missing swift_url in backup metadata.".into())
            })?;
            let token = token.ok_or_else(|| {
                DatastoreError::BadRequest(
                    "the request carried no token to reach Swift with".into(),
                )
            })?;
            let store = SwiftStore::new(url, token, self.backup.swift_api_insecure)
                .map_err(|e| DatastoreError::failed("reach Swift", e))?;
            let access = BackupAccess {
                store: &store,
                container: &self.backup.swift_container,
                segment_size: self.backup.segment_max_size,
                encryption_key: key,
            };
            self.datastore.create_backup(&req, access).await
        }
        .await;
        match outcome {
            Ok(o) => {
                state.insert("checksum".into(), json!(o.checksum));
                state.insert("location".into(), json!(o.location));
                state.insert("size".into(), json!(o.size_gb));
                state.insert("success".into(), json!(true));
                state.insert("state".into(), json!(backup_state::COMPLETED));
                // Forgotten first: a crash in between must not make the
                // next start report a stored backup FAILED and remove it.
                self.end_backup();
                self.conductor.update_backup(&id, state);
                self.metrics
                    .backup_done(Some((o.size_gb * 1024.0 * 1024.0 * 1024.0) as u64));
                tracing::info!(backup = %id, location = %o.location, "backup completed");
                Ok(Value::Null)
            }
            Err(e) => {
                state.insert("success".into(), json!(false));
                state.insert("state".into(), json!(backup_state::FAILED));
                self.conductor.update_backup(&id, state);
                self.end_backup();
                self.metrics.backup_done(None);
                tracing::error!(backup = %id, cause = %e, "backup failed");
                Err(Failure::Trove(e.to_trove(ds)))
            }
        }
    }
}

impl Manager {
    fn end_backup(&self) {
        if let Err(e) = self.journal.end_backup() {
            tracing::warn!(error = %e, "could not clear the running backup's record");
        }
    }

    /// At agent start, for a backup an earlier run did not finish (a
    /// crash, or a stop whose `graceful_shutdown_timeout` it outlasted):
    /// Trove would keep it `BUILDING`, undeletable, and refuse every
    /// action on the instance. It is reported `FAILED` (unless the run
    /// that abandoned it did); returns it, for `remove_interrupted_backup`
    /// to clear what it stored.
    pub(super) fn recover_backup(&self) -> Option<RunningBackup> {
        let running = self.unfinished_backup()?;
        if running.reported {
            tracing::warn!(backup = %running.id, "a backup the last stop abandoned (reported FAILED then): removing what it stored");
        } else {
            tracing::error!(backup = %running.id, began_s_ago = (now_epoch() - running.began).max(0.0) as u64, "the agent restarted during a backup; reporting it FAILED");
            self.report_backup_failed(&running.id);
        }
        Some(running)
    }

    /// At agent stop, once in-flight requests are done or aborted: a
    /// backup `graceful_shutdown_timeout` cut short is reported `FAILED`
    /// now, not at the next start (which may be late, or never). What it
    /// stored is removed at the next start.
    pub fn end_abandoned_backup(&self) {
        let Some(mut running) = self.unfinished_backup() else {
            return;
        };
        if running.reported {
            return;
        }
        tracing::error!(backup = %running.id, "the agent stops before the backup ended; reporting it FAILED");
        self.report_backup_failed(&running.id);
        running.reported = true;
        if let Err(e) = self.journal.begin_backup(&running) {
            tracing::warn!(error = %e, "could not record that the abandoned backup was reported");
        }
    }

    /// The record of a backup that did not end, if any (an unreadable one
    /// is removed).
    fn unfinished_backup(&self) -> Option<RunningBackup> {
        match self.journal.running_backup()? {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(error = %e, "the record of an interrupted backup cannot be read; removing it");
                self.end_backup();
                None
            }
        }
    }

    fn report_backup_failed(&self, id: &str) {
        let mut state = Map::new();
        state.insert("state".into(), json!(backup_state::FAILED));
        state.insert("success".into(), json!(false));
        self.conductor.update_backup(id, state);
    }

    /// Removes what an interrupted backup stored (bounded as a failed
    /// backup's cleanup), then its record.
    pub(super) async fn remove_interrupted_backup(&self, running: RunningBackup) {
        if let (Some(url), Some(token)) = (&running.swift_url, &running.auth_token) {
            let removed = match SwiftStore::new(
                url,
                Secret::new(token.clone()),
                self.backup.swift_api_insecure,
            ) {
                Ok(store) => store.remove_backup(&running.container, &running.id).await,
                Err(e) => Err(e),
            };
            match removed {
                Ok(n) => {
                    tracing::info!(backup = %running.id, objects = n, "removed what the interrupted backup stored")
                }
                Err(e) => {
                    tracing::warn!(backup = %running.id, container = %running.container, error = %e, "what the interrupted backup stored may stay in Swift")
                }
            }
        }
        self.end_backup();
    }
}

/// Raises a flag for as long as it lives, whatever ends the scope.
pub(super) struct Raised<'a>(&'a AtomicBool);

impl<'a> Raised<'a> {
    fn new(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        Self(flag)
    }
}

impl Drop for Raised<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
