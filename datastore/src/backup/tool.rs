//! `k2hlinetool` in the node's containers, on a private work directory
//! of the data volume: what takes the archive and loads it back.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use driver_api::host::{Containers, HostError};

use crate::paths::CONTAINER_DATA_DIR;

/// The longest an `ar put` or `ar load` may take.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(3600);

/// A directory on the data volume only the database user reads, removed
/// with everything in it when dropped (whatever happened).
pub struct WorkDir {
    host: PathBuf,
    container: String,
    uid: u32,
    gid: u32,
}

impl WorkDir {
    /// `<data volume>/<name>`, made anew (a leftover of an interrupted
    /// run is removed first).
    pub fn new(data_dir: &Path, name: &str, uid: u32, gid: u32) -> std::io::Result<Self> {
        let host = data_dir.join(name);
        if host.exists() {
            tracing::warn!(dir = %host.display(), "removing a work directory an earlier run left");
            std::fs::remove_dir_all(&host)?;
        }
        std::fs::create_dir(&host)?;
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o700))?;
        std::os::unix::fs::chown(&host, Some(uid), Some(gid))?;
        Ok(Self {
            container: format!("{CONTAINER_DATA_DIR}/{name}"),
            host,
            uid,
            gid,
        })
    }

    /// On the host.
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// `name` in it, as the containers see it.
    pub fn in_container(&self, name: &str) -> String {
        format!("{}/{name}", self.container)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.host) {
            tracing::warn!(dir = %self.host.display(), error = %e, "could not remove the work directory");
        }
    }
}

/// Removes the backup work directories (`.backup-<id>`) a run that did
/// not end left on the data volume: each held a whole archive. Called at
/// agent start, when no backup runs.
pub fn remove_leftover_backups(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && name.to_string_lossy().starts_with(".backup-") {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::warn!(dir = %entry.path().display(), "removed the work directory of an interrupted backup")
                }
                Err(e) => {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove the work directory of an interrupted backup")
                }
            }
        }
    }
}

/// Why `k2hlinetool` did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Its command file could not be made ready.
    #[error("{what} {path}: {source}")]
    CommandFile {
        /// `write` or `chown`.
        what: &'static str,
        /// The file on the host.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The container engine could not run it.
    #[error(transparent)]
    Exec(#[from] HostError),
    /// It ran and reported an error (or exited non-zero).
    #[error("k2hlinetool ({commands}) exited {code}: {detail}")]
    Failed {
        /// The commands it was given.
        commands: String,
        /// Its exit code.
        code: i64,
        /// Its error lines, else its stderr.
        detail: String,
    },
}

/// Runs `k2hlinetool -f <k2hfile> [layout] -run <commands>` in
/// `container`. k2hlinetool answers a failed command with an `[ERR]` line
/// and exit code 0: the output is read, and any error line fails the run.
pub async fn run(
    containers: &dyn Containers,
    container: &str,
    work: &WorkDir,
    k2hfile: &str,
    layout: &[String],
    commands: &str,
) -> Result<(), ToolError> {
    let cmd_host = work.host().join("commands");
    let file_error = |what, source| ToolError::CommandFile {
        what,
        path: cmd_host.clone(),
        source,
    };
    std::fs::write(&cmd_host, format!("{commands}\nexit\n")).map_err(|e| file_error("write", e))?;
    std::os::unix::fs::chown(&cmd_host, Some(work.uid), Some(work.gid))
        .map_err(|e| file_error("chown", e))?;
    let mut argv = vec!["k2hlinetool".to_owned(), "-f".into(), k2hfile.to_owned()];
    argv.extend(layout.iter().cloned());
    argv.extend(["-run".to_owned(), work.in_container("commands")]);
    let out = containers.exec(container, &argv, TOOL_TIMEOUT).await?;
    let errors: Vec<&str> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .map(str::trim)
        .filter(|l| l.starts_with("[ERR]") || l.starts_with("ERROR"))
        .collect();
    if out.code != 0 || !errors.is_empty() {
        return Err(ToolError::Failed {
            commands: commands.to_owned(),
            code: out.code,
            detail: if errors.is_empty() {
                out.stderr.trim().to_owned()
            } else {
                errors.join("; ")
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backup_work_directories_are_swept() {
        let data = tempfile::tempdir().unwrap();
        let d = data.path();
        std::fs::create_dir_all(d.join(".backup-b1")).unwrap();
        std::fs::write(d.join(".backup-b1/k2hdkc.ar"), "archive").unwrap();
        std::fs::create_dir_all(d.join(".restore-b2")).unwrap();
        std::fs::write(d.join(".backup-notes"), "a file").unwrap();
        std::fs::write(d.join("k2hdkc.k2h"), "data").unwrap();
        remove_leftover_backups(d);
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".backup-notes", ".restore-b2", "k2hdkc.k2h"]);
    }
}
