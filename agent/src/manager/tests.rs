//! Tests of the manager: prepare, its journal, backups and the periodic
//! report, against a recording conductor and a scripted driver.
use super::*;
use crate::conductor::tests::start as recording_conductor;
use async_trait::async_trait;
use driver_api::request::CreateBackupRequest;
use driver_api::{BackupAccess, BackupOutcome};
use serde_json::json;
use std::sync::atomic::AtomicUsize;
use tokio::sync::Notify;

/// A datastore whose backup, restart and upgrade last until released,
/// which counts the status probes the periodic report makes and keeps the
/// versions it was asked to upgrade to (it has no image for `1.0.99`).
#[derive(Default)]
struct Slow {
    probes: AtomicUsize,
    release: Notify,
    upgrades: std::sync::Mutex<Vec<String>>,
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
    async fn upgrade(&self, request: &request::UpgradeRequest) -> driver_api::Result<()> {
        let to = request.upgrade_info.datastore_version.clone();
        self.upgrades.lock().unwrap().push(to.clone());
        if to == "1.0.99" {
            return Err(DatastoreError::Failed {
                context: "upgrade: get the image k2hdkc:1.0.99".into(),
                cause: "manifest unknown".into(),
            });
        }
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
        ..Call::default()
    };
    let args = args.as_object().cloned().unwrap_or_default();
    let m2 = m.clone();
    let task = tokio::spawn(async move { m2.handle(method, None, args, call).await });
    while m.ops.try_lock().is_ok() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task
}

/// A manager over a slow datastore on a fresh state directory, with the
/// casts it sends recorded.
fn slow_manager() -> (
    tempfile::TempDir,
    Arc<Slow>,
    Arc<Manager>,
    crate::conductor::tests::Recorder,
) {
    let state = tempfile::tempdir().unwrap();
    let (conductor, _task, rec) = recording_conductor();
    let ds = Arc::new(Slow::default());
    let m = manager(ds.clone(), conductor, state.path());
    (state, ds, m, rec)
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
    let (state, ds, m, rec) = slow_manager();
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
    let (_state, ds, m, rec) = slow_manager();

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

/// An upgrade that fails (here: no image for the version) reaches
/// trove-conductor with the control plane's notification, which Trove
/// keeps as the instance's fault.
#[tokio::test(start_paused = true)]
async fn a_failed_upgrade_is_reported_with_its_cause() {
    let (_state, _ds, m, rec) = slow_manager();
    let call = Call {
        notification: Some(json!({"event_type": "instance_upgrade", "instance_id": "i1"})),
        auth_token: None,
        ..Call::default()
    };
    let args = json!({"upgrade_info": {"datastore_version": "1.0.99"}});
    let out = m
        .handle("upgrade", None, args.as_object().cloned().unwrap(), call)
        .await;
    assert!(out.is_err(), "{out:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = rec.args_of("notify_exc_info");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]["message"].as_str().unwrap().contains("upgrade"),
        "{sent:?}"
    );
}

/// An upgrade the agent's death cut short is run again when the agent
/// starts: Trove already shows the new version and waits for HEALTHY, so
/// the node must get there; its end goes to the conductor as the cast's
/// would have, and the record is gone.
#[tokio::test(start_paused = true)]
async fn an_upgrade_cut_short_is_run_again_at_start_and_its_end_reported() {
    let (state, ds, m, _rec) = slow_manager();
    let call = Call {
        notification: Some(json!({"event_type": "instance_upgrade", "instance_id": "i1"})),
        auth_token: None,
        ..Call::default()
    };
    let args = json!({"upgrade_info": {"datastore_version": "1.0.17"}});
    let m2 = m.clone();
    let cut = tokio::spawn(async move {
        m2.handle("upgrade", None, args.as_object().cloned().unwrap(), call)
            .await
    });
    while ds.upgrades.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cut.abort();
    let _ = cut.await;
    assert!(matches!(m.journal.running_upgrade(), Some(Ok(_))), "kept");
    drop(m);

    ds.release.notify_one();
    let (m, rec) = started_again(ds.clone(), state.path()).await;
    assert_eq!(*ds.upgrades.lock().unwrap(), vec!["1.0.17", "1.0.17"]);
    assert!(
        m.journal.running_upgrade().is_none(),
        "forgotten once ended"
    );
    assert_eq!(rec.args_of("notify_end").len(), 1, "its end reported");
    assert!(rec.args_of("notify_exc_info").is_empty());
    assert!(
        rec.heartbeats().iter().any(|(_, s, _)| s == "healthy"),
        "the status goes out at once"
    );
}

/// The guest log API needs the caller's token and Swift: a request
/// without them is refused naming what is missing, before any log is
/// read; a log that does not exist is Trove's NotFound.
#[tokio::test]
async fn guest_log_requests_name_what_they_lack() {
    let (state, ds, _m, _rec) = slow_manager();
    let (conductor, _task, _rec) = recording_conductor();
    let options = crate::config::GuestLogOptions {
        container: "database_logs".into(),
        limit: 1_000_000,
        expiry: 60,
        exposed: vec!["all".into()],
        swift_url: None,
        swift_service_type: "object-store".into(),
        swift_endpoint_type: "publicURL".into(),
        log_file: Some(state.path().join("agent.log")),
    };
    let m = Arc::try_unwrap(manager(ds, conductor, state.path()))
        .ok()
        .unwrap()
        .with_guest_logs(&options, "g1", false);
    let list = |call: Call| m.handle("guest_log_list", None, Map::new(), call);
    let e = list(Call::default()).await.unwrap_err();
    assert!(
        e.to_failure_text().contains("no token"),
        "{}",
        e.to_failure_text()
    );
    let no_catalog = Call {
        auth_token: Some(Secret::new("t")),
        ..Call::default()
    };
    let e = list(no_catalog).await.unwrap_err();
    assert!(
        e.to_failure_text().contains("no object-store endpoint"),
        "{}",
        e.to_failure_text()
    );
    let args = json!({"log_name": "nope", "enable": false, "disable": false, "publish": true, "discard": false});
    let e = m
        .handle(
            "guest_log_action",
            None,
            args.as_object().cloned().unwrap(),
            Call {
                auth_token: Some(Secret::new("t")),
                service_catalog: Some(json!([{"type": "object-store", "endpoints": [{"publicURL": "http://127.0.0.1:9/v1/AUTH_p"}]}])),
                ..Call::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        e.to_failure_text().contains("NotFound") && e.to_failure_text().contains("nope"),
        "{}",
        e.to_failure_text()
    );
}
