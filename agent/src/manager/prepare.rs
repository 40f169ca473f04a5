//! The manager's prepare and agent start: `prepare` kept in the journal
//! while it runs, and at agent start the data volume mounted and what the
//! journal says carried out (a prepared node resumed, a failed prepare
//! reported, an interrupted one finished or given up).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use driver_api::request::PrepareRequest;
use driver_api::{BackupAccess, DatastoreError, ServiceStatus, TroveException};
use serde_json::Value;

use super::{Call, DataVolume, Failure, Manager, RESTARTED_DURING_PREPARE};
use crate::conductor::now_epoch;
use crate::config::Secret;
use crate::journal::{PendingPrepare, PrepareState};
use crate::swift::SwiftStore;

impl Manager {
    /// The configured data volume, mounted (upstream does this at every
    /// agent start, before serving). Without a device (no Cinder volume),
    /// the mount point is a plain directory owned by the database user.
    pub async fn ensure_volume(&self) -> Result<(), crate::volume::VolumeError> {
        let v = &self.volume;
        if v.device.exists() {
            let done =
                crate::volume::ensure_mounted(&v.device, &v.mount_point, v.uid, v.gid, &v.options)
                    .await?;
            tracing::info!(device = %v.device.display(), mount_point = %v.mount_point.display(), done, "data volume");
        } else {
            use crate::volume::VolumeError;
            std::fs::create_dir_all(&v.mount_point)
                .map_err(|e| VolumeError::io("create", &v.mount_point, e))?;
            nix::unistd::chown(
                &v.mount_point,
                Some(nix::unistd::Uid::from_raw(v.uid)),
                Some(nix::unistd::Gid::from_raw(v.gid)),
            )
            .map_err(|e| VolumeError::io("chown", &v.mount_point, e))?;
            tracing::info!(device = %v.device.display(), mount_point = %v.mount_point.display(), "no data volume device: using the directory");
        }
        Ok(())
    }

    /// At agent start: the data volume; then what the journal says. A
    /// prepared guest resumes its driver; a failed prepare keeps being
    /// reported; a prepare the restart interrupted is finished if it is
    /// still within `state_change_wait_time` of its start, and reported
    /// failed otherwise; an upgrade the restart interrupted is run again.
    /// A backup the restart interrupted is reported failed first, and what
    /// it stored removed last, outside the operation lock.
    pub async fn start(&self) {
        let interrupted = {
            let _guard = self.ops.lock().await;
            let interrupted = self.recover_backup();
            self.start_locked().await;
            interrupted
        };
        if let Some(backup) = interrupted {
            self.remove_interrupted_backup(backup).await;
        }
    }

    async fn start_locked(&self) {
        if let Err(e) = self.ensure_volume().await {
            tracing::error!(error = %e, "data volume not ready");
        }
        match self.journal.state() {
            PrepareState::NotStarted => {}
            PrepareState::Completed => {
                tracing::info!("prepare completed earlier; resuming");
                self.datastore.resume().await;
                self.resume_upgrade().await;
            }
            PrepareState::Failed(cause) => {
                tracing::warn!(cause = %cause, "the last prepare failed; reporting it until a new prepare");
                self.prepare_failed.store(true, Ordering::SeqCst);
                self.report(ServiceStatus::Failed);
            }
            PrepareState::Interrupted(pending) => {
                let elapsed = Duration::from_secs_f64((now_epoch() - pending.began).max(0.0));
                match self.prepare_timeout.checked_sub(elapsed) {
                    Some(left) if !left.is_zero() => {
                        tracing::warn!(
                            began_s_ago = elapsed.as_secs(),
                            left_s = left.as_secs(),
                            "{RESTARTED_DURING_PREPARE}; resuming it"
                        );
                        let notification = pending.notification.clone();
                        let result = self.run_prepare(*pending, left).await;
                        self.end_notification(notification, true, &result);
                    }
                    _ => {
                        let cause = format!(
                            "{RESTARTED_DURING_PREPARE} and state_change_wait_time ({}s) has passed since it began ({}s ago)",
                            self.prepare_timeout.as_secs(),
                            elapsed.as_secs()
                        );
                        let notification = pending.notification.clone();
                        let failure = self.give_up_prepare(&cause);
                        self.end_notification(notification, true, &Err(failure));
                    }
                }
            }
            PrepareState::InterruptedWithoutRequest => {
                self.give_up_prepare(&format!(
                    "{RESTARTED_DURING_PREPARE} and its request was not kept"
                ));
            }
        }
    }

