//! The guest manager: routes each guest API request to the host (ping,
//! stats, diagnostics) or the datastore driver, runs changing operations
//! one at a time, keeps the prepare markers, and reports status.
//! Trove's counterpart is `trove/guestagent/datastore/manager.py`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use driver_api::request::{self, GuestMethod};
use driver_api::{Datastore, DatastoreError, ServiceStatus, TroveException};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use crate::conductor::Conductor;
use crate::host;

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

/// The prepare markers: `prepare-start` when prepare began, `prepare-end`
/// when it finished successfully, so a restarted agent knows.
#[derive(Debug, Clone)]
pub struct Markers {
    dir: PathBuf,
}

impl Markers {
    /// Markers kept in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    /// Prepare finished successfully at some point.
    pub fn prepare_completed(&self) -> bool {
        self.path("prepare-end").exists()
    }
    fn mark(&self, name: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        std::fs::write(self.path(name), format!("{}\n", crate::conductor::now_epoch()))
    }
    fn begin(&self) -> std::io::Result<()> {
        self.mark("prepare-start")
    }
    fn end(&self) -> std::io::Result<()> {
        self.mark("prepare-end")
    }
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
    markers: Markers,
    prepare_timeout: Duration,
    /// Held by every operation that changes the datastore.
    ops: Mutex<()>,
    /// The status last reported, for `status()` while an operation runs.
    reported: std::sync::Mutex<Option<ServiceStatus>>,
}

impl Manager {
    /// A manager over `datastore`.
    pub fn new(
        datastore: Arc<dyn Datastore>,
        conductor: Conductor,
        volume: DataVolume,
        markers: Markers,
        prepare_timeout: Duration,
    ) -> Self {
        Self { datastore, conductor, volume, markers, prepare_timeout, ops: Mutex::new(()), reported: Default::default() }
    }

    /// The configured data volume, mounted (upstream does this at every
    /// agent start, before serving). Without a device (no Cinder volume),
    /// the mount point is a plain directory owned by the database user.
    pub async fn ensure_volume(&self) -> Result<(), String> {
        let v = &self.volume;
        if v.device.exists() {
            let done = crate::volume::ensure_mounted(&v.device, &v.mount_point, v.uid, v.gid, &v.options).await?;
            tracing::info!(device = %v.device.display(), mount_point = %v.mount_point.display(), done, "data volume");
        } else {
            std::fs::create_dir_all(&v.mount_point).map_err(|e| format!("create {}: {e}", v.mount_point.display()))?;
            nix::unistd::chown(&v.mount_point, Some(nix::unistd::Uid::from_raw(v.uid)), Some(nix::unistd::Gid::from_raw(v.gid)))
                .map_err(|e| format!("chown {}: {e}", v.mount_point.display()))?;
            tracing::info!(device = %v.device.display(), mount_point = %v.mount_point.display(), "no data volume device: using the directory");
        }
        Ok(())
    }

