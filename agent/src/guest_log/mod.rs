//! Trove's guest log API (`guest_log_list`, `guest_log_action`) as
//! upstream's guest agent answers it (trove 26.0.0
//! `guestagent/guest_log.py`, `guestagent/datastore/manager.py`), so that
//! `openstack database log list/show/set --publish/--discard`, `log tail`
//! and `log save` work unchanged:
//!
//! - each log is a file on the guest that only grows (or is rotated);
//! - `publish` uploads what was not yet published, with the caller's token,
//!   to the container `guest_log_container_name`, under the prefix
//!   `<guest_id>/<manager>-<log>/`, in objects `log-<UTC time>` of at most
//!   `guest_log_limit` bytes cut on line boundaries, each with
//!   `x-object-meta-lines` and `X-Delete-After: guest_log_expiry`; the
//!   metafile `<guest_id>/<manager>-<log>_metafile` (JSON: name, type,
//!   file, the size published, the digest of the first line) says how far
//!   it got, so a restarted agent goes on from there;
//! - a log whose file shrank or whose first line changed was rotated: its
//!   next publish discards what was published first;
//! - `discard` removes every object of the log and its metafile.
//!
//! Unlike upstream, a last line still being written is left for the next
//! publish, the file is read in bounded pieces, and every line is masked
//! for secrets before it leaves the guest ([`mask`]).

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::PathBuf;

use driver_api::request::GuestLogActionRequest;
use driver_api::storage::StoreError;
use driver_api::TroveException;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::swift::SwiftStore;

mod chunk;
pub mod mask;
mod publish;

use chunk::hex;

/// `guest_log.LogType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    /// Always on: only published or discarded.
    Sys,
    /// Turned on and off by the tenant.
    User,
}

impl LogType {
    fn name(self) -> &'static str {
        match self {
            Self::Sys => "SYS",
            Self::User => "USER",
        }
    }
}

/// `guest_log.LogStatus`, as `show` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStatus {
    Disabled,
    Enabled,
    Unavailable,
    Ready,
    Published,
    Partial,
    Rotated,
    RestartRequired,
}

impl LogStatus {
    fn name(self) -> &'static str {
        match self {
            Self::Disabled => "Disabled",
            Self::Enabled => "Enabled",
            Self::Unavailable => "Unavailable",
            Self::Ready => "Ready",
            Self::Published => "Published",
            Self::Partial => "Partial",
            Self::Rotated => "Rotated",
            Self::RestartRequired => "Restart Required",
        }
    }
}

/// One log the guest offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDef {
    /// Its name in Trove (`guest`, `chmpx`, ...).
    pub name: String,
    /// SYS or USER.
    pub kind: LogType,
    /// The file that holds its text.
    pub file: PathBuf,
}

/// The settings of the guest log API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// `guest_id`: the objects' prefix starts with it.
    pub guest_id: String,
    /// `datastore_manager`: the prefix's second part starts with it.
    pub manager: String,
    /// `guest_log_container_name`.
    pub container: String,
    /// `guest_log_limit`: the largest object, in bytes.
    pub limit: usize,
    /// `guest_log_expiry`: seconds until Swift removes what was published.
    pub expiry: u64,
    /// `[<manager>] guest_log_exposed_logs` (`all` exposes every log): the
    /// logs a caller who is not admin may see.
    pub exposed: Vec<String>,
}

/// Who asks, and with which Swift.
pub struct Caller<'a> {
    /// The caller's Swift (their token, their account).
    pub swift: &'a SwiftStore,
    /// The context's `is_admin`: every log is exposed to admins.
    pub is_admin: bool,
}

/// Why a guest log request failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Trove's own refusal (not found, forbidden, bad request).
    #[error("{0}")]
    Trove(TroveException),
    /// Swift refused or was away.
    #[error("{0}")]
    Swift(#[from] StoreError),
    /// The log's file could not be read.
    #[error("read the log file {path}: {cause}")]
    File { path: String, cause: std::io::Error },
}

impl LogError {
    /// As Trove's API shows it.
    pub fn to_trove(&self) -> TroveException {
        match self {
            Self::Trove(e) => e.clone(),
            other => TroveException::Error(other.to_string()),
        }
    }
}

/// What this guest knows of one log between requests.
#[derive(Debug, Clone)]
struct LogState {
    def: LogDef,
    status: LogStatus,
    /// Bytes of the file published; `None` until the metafile was read.
    published: Option<u64>,
    /// The first line's digest when it was published.
    published_digest: Option<String>,
    /// The Swift account the two above were read from: each caller
    /// publishes to their own account, with its own metafile.
    account: Option<String>,
}

/// What the file holds now.
struct FileFacts {
    size: u64,
    digest: String,
}

/// The guest's logs.
pub struct GuestLogs {
    options: LogOptions,
    logs: Mutex<BTreeMap<String, LogState>>,
}

impl GuestLogs {
    /// The logs `defs` under `options`.
    pub fn new(options: LogOptions, defs: Vec<LogDef>) -> Self {
        let logs = defs
            .into_iter()
            .map(|def| {
                let status = match def.kind {
                    LogType::Sys => LogStatus::Enabled,
                    LogType::User => LogStatus::Disabled,
                };
                let state = LogState {
                    def: def.clone(),
                    status,
                    published: None,
                    published_digest: None,
                    account: None,
                };
                (def.name, state)
            })
            .collect();
        Self {
            options,
            logs: Mutex::new(logs),
        }
    }

