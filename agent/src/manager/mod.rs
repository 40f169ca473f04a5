//! The guest manager: routes each guest API request to the host (ping,
//! stats, diagnostics) or the datastore driver, runs changing operations
//! one at a time, keeps the prepare markers, and reports status.
//! Trove's counterpart is `trove/guestagent/datastore/manager.py`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use driver_api::request::{self, GuestMethod, PrepareRequest};
use driver_api::GuestRequest;
use driver_api::{BackupAccess, Datastore, DatastoreError, ServiceStatus, TroveException};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::conductor::{now_epoch, Conductor};
use crate::config::{BackupOptions, Secret};
use crate::host;
use crate::journal::{Journal, PendingPrepare, PrepareState};
use crate::swift::SwiftStore;

mod backup;

/// The cause logged and kept when a prepare cannot be finished after an
/// agent restart.
pub const RESTARTED_DURING_PREPARE: &str = "the agent restarted during prepare";

/// What the caller of a request gets back when it fails.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// A Trove exception class, re-raised by name on the control plane.
    Trove(TroveException),
    /// oslo.messaging's own failure JSON (NoSuchMethod, UnsupportedVersion).
    Oslo(String),
}

impl Failure {
    /// The `failure` field of the reply.
    pub fn to_failure_text(&self) -> String {
        match self {
            Failure::Trove(e) => e.to_failure_text(),
            Failure::Oslo(text) => text.clone(),
        }
    }
}

/// What the request's context says of its caller.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The context's `trove_notification`, if the control plane sent one.
    pub notification: Option<Value>,
    /// The caller's Keystone token (`auth_token`): backups reach Swift
    /// with it, as upstream's backup container does.
    pub auth_token: Option<Secret>,
}

/// The data volume as configured.
#[derive(Debug, Clone)]
pub struct DataVolume {
    /// `device_path`.
    pub device: PathBuf,
    /// `mount_point`.
    pub mount_point: PathBuf,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// How to format and mount.
    pub options: crate::volume::VolumeOptions,
}

/// The guest manager.
pub struct Manager {
    datastore: Arc<dyn Datastore>,
    conductor: Conductor,
    volume: DataVolume,
    journal: Journal,
    prepare_timeout: Duration,
    backup: BackupOptions,
    /// Held by every operation that changes the datastore.
    ops: Mutex<()>,
    /// A backup holds `ops`: set while it runs, so that the periodic
    /// status report goes on beside it (see `report_status`).
    backing_up: AtomicBool,
    /// The status last reported, for `status()` while an operation runs.
    reported: std::sync::Mutex<Option<ServiceStatus>>,
    /// The last prepare failed: the periodic report keeps saying so, so
    /// that the outcome reaches the conductor even if one cast was lost.
    prepare_failed: AtomicBool,
}

impl Manager {
    /// A manager over `datastore`.
    pub fn new(
        datastore: Arc<dyn Datastore>,
        conductor: Conductor,
        volume: DataVolume,
        journal: Journal,
        prepare_timeout: Duration,
        backup: BackupOptions,
    ) -> Self {
        Self {
            datastore,
            conductor,
            volume,
            journal,
            prepare_timeout,
            backup,
            ops: Mutex::new(()),
            backing_up: AtomicBool::new(false),
            reported: Default::default(),
            prepare_failed: AtomicBool::new(false),
        }
    }

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
    /// failed otherwise.
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
    fn give_up_prepare(&self, cause: &str) -> Failure {
        tracing::error!(cause = %cause, "prepare failed");
        if let Err(e) = self.journal.fail(cause) {
            tracing::error!(error = %e, "could not record the failed prepare");
        }
        self.prepare_failed.store(true, Ordering::SeqCst);
        self.report(ServiceStatus::Failed);
        Failure::Trove(TroveException::Error(format!("prepare failed: {cause}")))
    }

    fn volume_for(&self, device: Option<&str>, mount_point: Option<&str>) -> DataVolume {
        let mut v = self.volume.clone();
        if let Some(d) = device.filter(|d| !d.is_empty()) {
            v.device = PathBuf::from(d);
        }
        if let Some(m) = mount_point.filter(|m| !m.is_empty()) {
            v.mount_point = PathBuf::from(m);
        }
        v
    }

    /// Whether prepare has completed (heartbeats run only then).
    pub fn prepare_completed(&self) -> bool {
        self.journal.prepare_completed()
    }

