//! The guest manager: routes each guest API request to the host (ping,
//! stats, diagnostics) or the datastore driver, runs changing operations
//! one at a time, keeps the prepare markers, and reports status.
//! Trove's counterpart is `trove/guestagent/datastore/manager.py`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use driver_api::request::{self, GuestMethod};
use driver_api::GuestRequest;
use driver_api::{Datastore, DatastoreError, ServiceStatus, TroveException};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::conductor::Conductor;
use crate::config::{BackupOptions, Secret};
use crate::host;
use crate::journal::Journal;

mod backup;
mod logs;
mod prepare;
mod samples;
mod upgrade;

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
    /// The context's `service_catalog`: where the caller's Swift is, for
    /// the guest log API.
    pub service_catalog: Option<Value>,
    /// The context's `project_id` (with `swift_url`, the caller's account).
    pub project_id: Option<String>,
    /// The context's `is_admin`: admins see every guest log.
    pub is_admin: bool,
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
    /// Trove's guest log API, once configured ([`Manager::with_guest_logs`]).
    logs: Option<logs::LogService>,
    /// What the Prometheus endpoint serves.
    metrics: Arc<crate::metrics::Metrics>,
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
            logs: None,
            metrics: Default::default(),
        }
    }

    /// Counts into `metrics` (shared with the broker link).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The agent's metrics (counted as it works).
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.metrics.clone()
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
        self.metrics.heartbeat(status.description());
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
            GuestRequest::Upgrade(req) => self.upgrade(req, call.notification).await,
            GuestRequest::PostUpgrade(req) => unit(self.datastore.post_upgrade(&req).await),
            GuestRequest::Rebuild(req) => {
                let status = self.datastore.rebuild(&req).await.map_err(trove)?;
                self.report(status);
                Ok(Value::Null)
            }
            GuestRequest::GuestLogList => self.guest_log_list(&call).await,
            GuestRequest::GuestLogAction(req) => self.guest_log_action(&req, &call).await,
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