    /// Whether log `name` is a USER log (`None`: no such log).
    pub async fn is_user(&self, name: &str) -> Option<bool> {
        let logs = self.logs.lock().await;
        logs.get(name).map(|l| l.def.kind == LogType::User)
    }

    /// A USER log was found (or turned) on or off.
    pub async fn set_enabled(&self, name: &str, on: bool) {
        let mut logs = self.logs.lock().await;
        if let Some(l) = logs.get_mut(name) {
            if l.def.kind == LogType::User {
                let off = l.status == LogStatus::Disabled;
                if on && off {
                    l.status = LogStatus::Enabled;
                } else if !on {
                    l.status = LogStatus::Disabled;
                }
            }
        }
    }

    /// The names of the logs `caller` may see.
    pub async fn visible(&self, caller_is_admin: bool) -> Vec<String> {
        let logs = self.logs.lock().await;
        logs.keys()
            .filter(|n| caller_is_admin || self.exposed_to_all(n))
            .cloned()
            .collect()
    }

    fn exposed_to_all(&self, name: &str) -> bool {
        self.options
            .exposed
            .iter()
            .any(|e| e.eq_ignore_ascii_case("all") || e.eq_ignore_ascii_case(name))
    }

    fn exposed(&self, name: &str, caller: &Caller<'_>) -> bool {
        caller.is_admin || self.exposed_to_all(name)
    }

    /// `guest_log_list`: every log the caller may see, shown.
    pub async fn list(&self, caller: &Caller<'_>) -> Result<Value, LogError> {
        let mut logs = self.logs.lock().await;
        let mut shown = Vec::new();
        for (name, state) in logs.iter_mut() {
            if self.exposed(name, caller) {
                shown.push(self.show(state, caller.swift).await?);
            }
        }
        Ok(Value::Array(shown))
    }

    /// `guest_log_action`: enable or disable a USER log, then publish or
    /// discard, as upstream's manager orders them; returns the log shown.
    pub async fn action(
        &self,
        action: &GuestLogActionRequest,
        caller: &Caller<'_>,
    ) -> Result<Value, LogError> {
        let name = action.log_name.as_str();
        if action.enable && action.disable {
            return Err(LogError::Trove(TroveException::BadRequest(format!(
                "Cannot enable and disable log '{name}'."
            ))));
        }
        let mut logs = self.logs.lock().await;
        let Some(state) = logs.get_mut(name) else {
            return Err(LogError::Trove(TroveException::NotFound(format!(
                "Log '{name}' is not defined."
            ))));
        };
        let what = if action.publish {
            "publish"
        } else if action.discard {
            "discard"
        } else {
            "show"
        };
        if !self.exposed(name, caller) {
            return Err(LogError::Trove(TroveException::LogAccessForbidden {
                action: what.into(),
                log: name.into(),
            }));
        }
        if state.def.kind == LogType::Sys && !action.publish && (action.enable || action.disable) {
            let verb = if action.enable { "enable" } else { "disable" };
            return Err(LogError::Trove(TroveException::BadRequest(format!(
                "Cannot {verb} a SYSTEM log ('{name}')."
            ))));
        }
        let swift = caller.swift;
        if action.discard {
            self.discard(state, swift).await?;
        }
        if action.publish {
            self.publish(state, swift).await?;
        }
        self.show(state, swift).await
    }

    /// The file's size and first line's digest (`None`: no file yet).
    fn facts(def: &LogDef) -> Result<Option<FileFacts>, LogError> {
        let file_error = |cause| LogError::File {
            path: def.file.display().to_string(),
            cause,
        };
        let f = match std::fs::File::open(&def.file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(file_error(e)),
        };
        let size = f.metadata().map_err(file_error)?.len();
        let mut first = Vec::new();
        std::io::BufReader::new(f)
            .take(64 * 1024)
            .read_until(b'\n', &mut first)
            .map_err(file_error)?;
        Ok(Some(FileFacts {
            size,
            digest: hex(&Md5::digest(&first)),
        }))
    }

    fn rotated(state: &LogState, now: &FileFacts) -> bool {
        let published = state.published.unwrap_or(0);
        published > 0
            && (now.size < published || state.published_digest.as_deref() != Some(&now.digest))
    }

    /// `show`: upstream's dict, the status brought up to date.
    async fn show(&self, state: &mut LogState, swift: &SwiftStore) -> Result<Value, LogError> {
        let published = self.published(state, swift).await?;
        let size = match Self::facts(&state.def)? {
            Some(now) => {
                if state.status != LogStatus::Disabled && state.status != LogStatus::RestartRequired
                {
                    state.status = if Self::rotated(state, &now) {
                        LogStatus::Rotated
                    } else if now.size > published {
                        if published > 0 {
                            LogStatus::Partial
                        } else {
                            LogStatus::Ready
                        }
                    } else if published > 0 {
                        LogStatus::Published
                    } else {
                        LogStatus::Enabled
                    };
                }
                now.size
            }
            None => {
                tracing::warn!(log = %state.def.name, file = %state.def.file.display(), "the log's file does not exist");
                0
            }
        };
        let pending = if state.status == LogStatus::Rotated {
            size
        } else {
            size.saturating_sub(published)
        };
        let (container, prefix) = if published > 0 {
            (self.options.container.clone(), self.prefix(&state.def.name))
        } else {
            ("None".to_owned(), "None".to_owned())
        };
        Ok(json!({
            "name": state.def.name,
            "type": state.def.kind.name(),
            "status": state.status.name(),
            "published": published,
            "pending": pending,
            "container": container,
            "prefix": prefix,
            "metafile": self.metafile(&state.def.name),
        }))
    }
}

#[cfg(test)]
mod tests;