    /// At agent start: the data volume; on a prepared guest, the driver
    /// resumes too.
    pub async fn start(&self) {
        let _guard = self.ops.lock().await;
        if let Err(e) = self.ensure_volume().await {
            tracing::error!(error = %e, "data volume not ready");
        }
        if self.prepare_completed() {
            tracing::info!("prepare completed earlier; resuming");
            self.datastore.resume().await;
        }
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
        self.markers.prepare_completed()
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
    pub async fn report_status(&self) {
        if !self.prepare_completed() {
            return;
        }
        let Ok(_guard) = self.ops.try_lock() else { return };
        let status = self.datastore.status().await;
        self.report(status);
    }

    /// Handles one request. `notification` is the context's
    /// `trove_notification`, if the control plane sent one.
    pub async fn handle(&self, method_name: &str, version: Option<&str>, args: Map<String, Value>, notification: Option<Value>) -> Result<Value, Failure> {
        let ds = self.datastore.manager();
        let Some(method) = GuestMethod::from_name(method_name) else {
            // Not Trove's guest API: maybe a method of the datastore's own
            // cluster strategy.
            return self.datastore.custom_method(method_name, &args).await.map_err(|e| match e {
                DatastoreError::NoSuchMethod(name) => Failure::Oslo(driver_api::exception::no_such_method_failure(&name)),
                other => Failure::Trove(other.to_trove(ds)),
            });
        };
        if let Err(e) = request::check_version(version) {
            tracing::warn!(method = method_name, error = %e, "refused");
            return Err(Failure::Oslo(driver_api::exception::unsupported_version_failure(version.unwrap_or(""), method_name)));
        }
        let _guard = if method.mutates() { Some(self.ops.lock().await) } else { None };
        let result = self.route(method, args, notification.clone()).await;
        if let (Some(note), true) = (notification, ends_with_notification(method)) {
            match &result {
                Ok(_) => self.conductor.notify_end(note, method == GuestMethod::Prepare),
                Err(f) => {
                    let text = match f {
                        Failure::Trove(e) => e.message(),
                        Failure::Oslo(t) => t.clone(),
                    };
                    self.conductor.notify_exc_info(note, &text, vec![text.clone()]);
                }
            }
        }
        result
    }

    async fn route(&self, method: GuestMethod, args: Map<String, Value>, _notification: Option<Value>) -> Result<Value, Failure> {
        let ds = self.datastore.manager();
        let trove = |e: DatastoreError| Failure::Trove(e.to_trove(ds));
        let bad = |e: request::RequestError| Failure::Trove(TroveException::BadRequest(e.to_string()));
        let host_error = |e: String| Failure::Trove(TroveException::Error(e));
        let unit = |r: driver_api::Result<()>| r.map(|_| Value::Null).map_err(trove);
        match method {
            GuestMethod::RpcPing => Ok(Value::Bool(true)),
            GuestMethod::GetFilesystemStats => {
                let _req: request::FilesystemStatsRequest = request::parse_args(method, args).map_err(bad)?;
                host::filesystem_stats(&self.volume.mount_point).map_err(host_error)
            }
            GuestMethod::GetDiagnostics => host::diagnostics().map_err(host_error),
            GuestMethod::GetHwinfo => host::hwinfo().map_err(host_error),
            GuestMethod::Prepare => {
                let req: request::PrepareRequest = request::parse_args(method, args).map_err(bad)?;
                self.prepare(req).await.map(|_| Value::Null)
            }
            GuestMethod::Restart => unit(self.datastore.restart().await),
            GuestMethod::StopDb => {
                let req = request::parse_args(method, args).map_err(bad)?;
                unit(self.datastore.stop_db(&req).await)
            }
            GuestMethod::StartDbWithConfChanges => {
                let req = request::parse_args(method, args).map_err(bad)?;
                unit(self.datastore.start_db_with_conf_changes(&req).await)
            }
            GuestMethod::ResetConfiguration => {
                let req = request::parse_args(method, args).map_err(bad)?;
                unit(self.datastore.reset_configuration(&req).await)
            }
            GuestMethod::UpdateOverrides => {
                let req = request::parse_args(method, args).map_err(bad)?;
                unit(self.datastore.update_overrides(&req).await)
            }
            GuestMethod::ApplyOverrides => {
                let req = request::parse_args(method, args).map_err(bad)?;
                unit(self.datastore.apply_overrides(&req).await)
            }
            GuestMethod::CreateBackup => {
                let req = request::parse_args(method, args).map_err(bad)?;
                self.datastore
                    .create_backup(&req)
                    .await
                    .map(|o| json!({"location": o.location, "checksum": o.checksum, "size": o.size_gb}))
                    .map_err(trove)
            }
            GuestMethod::ClusterComplete => {
                let status = self.datastore.cluster_complete().await.map_err(trove)?;
                self.report(status);
                Ok(Value::Null)
            }
            GuestMethod::PreUpgrade => self.datastore.pre_upgrade().await.map_err(trove),
            GuestMethod::Upgrade => {
                let req = request::parse_args(method, args).map_err(bad)?;
                unit(self.datastore.upgrade(&req).await)
            }
            GuestMethod::PostUpgrade => {
                let req = request::parse_args(method, args).map_err(bad)?;
                unit(self.datastore.post_upgrade(&req).await)
            }
            GuestMethod::Rebuild => {
                let req = request::parse_args(method, args).map_err(bad)?;
                let status = self.datastore.rebuild(&req).await.map_err(trove)?;
                self.report(status);
                Ok(Value::Null)
            }
            GuestMethod::GuestLogList => self.datastore.guest_log_list().await.map_err(trove),
            GuestMethod::GuestLogAction => {
                let req = request::parse_args(method, args).map_err(bad)?;
                self.datastore.guest_log_action(&req).await.map_err(trove)
            }
            GuestMethod::MountVolume => {
                let req: request::VolumeRequest = request::parse_args(method, args).map_err(bad)?;
                let v = self.volume_for(req.device_path.as_deref(), req.mount_point.as_deref());
                crate::volume::ensure_mounted(&v.device, &v.mount_point, v.uid, v.gid, &v.options).await.map(|_| Value::Null).map_err(host_error)
            }
            GuestMethod::UnmountVolume => {
                let req: request::VolumeRequest = request::parse_args(method, args).map_err(bad)?;
                let v = self.volume_for(req.device_path.as_deref(), req.mount_point.as_deref());
                crate::volume::unmount(&v.mount_point).await.map(|_| Value::Null).map_err(host_error)
            }
            GuestMethod::ResizeFs => {
                let req: request::ResizeFsRequest = request::parse_args(method, args).map_err(bad)?;
                let v = self.volume_for(req.device_path.as_deref(), req.mount_point.as_deref());
                crate::volume::resize(&v.device, &v.mount_point, req.online, &v.options).await.map(|_| Value::Null).map_err(host_error)
            }
            GuestMethod::UpdateGuest => Err(trove(DatastoreError::NotSupported(method))),
            other => self.datastore.other_method(other, &args).await.map_err(trove),
        }
    }

    /// `prepare`, as upstream's template: report `building`, run the
    /// driver's prepare within `state_change_wait_time`, mark completion,
    /// report the outcome. A re-delivered prepare after success is ignored.
    async fn prepare(&self, req: request::PrepareRequest) -> Result<(), Failure> {
        let ds = self.datastore.manager();
        if self.markers.prepare_completed() {
            tracing::info!("prepare already completed on this guest; ignoring the repeated request");
            return Ok(());
        }
        if let Err(e) = self.markers.begin() {
            tracing::warn!(error = %e, "could not write the prepare-start marker");
        }
        self.report(ServiceStatus::Building);
        tracing::info!(datastore = ds, version = req.ds_version.as_deref().unwrap_or("-"), "prepare started");
        let work = async {
            self.ensure_volume().await.map_err(|e| DatastoreError::failed("prepare the data volume", e))?;
            self.datastore.prepare(&req).await
        };
        let outcome = match tokio::time::timeout(self.prepare_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(DatastoreError::failed("prepare", format!("not finished within state_change_wait_time ({:?})", self.prepare_timeout))),
        };
        match outcome {
            Ok(status) => {
                if let Err(e) = self.markers.end() {
                    tracing::error!(error = %e, "could not write the prepare-end marker; a restarted agent would prepare again");
                }
                tracing::info!(status = %status, "prepare finished");
                self.report(status);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "prepare failed");
                self.report(ServiceStatus::Failed);
                Err(Failure::Trove(e.to_trove(ds)))
            }
        }
    }
}

/// Methods upstream wraps in `EndNotification`: their outcome is reported
/// to the conductor when the control plane sent a notification.
fn ends_with_notification(method: GuestMethod) -> bool {
    matches!(
        method,
        GuestMethod::Prepare
            | GuestMethod::CreateDatabase
            | GuestMethod::DeleteDatabase
            | GuestMethod::ChangePasswords
            | GuestMethod::CreateUser
            | GuestMethod::DeleteUser
            | GuestMethod::UpdateAttributes
    )
}