    /// Ends a prepare that cannot be finished: logged, kept, reported.
    pub(super) fn give_up_prepare(&self, cause: &str) -> Failure {
        tracing::error!(cause = %cause, "prepare failed");
        if let Err(e) = self.journal.fail(cause) {
            tracing::error!(error = %e, "could not record the failed prepare");
        }
        self.prepare_failed.store(true, Ordering::SeqCst);
        self.report(ServiceStatus::Failed);
        Failure::Trove(TroveException::Error(format!("prepare failed: {cause}")))
    }

    pub(super) fn volume_for(&self, device: Option<&str>, mount_point: Option<&str>) -> DataVolume {
        let mut v = self.volume.clone();
        if let Some(d) = device.filter(|d| !d.is_empty()) {
            v.device = PathBuf::from(d);
        }
        if let Some(m) = mount_point.filter(|m| !m.is_empty()) {
            v.mount_point = PathBuf::from(m);
        }
        v
    }

    /// `prepare`, as upstream's template: report `building`, run the
    /// driver's prepare within `state_change_wait_time`, mark completion,
    /// report the outcome. The request is journaled first, so an agent
    /// restarted mid-way can finish it. A repeated prepare after success is
    /// ignored.
    pub(super) async fn prepare(&self, request: PrepareRequest, call: Call) -> Result<(), Failure> {
        if self.journal.prepare_completed() {
            tracing::info!(
                "prepare already completed on this guest; ignoring the repeated request"
            );
            return Ok(());
        }
        let pending = PendingPrepare {
            began: now_epoch(),
            args: request,
            notification: call.notification,
            auth_token: call.auth_token.map(|t| t.expose().to_owned()),
        };
        if let Err(e) = self.journal.begin(&pending) {
            // Prepare still runs; only a crash in the middle would lose it.
            tracing::warn!(error = %e, "could not keep the prepare request; an agent restart during prepare could not resume it");
        }
        self.run_prepare(pending, self.prepare_timeout)
            .await
            .map(|_| ())
    }

    /// The body of prepare, for a new request or one resumed after a
    /// restart, bounded by `budget`.
    async fn run_prepare(
        &self,
        pending: PendingPrepare,
        budget: Duration,
    ) -> Result<Value, Failure> {
        let ds = self.datastore.manager();
        self.prepare_failed.store(false, Ordering::SeqCst);
        let req = &pending.args;
        self.report(ServiceStatus::Building);
        tracing::info!(
            datastore = ds,
            version = req.ds_version.as_deref().unwrap_or("-"),
            "prepare started"
        );
        // A restore reads the backup from Swift with the caller's token.
        let store = match req.backup_info.as_ref().and_then(|b| b.swift_url()) {
            Some(url) => match &pending.auth_token {
                Some(token) => Some(
                    SwiftStore::new(
                        url,
                        Secret::new(token.clone()),
                        self.backup.swift_api_insecure,
                    )
                    .map_err(|e| self.give_up_prepare(&e.to_string()))?,
                ),
                None => {
                    return Err(self.give_up_prepare(
                        "a restore needs the caller's token, and the request carried none",
                    ))
                }
            },
            _ => None,
        };
        let key = self.backup.aes_cbc_key.as_ref().map(|k| k.expose());
        let access = store.as_ref().map(|s| BackupAccess {
            store: s,
            container: &self.backup.swift_container,
            segment_size: self.backup.segment_max_size,
            encryption_key: key,
        });
        let work = async {
            self.ensure_volume()
                .await
                .map_err(|e| DatastoreError::failed("prepare the data volume", e))?;
            self.datastore.prepare(req, access).await
        };
        let outcome = match tokio::time::timeout(budget, work).await {
            Ok(r) => r,
            Err(_) => Err(DatastoreError::failed(
                "prepare",
                format!(
                    "not finished within state_change_wait_time ({:?})",
                    self.prepare_timeout
                ),
            )),
        };
        match outcome {
            Ok(status) => {
                if let Err(e) = self
                    .journal
                    .await_cluster(status == ServiceStatus::InstanceReady)
                {
                    tracing::error!(error = %e, "could not write the cluster-pending marker");
                }
                if let Err(e) = self.journal.complete() {
                    tracing::error!(error = %e, "could not write the prepare-end marker; a restarted agent would prepare again");
                }
                tracing::info!(status = %status, "prepare finished");
                self.report(status);
                Ok(Value::Null)
            }
            Err(e) => {
                let failure = self.give_up_prepare(&e.to_string());
                Err(match failure {
                    Failure::Trove(_) => Failure::Trove(e.to_trove(ds)),
                    other => other,
                })
            }
        }
    }
}
