//! What a restarted agent needs to know about `prepare`, kept in the
//! guest's state directory (`agent_state_dir/<guest_id>`).
//!
//! - `prepare-start`, `prepare-end`: upstream's markers (began; finished
//!   successfully).
//! - `prepare-request.json` (0600: the request carries secrets such as the
//!   K2HR3 EXTDATA URL): the request of a prepare under way, with when it
//!   began and the control plane's notification. Written before the work
//!   starts and removed when prepare ends either way, so after a crash
//!   (SIGKILL, OOM, a VM reset) the restarted agent can finish it.
//! - `prepare-failed`: why the last prepare failed (no secrets), so the
//!   failure keeps being reported across restarts.
//! - `backup-running.json` (0600: it holds the caller's token): the backup
//!   under way. Trove keeps a `BUILDING` backup running, and refuses every
//!   action on its instance, until the guest reports an end; after a crash
//!   the restarted agent reports it `FAILED` and removes what it stored.
//! - `upgrade-running.json` (0600, as every request kept): the `upgrade`
//!   under way. Trove waits for `HEALTHY` and has already recorded the new
//!   version; after a crash the restarted agent runs it again to its end.
//!
//! Trove acknowledges the prepare cast before it runs (as oslo does): the
//! broker never delivers it again, so this file is the only copy.

use std::path::{Path, PathBuf};

use driver_api::request::{PrepareRequest, UpgradeRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conductor::now_epoch;

const START: &str = "prepare-start";
const END: &str = "prepare-end";
const REQUEST: &str = "prepare-request.json";
const FAILED: &str = "prepare-failed";
/// A cluster member prepared, waiting for `cluster_complete`.
const AWAITING_CLUSTER: &str = "cluster-pending";
const BACKUP: &str = "backup-running.json";
const UPGRADE: &str = "upgrade-running.json";

/// An upgrade under way, as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningUpgrade {
    /// When it began (seconds since the epoch).
    pub began: f64,
    /// The request, as the control plane sent it.
    pub args: UpgradeRequest,
    /// The context's `trove_notification`, to end it when it ends.
    #[serde(default)]
    pub notification: Option<Value>,
}

/// A backup under way, as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningBackup {
    /// Trove's backup id (also the prefix of every object it stores).
    pub id: String,
    /// When it began (seconds since the epoch).
    pub began: f64,
    /// The account's storage URL, if the request had one.
    #[serde(default)]
    pub swift_url: Option<String>,
    /// The container it stores into.
    pub container: String,
    /// The caller's token, to remove what was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Already reported `FAILED` (by the run that abandoned it at stop);
    /// what it stored is still to remove.
    #[serde(default)]
    pub reported: bool,
}

/// A prepare under way, as kept on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingPrepare {
    /// When it began (seconds since the epoch).
    pub began: f64,
    /// The request, as the control plane sent it (decrypted; kept under
    /// the name `args`, the shape of its arguments).
    pub args: PrepareRequest,
    /// The context's `trove_notification`, to end it when prepare ends.
    #[serde(default)]
    pub notification: Option<Value>,
    /// The caller's token (a restore reads the backup with it). The file
    /// is 0600 for this and the request's secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
}

/// What the state directory says about prepare.
#[derive(Debug, Clone, PartialEq)]
pub enum PrepareState {
    /// Never asked.
    NotStarted,
    /// Finished successfully.
    Completed,
    /// Failed, with the cause.
    Failed(String),
    /// Began and did not end: the request is here.
    Interrupted(Box<PendingPrepare>),
    /// Began and did not end, and the request is gone (or unreadable).
    InterruptedWithoutRequest,
}