    /// The datastore manager's name.
    pub fn datastore_name(&self) -> &'static str {
        self.datastore.manager()
    }

    fn report(&self, status: ServiceStatus) {
        *self.reported.lock().expect("status lock") = Some(status);
        self.conductor.heartbeat(status);
    }

    /// One periodic status report (the upstream `update_status` task).
    /// Skipped while a changing operation runs: it reports its own outcome.
    /// A backup is the exception: it only reads the datastore and can run
    /// for many minutes, longer than Trove's `agent_heartbeat_expiry`
    /// (60 s), after which Trove would take the guest for dead.
    /// Before a successful prepare only a failed one is reported.
    pub async fn report_status(&self) {
        let _guard = match self.ops.try_lock() {
            Ok(guard) => Some(guard),
            Err(_) if self.backing_up.load(Ordering::SeqCst) => None,
            Err(_) => return,
        };
        if !self.prepare_completed() {
            if self.prepare_failed.load(Ordering::SeqCst) {
                self.report(ServiceStatus::Failed);
            }
            return;
        }
        // A cluster member says `instance ready` until cluster_complete:
        // its ring is the taskmanager's to form, and the taskmanager waits
        // for exactly that status.
        let status = if self.journal.awaiting_cluster() {
            ServiceStatus::InstanceReady
        } else {
            self.datastore.status().await
        };
        self.report(status);
    }

    /// Handles one request from `call`.
    pub async fn handle(
        &self,
        method_name: &str,
        version: Option<&str>,
        args: Map<String, Value>,
        call: Call,
    ) -> Result<Value, Failure> {
        let notification = call.notification.clone();
        let ds = self.datastore.manager();
        let Some(method) = GuestMethod::from_name(method_name) else {
            // Not Trove's guest API: maybe a method of the datastore's own
            // cluster strategy.
            return self
                .datastore
                .custom_method(method_name, &args)
                .await
                .map_err(|e| match e {
                    DatastoreError::NoSuchMethod(name) => {
                        Failure::Oslo(driver_api::exception::no_such_method_failure(&name))
                    }
                    other => Failure::Trove(other.to_trove(ds)),
                });
        };
        if let Err(e) = request::check_version(version) {
            tracing::warn!(method = method_name, error = %e, "refused");
            return Err(Failure::Oslo(
                driver_api::exception::unsupported_version_failure(
                    version.unwrap_or(""),
                    method_name,
                ),
            ));
        }
        // Decoded once, here: past this point every argument is typed.
        let request = match GuestRequest::decode(method, args) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(method = method_name, error = %e, "refused");
                return Err(Failure::Trove(TroveException::BadRequest(e.to_string())));
            }
        };
        let _guard = if method.mutates() {
            Some(self.ops.lock().await)
        } else {
            None
        };
        let result = self.route(request, call).await;
        if reports_status_when_done(method) && self.prepare_completed() {
            // As upstream's end_restart: the new status goes out now, not
            // at the next report_interval; Trove's restart and reboot wait
            // for it.
            let status = self.datastore.status().await;
            self.report(status);
        }
        if ends_with_notification(method) {
            self.end_notification(notification, method == GuestMethod::Prepare, &result);
        }
        result
    }

    /// Ends the control plane's notification with the outcome.
    fn end_notification(
        &self,
        notification: Option<Value>,
        is_prepare: bool,
        result: &Result<Value, Failure>,
    ) {
        let Some(note) = notification else { return };
        match result {
            Ok(_) => self.conductor.notify_end(note, is_prepare),
            Err(f) => {
                let text = match f {
                    Failure::Trove(e) => e.message(),
                    Failure::Oslo(t) => t.clone(),
                };
                self.conductor
                    .notify_exc_info(note, &text, vec![text.clone()]);
            }
        }
    }

    async fn route(&self, request: GuestRequest, call: Call) -> Result<Value, Failure> {
        let ds = self.datastore.manager();
        let trove = |e: DatastoreError| Failure::Trove(e.to_trove(ds));
        let host_error = |e: host::FactError| Failure::Trove(TroveException::Error(e.to_string()));
        let volume_error =
            |e: crate::volume::VolumeError| Failure::Trove(TroveException::Error(e.to_string()));
        let unit = |r: driver_api::Result<()>| r.map(|_| Value::Null).map_err(trove);
        match request {
            GuestRequest::RpcPing => Ok(Value::Bool(true)),
            GuestRequest::GetFilesystemStats(_) => {
                host::filesystem_stats(&self.volume.mount_point).map_err(host_error)
            }
            GuestRequest::GetDiagnostics => host::diagnostics().map_err(host_error),
            GuestRequest::GetHwinfo => host::hwinfo().map_err(host_error),
            GuestRequest::Prepare(req) => self.prepare(*req, call).await.map(|_| Value::Null),
            GuestRequest::Restart => unit(self.datastore.restart().await),
            GuestRequest::StopDb(req) => unit(self.datastore.stop_db(&req).await),
            GuestRequest::StartDbWithConfChanges(req) => {
                unit(self.datastore.start_db_with_conf_changes(&req).await)
            }
            GuestRequest::ResetConfiguration(req) => {
                unit(self.datastore.reset_configuration(&req).await)
            }
            GuestRequest::UpdateOverrides(req) => unit(self.datastore.update_overrides(&req).await),
            GuestRequest::ApplyOverrides(req) => unit(self.datastore.apply_overrides(&req).await),
            GuestRequest::CreateBackup(req) => self.create_backup(req, call.auth_token).await,
            GuestRequest::ClusterComplete => {
                let status = self.datastore.cluster_complete().await.map_err(trove)?;
                if let Err(e) = self.journal.await_cluster(false) {
                    tracing::error!(error = %e, "could not clear the cluster-pending marker");
                }
                self.report(status);
                Ok(Value::Null)
            }
            GuestRequest::PreUpgrade => self.datastore.pre_upgrade().await.map_err(trove),
            GuestRequest::Upgrade(req) => unit(self.datastore.upgrade(&req).await),
            GuestRequest::PostUpgrade(req) => unit(self.datastore.post_upgrade(&req).await),
            GuestRequest::Rebuild(req) => {
                let status = self.datastore.rebuild(&req).await.map_err(trove)?;
                self.report(status);
                Ok(Value::Null)
            }
            GuestRequest::GuestLogList => self.datastore.guest_log_list().await.map_err(trove),
            GuestRequest::GuestLogAction(req) => {
                self.datastore.guest_log_action(&req).await.map_err(trove)
            }
            GuestRequest::MountVolume(req) => {
                let v = self.volume_for(req.device_path.as_deref(), req.mount_point.as_deref());
                crate::volume::ensure_mounted(&v.device, &v.mount_point, v.uid, v.gid, &v.options)
                    .await
                    .map(|_| Value::Null)
                    .map_err(volume_error)
            }
            GuestRequest::UnmountVolume(req) => {
                let v = self.volume_for(req.device_path.as_deref(), req.mount_point.as_deref());
                crate::volume::unmount(&v.mount_point)
                    .await
                    .map(|_| Value::Null)
                    .map_err(volume_error)
            }
            GuestRequest::ResizeFs(req) => {
                let v = self.volume_for(req.device_path.as_deref(), req.mount_point.as_deref());
                crate::volume::resize(&v.device, &v.mount_point, req.online, &v.options)
                    .await
                    .map(|_| Value::Null)
                    .map_err(volume_error)
            }
            GuestRequest::Other(GuestMethod::UpdateGuest, _) => Err(trove(
                DatastoreError::NotSupported(GuestMethod::UpdateGuest),
            )),
            GuestRequest::Other(other, args) => self
                .datastore
                .other_method(other, &args)
                .await
                .map_err(trove),
        }
    }

    /// `prepare`, as upstream's template: report `building`, run the
    /// driver's prepare within `state_change_wait_time`, mark completion,
    /// report the outcome. The request is journaled first, so an agent
    /// restarted mid-way can finish it. A repeated prepare after success is
    /// ignored.
    async fn prepare(&self, request: PrepareRequest, call: Call) -> Result<(), Failure> {
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

/// Operations that start, stop or restart the datastore: the status they
/// leave is reported at once (upstream's `end_restart` / `stop_db`).
fn reports_status_when_done(method: GuestMethod) -> bool {
    matches!(
        method,
        GuestMethod::Restart
            | GuestMethod::StopDb
            | GuestMethod::StartDbWithConfChanges
            | GuestMethod::ApplyOverrides
            | GuestMethod::UpdateOverrides
            | GuestMethod::ResetConfiguration
            | GuestMethod::Upgrade
    )
}

/// Methods upstream wraps in `EndNotification` (and `upgrade`): their
/// outcome is reported to the conductor when the control plane sent a
/// notification.
fn ends_with_notification(method: GuestMethod) -> bool {
    // `upgrade` too, though upstream's guests end none for it: its
    // failure (a refused version, a pull that failed) then reaches the
    // instance's fault through trove-conductor, where the tenant sees it.
    matches!(
        method,
        GuestMethod::Prepare
            | GuestMethod::Upgrade
            | GuestMethod::CreateDatabase
            | GuestMethod::DeleteDatabase
            | GuestMethod::ChangePasswords
            | GuestMethod::CreateUser
            | GuestMethod::DeleteUser
            | GuestMethod::UpdateAttributes
    )
}

#[cfg(test)]
mod tests;
