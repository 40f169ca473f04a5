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
    pub async fn ensure_volume(&self) -> Result<(), String> {
        let v = &self.volume;
        if v.device.exists() {
            let done =
                crate::volume::ensure_mounted(&v.device, &v.mount_point, v.uid, v.gid, &v.options)
                    .await?;
            tracing::info!(device = %v.device.display(), mount_point = %v.mount_point.display(), done, "data volume");
        } else {
            std::fs::create_dir_all(&v.mount_point)
                .map_err(|e| format!("create {}: {e}", v.mount_point.display()))?;
            nix::unistd::chown(
                &v.mount_point,
                Some(nix::unistd::Uid::from_raw(v.uid)),
                Some(nix::unistd::Gid::from_raw(v.gid)),
            )
            .map_err(|e| format!("chown {}: {e}", v.mount_point.display()))?;
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
                        let result = self.run_prepare(pending, left).await;
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
        let host_error = |e: String| Failure::Trove(TroveException::Error(e));
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
                    .map_err(host_error)
            }
            GuestRequest::UnmountVolume(req) => {
                let v = self.volume_for(req.device_path.as_deref(), req.mount_point.as_deref());
                crate::volume::unmount(&v.mount_point)
                    .await
                    .map(|_| Value::Null)
                    .map_err(host_error)
            }
            GuestRequest::ResizeFs(req) => {
                let v = self.volume_for(req.device_path.as_deref(), req.mount_point.as_deref());
                crate::volume::resize(&v.device, &v.mount_point, req.online, &v.options)
                    .await
                    .map(|_| Value::Null)
                    .map_err(host_error)
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
            self.datastore.prepare(&req, access).await
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
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conductor::tests::start as recording_conductor;
    use async_trait::async_trait;
    use driver_api::request::CreateBackupRequest;
    use driver_api::BackupOutcome;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Notify;

    /// A datastore whose backup and restart last until released, and
    /// which counts the status probes the periodic report makes.
    #[derive(Default)]
    struct Slow {
        probes: AtomicUsize,
        release: Notify,
    }

    #[async_trait]
    impl Datastore for Slow {
        fn manager(&self) -> &'static str {
            "k2hdkc"
        }
        async fn status(&self) -> ServiceStatus {
            self.probes.fetch_add(1, Ordering::SeqCst);
            ServiceStatus::Healthy
        }
        async fn restart(&self) -> driver_api::Result<()> {
            self.release.notified().await;
            Ok(())
        }
        async fn create_backup(
            &self,
            _request: &CreateBackupRequest,
            _backups: BackupAccess<'_>,
        ) -> driver_api::Result<BackupOutcome> {
            self.release.notified().await;
            Ok(BackupOutcome {
                location: "http://swift/v1/AUTH_t/backups/b1.gz".into(),
                checksum: Some("0".repeat(32)),
                size_gb: 0.1,
            })
        }
    }

    fn manager(ds: Arc<Slow>, conductor: Conductor, state: &std::path::Path) -> Arc<Manager> {
        let journal = Journal::new(state.to_owned());
        journal.complete().unwrap();
        Arc::new(Manager::new(
            ds,
            conductor,
            DataVolume {
                device: state.join("no-device"),
                mount_point: state.to_owned(),
                uid: nix::unistd::getuid().as_raw(),
                gid: nix::unistd::getgid().as_raw(),
                options: Default::default(),
            },
            journal,
            Duration::from_secs(60),
            BackupOptions {
                swift_container: "backups".into(),
                segment_max_size: crate::config::MIN_SEGMENT_SIZE,
                aes_cbc_key: None,
                swift_api_insecure: false,
            },
        ))
    }

    /// Starts `method` and returns once it holds the operation lock.
    async fn begin(
        m: &Arc<Manager>,
        method: &'static str,
        args: Value,
    ) -> tokio::task::JoinHandle<Result<Value, Failure>> {
        let call = Call {
            notification: None,
            auth_token: Some(Secret::new("a-token")),
        };
        let args = args.as_object().cloned().unwrap_or_default();
        let m2 = m.clone();
        let task = tokio::spawn(async move { m2.handle(method, None, args, call).await });
        while m.ops.try_lock().is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task
    }

    /// A manager whose backup `id` was cut short mid-way (its task
    /// aborted, as a dying process or a stop's abort leaves it).
    async fn backup_cut_short(
        id: &str,
    ) -> (
        tempfile::TempDir,
        Arc<Slow>,
        Arc<Manager>,
        crate::conductor::tests::Recorder,
    ) {
        let state = tempfile::tempdir().unwrap();
        let (conductor, _task, rec) = recording_conductor();
        let ds = Arc::new(Slow::default());
        let m = manager(ds.clone(), conductor, state.path());
        let backup = begin(
            &m,
            "create_backup",
            json!({"backup_info": {"id": id, "swift_url": "http://127.0.0.1:9/v1/AUTH_t"}}),
        )
        .await;
        backup.abort();
        let _ = backup.await;
        (state, ds, m, rec)
    }

    /// A new manager on the same state, started (the agent's next run).
    async fn started_again(
        ds: Arc<Slow>,
        state: &std::path::Path,
    ) -> (Arc<Manager>, crate::conductor::tests::Recorder) {
        let (conductor, _task, rec) = recording_conductor();
        let m = manager(ds, conductor, state);
        m.start().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        (m, rec)
    }

    /// A backup outlasting `agent_heartbeat_expiry` must not make the
    /// guest look dead; a restart's own outcome still supersedes the
    /// periodic report.
    #[tokio::test(start_paused = true)]
    async fn the_periodic_report_goes_on_during_a_backup_but_not_a_restart() {
        let state = tempfile::tempdir().unwrap();
        let (conductor, _task, rec) = recording_conductor();
        let ds = Arc::new(Slow::default());
        let m = manager(ds.clone(), conductor, state.path());

        let backup = begin(
            &m,
            "create_backup",
            json!({"backup_info": {"id": "b1", "swift_url": "http://swift/v1/AUTH_t"}}),
        )
        .await;
        for _ in 0..3 {
            m.report_status().await;
        }
        assert_eq!(
            ds.probes.load(Ordering::SeqCst),
            3,
            "a report per round during the backup"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            rec.heartbeats().iter().any(|(_, s, _)| s == "healthy"),
            "heartbeats left during the backup"
        );
        ds.release.notify_one();
        backup.await.unwrap().unwrap();
        assert!(
            !m.backing_up.load(Ordering::SeqCst),
            "the flag falls with the backup"
        );

        let restart = begin(&m, "restart", json!({})).await;
        let before = ds.probes.load(Ordering::SeqCst);
        for _ in 0..3 {
            m.report_status().await;
        }
        assert_eq!(
            ds.probes.load(Ordering::SeqCst),
            before,
            "no report during a restart"
        );
        ds.release.notify_one();
        restart.await.unwrap().unwrap();
    }

    /// A backup the agent did not finish (its process died) would stay
    /// BUILDING in Trove, and Trove would refuse every action on the
    /// instance: the next start reports it FAILED and forgets it.
    #[tokio::test(start_paused = true)]
    async fn a_backup_left_running_is_reported_failed_at_the_next_start() {
        // The process dies mid-backup.
        let (state, ds, m, rec) = backup_cut_short("b1").await;
        let running = m.journal.running_backup().expect("kept").unwrap();
        assert_eq!(running.id, "b1");
        assert_eq!(running.container, "backups", "the configured container");
        drop(m);

        let (m, rec2) = started_again(ds, state.path()).await;
        let updates = rec2.args_of("update_backup");
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert_eq!(updates[0]["backup_id"], "b1");
        assert_eq!(updates[0]["state"], "FAILED");
        assert_eq!(updates[0]["success"], false);
        assert!(
            m.journal.running_backup().is_none(),
            "forgotten once reported"
        );
        assert!(
            rec.args_of("update_backup")
                .iter()
                .all(|u| u["state"] == "BUILDING"),
            "the first run reported no end"
        );
    }

    /// A backup cut short by the stop's graceful_shutdown_timeout is
    /// reported at stop; the next start only removes what it stored.
    #[tokio::test(start_paused = true)]
    async fn a_backup_abandoned_at_stop_is_reported_then_and_not_again() {
        let (state, ds, m, rec) = backup_cut_short("b2").await;
        m.end_abandoned_backup();
        m.end_abandoned_backup();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let ends: Vec<Value> = rec
            .args_of("update_backup")
            .into_iter()
            .filter(|u| u["state"] != "BUILDING")
            .collect();
        assert_eq!(ends.len(), 1, "reported once: {ends:?}");
        assert_eq!(
            (ends[0]["backup_id"].as_str(), ends[0]["state"].as_str()),
            (Some("b2"), Some("FAILED"))
        );
        assert!(m.journal.running_backup().unwrap().unwrap().reported);
        drop(m);

        let (m, rec2) = started_again(ds, state.path()).await;
        assert!(
            rec2.args_of("update_backup").is_empty(),
            "not reported twice"
        );
        assert!(
            m.journal.running_backup().is_none(),
            "forgotten at the next start"
        );
    }
}