/// The prepare files of one guest.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// The files in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Prepare finished successfully at some point.
    pub fn prepare_completed(&self) -> bool {
        self.path(END).exists()
    }

    /// What a starting agent finds.
    pub fn state(&self) -> PrepareState {
        if self.prepare_completed() {
            return PrepareState::Completed;
        }
        if let Ok(text) = std::fs::read_to_string(self.path(FAILED)) {
            return PrepareState::Failed(text.trim().to_owned());
        }
        match std::fs::read_to_string(self.path(REQUEST)) {
            Ok(text) => match serde_json::from_str::<PendingPrepare>(&text) {
                Ok(p) => PrepareState::Interrupted(Box::new(p)),
                Err(e) => {
                    tracing::warn!(error = %e, "the saved prepare request cannot be read");
                    PrepareState::InterruptedWithoutRequest
                }
            },
            Err(_) if self.path(START).exists() => PrepareState::InterruptedWithoutRequest,
            Err(_) => PrepareState::NotStarted,
        }
    }

    /// Prepare begins: the request is kept (0600) and the start marked.
    /// A failure of an earlier prepare is forgotten.
    pub fn begin(&self, pending: &PendingPrepare) -> std::io::Result<()> {
        self.keep(REQUEST, pending)?;
        remove(&self.path(FAILED))?;
        std::fs::write(self.path(START), format!("{}\n", pending.began))
    }

    /// Prepare succeeded.
    pub fn complete(&self) -> std::io::Result<()> {
        std::fs::write(self.path(END), format!("{}\n", now_epoch()))?;
        remove(&self.path(REQUEST))
    }

    /// Prepare left a cluster member ready (`instance ready`): until
    /// `cluster_complete`, that is its status, as upstream's
    /// `end_install(post_processing=True)` leaves it.
    pub fn await_cluster(&self, waiting: bool) -> std::io::Result<()> {
        if waiting {
            std::fs::create_dir_all(&self.dir)?;
            std::fs::write(self.path(AWAITING_CLUSTER), format!("{}\n", now_epoch()))
        } else {
            remove(&self.path(AWAITING_CLUSTER))
        }
    }

    /// Whether a cluster member still waits for `cluster_complete`.
    pub fn awaiting_cluster(&self) -> bool {
        self.path(AWAITING_CLUSTER).exists()
    }

    /// A backup begins (one at a time: the manager runs them in turn), or
    /// its record changes.
    pub fn begin_backup(&self, backup: &RunningBackup) -> std::io::Result<()> {
        self.keep(BACKUP, backup)
    }

    /// The backup an earlier run left unfinished: `Err` if its record
    /// cannot be read (it is still there).
    pub fn running_backup(&self) -> Option<Result<RunningBackup, RecordError>> {
        self.kept(BACKUP)
    }

    /// The backup's end was reported (or its record is beyond use).
    pub fn end_backup(&self) -> std::io::Result<()> {
        remove(&self.path(BACKUP))
    }

    /// An upgrade begins (one at a time: it mutates, so the manager runs
    /// it alone).
    pub fn begin_upgrade(&self, upgrade: &RunningUpgrade) -> std::io::Result<()> {
        self.keep(UPGRADE, upgrade)
    }

    /// The upgrade an earlier run left unfinished: `Err` if its record
    /// cannot be read (it is still there).
    pub fn running_upgrade(&self) -> Option<Result<RunningUpgrade, RecordError>> {
        self.kept(UPGRADE)
    }

    /// Keeps `record` as `name` (0600: records carry tokens and requests).
    fn keep(&self, name: &str, record: &impl Serialize) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let text = serde_json::to_string(record).map_err(std::io::Error::other)?;
        write_private(&self.path(name), text.as_bytes())
    }

    /// The record kept as `name`: `None` when there is none, `Err` when it
    /// cannot be read (it is still there).
    fn kept<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<Result<T, RecordError>> {
        match std::fs::read_to_string(self.path(name)) {
            Ok(text) => Some(serde_json::from_str(&text).map_err(RecordError::Parse)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(RecordError::Read(e))),
        }
    }

    /// The upgrade ended, either way.
    pub fn end_upgrade(&self) -> std::io::Result<()> {
        remove(&self.path(UPGRADE))
    }

    /// Prepare failed for `cause` (must hold no secret).
    pub fn fail(&self, cause: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        write_private(&self.path(FAILED), format!("{cause}\n").as_bytes())?;
        remove(&self.path(REQUEST))
    }
}

