//! What the node keeps across agent restarts, in its state directory
//! (0600: it holds the role token).

use std::path::{Path, PathBuf};

use driver_api::DatastoreError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{failed, Node};
use crate::ini;
use crate::k2hr3::RoleAccess;
use crate::overrides::Parameters;

/// What the node keeps across agent restarts (0600: it holds the role token).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub(super) struct Saved {
    pub(super) parameters: Map<String, Value>,
    pub(super) api_url: Option<String>,
    pub(super) role_yrn: Option<String>,
    pub(super) role_token: Option<String>,
    /// stop_db(do_not_start_on_reboot=True) was asked.
    pub(super) stopped: bool,
    /// A cluster member: its ring steps come from Trove's cluster
    /// taskmanager, not from the node itself.
    #[serde(default)]
    pub(super) member: bool,
    /// The datastore version the node runs (an upgrade changes it; the
    /// guest's injected config keeps the one it was created with).
    #[serde(default)]
    pub(super) datastore_version: Option<String>,
}

impl Node {
    pub(super) fn save(
        &self,
        params: &Parameters,
        access: Option<&RoleAccess>,
        stopped: bool,
    ) -> Result<(), DatastoreError> {
        let saved = Saved {
            parameters: params.to_map(),
            api_url: access.map(|a| a.api_url.clone()),
            role_yrn: access.map(|a| a.role_yrn.clone()),
            role_token: access.map(|a| a.role_token.clone()),
            stopped,
            member: self.is_member(),
            datastore_version: self.datastore_version(),
        };
        store_saved(&self.settings.state_dir, &saved).map_err(|e| failed("save node state", e))
    }
}

pub(super) fn saved_path(dir: &Path) -> PathBuf {
    dir.join("k2hdkc-node.json")
}

pub(super) fn load_saved(dir: &Path) -> Option<Saved> {
    serde_json::from_str(&std::fs::read_to_string(saved_path(dir)).ok()?).ok()
}

pub(super) fn store_saved(dir: &Path, saved: &Saved) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(saved).map_err(std::io::Error::other)?;
    ini::write_atomic(&saved_path(dir), &text, 0o600).map(|_| ())
}