/// Why a record of the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file is there but cannot be read.
    #[error("read: {0}")]
    Read(std::io::Error),
    /// It is not what this agent writes (cut short by a crash, say).
    #[error("not valid: {0}")]
    Parse(serde_json::Error),
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes a file readable by its owner only, atomically (a crash leaves
/// the old file or the new one, never half of one).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn pending() -> PendingPrepare {
        let args: PrepareRequest = serde_json::from_value(serde_json::json!({
            "overrides": {"extdata-url": "https://k2hr3/v1/extdata/secret-token"},
            "backup_info": {"id": "b1", "swift_url": "http://swift/v1/AUTH_t", "type": "k2hdkc"},
        }))
        .unwrap();
        PendingPrepare {
            began: 1_800_000_000.5,
            args,
            notification: Some(serde_json::json!({"event_type": "trove.instance.create"})),
            auth_token: Some("gAAAA-token".into()),
        }
    }

    #[test]
    fn an_upgrade_is_kept_privately_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().join("g1"));
        assert!(j.running_upgrade().is_none());
        let upgrade = RunningUpgrade {
            began: 1_800_000_000.5,
            args: serde_json::from_value(serde_json::json!({
                "upgrade_info": {"datastore_version": "1.0.17", "kept": 1}
            }))
            .unwrap(),
            notification: Some(serde_json::json!({"event_type": "trove.instance.upgrade"})),
        };
        j.begin_upgrade(&upgrade).unwrap();
        let mode = std::fs::metadata(dir.path().join("g1").join(UPGRADE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(j.running_upgrade().unwrap().unwrap(), upgrade);
        j.end_upgrade().unwrap();
        assert!(j.running_upgrade().is_none());
        std::fs::write(dir.path().join("g1").join(UPGRADE), "{\"began\": 1").unwrap();
        assert!(matches!(
            j.running_upgrade(),
            Some(Err(RecordError::Parse(_)))
        ));
    }

    #[test]
    fn a_prepare_is_kept_privately_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().join("g1"));
        assert_eq!(j.state(), PrepareState::NotStarted);
        j.begin(&pending()).unwrap();
        assert_eq!(
            j.state(),
            PrepareState::Interrupted(Box::new(pending())),
            "a restart now finds the request"
        );
        let mode = std::fs::metadata(dir.path().join("g1").join(REQUEST))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the request holds secrets");
        // A request an older agent kept (the arguments as they came) reads
        // as the same typed request.
        let old = serde_json::json!({"began": 1_800_000_000.5,
            "args": {"overrides": {"extdata-url": "https://k2hr3/v1/extdata/secret-token"},
                     "backup_info": {"id": "b1", "swift_url": "http://swift/v1/AUTH_t", "type": "k2hdkc"}},
            "notification": {"event_type": "trove.instance.create"}, "auth_token": "gAAAA-token"});
        std::fs::write(dir.path().join("g1").join(REQUEST), old.to_string()).unwrap();
        assert_eq!(j.state(), PrepareState::Interrupted(Box::new(pending())));
        j.complete().unwrap();
        assert_eq!(j.state(), PrepareState::Completed);
        assert!(
            !dir.path().join("g1").join(REQUEST).exists(),
            "removed when prepare ends"
        );
    }

    #[test]
    fn a_failure_is_remembered_without_the_request_and_forgotten_by_a_new_prepare() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().to_path_buf());
        j.begin(&pending()).unwrap();
        j.fail("read K2HR3 EXTDATA: not an init script").unwrap();
        assert_eq!(
            j.state(),
            PrepareState::Failed("read K2HR3 EXTDATA: not an init script".into())
        );
        assert!(!dir.path().join(REQUEST).exists());
        j.begin(&pending()).unwrap();
        assert!(
            matches!(j.state(), PrepareState::Interrupted(_)),
            "a new prepare runs again"
        );
    }

    #[test]
    fn a_running_backup_is_kept_privately_until_its_end_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().join("g1"));
        assert!(j.running_backup().is_none());
        let b = RunningBackup {
            id: "b1".into(),
            began: 1_800_000_000.5,
            swift_url: Some("http://swift:8080/v1/AUTH_p".into()),
            container: "database_backups".into(),
            auth_token: Some("gAAAA-token".into()),
            reported: false,
        };
        j.begin_backup(&b).unwrap();
        assert_eq!(j.running_backup().unwrap().unwrap(), b);
        let mode = std::fs::metadata(dir.path().join("g1").join(BACKUP))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "it holds the caller's token");
        j.end_backup().unwrap();
        assert!(j.running_backup().is_none());
        j.end_backup().unwrap();
        std::fs::write(dir.path().join("g1").join(BACKUP), "{ half").unwrap();
        assert!(matches!(j.running_backup(), Some(Err(_))), "unreadable");
    }

    #[test]
    fn a_start_marker_without_a_request_is_an_interruption_that_cannot_resume() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().to_path_buf());
        std::fs::write(dir.path().join(START), "1\n").unwrap();
        assert_eq!(j.state(), PrepareState::InterruptedWithoutRequest);
        std::fs::write(dir.path().join(REQUEST), "{ half a fi").unwrap();
        assert_eq!(
            j.state(),
            PrepareState::InterruptedWithoutRequest,
            "unreadable is gone"
        );
    }
}
