//! The node's files on the host: the run directory the containers share,
//! the K2HFILE's directory on the data volume, and the k2hdkc.ini from
//! K2HR3.

use std::path::PathBuf;

use driver_api::DatastoreError;

use super::{failed, Node};
use crate::ini;
use crate::k2hr3::K2hr3;
use crate::paths::{CONTAINER_DATA_DIR, INI_NAME};

impl Node {
    /// The directory the containers share as /var/lib/antpickax: owned by
    /// the database user, closed to others (chmpx's files are its queues).
    pub(super) fn ensure_run_dir(&self) -> Result<(), DatastoreError> {
        let s = &self.settings;
        let dir = &s.run_dir;
        let made = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            std::os::unix::fs::chown(dir, Some(s.uid), Some(s.gid))?;
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o750))
        };
        made().map_err(|e| failed(&format!("prepare the run directory {}", dir.display()), e))
    }

    /// k2hdkc creates its K2HFILE but not the directory it is in (the old
    /// image's start script made it with `mkdir -p`). Made here, in the
    /// data volume, owned by the database user.
    pub(super) fn ensure_k2hfile_dir(&self, facts: &ini::IniFacts) -> Result<(), DatastoreError> {
        let Some(file) = facts.k2hfile.as_deref() else {
            return Ok(());
        };
        let Some(dir) = std::path::Path::new(file).parent() else {
            return Ok(());
        };
        let s = &self.settings;
        let Some(host_dir) =
            ini::host_path(dir, std::path::Path::new(CONTAINER_DATA_DIR), &s.data_dir)
        else {
            tracing::warn!(
                k2hfile = file,
                volume = CONTAINER_DATA_DIR,
                "K2HFILE is outside the data volume: its data will not outlive the container"
            );
            return Ok(());
        };
        let mut made = Vec::new();
        let mut at = host_dir.as_path();
        while at != s.data_dir && !at.exists() {
            made.push(at.to_path_buf());
            let Some(up) = at.parent() else { break };
            at = up;
        }
        std::fs::create_dir_all(&host_dir).map_err(|e| {
            failed(
                &format!("make the K2HFILE directory {}", host_dir.display()),
                e,
            )
        })?;
        for d in made {
            std::os::unix::fs::chown(&d, Some(s.uid), Some(s.gid))
                .map_err(|e| failed(&format!("give {} to the database user", d.display()), e))?;
        }
        Ok(())
    }

    /// Fetches the resource, writes the ini if it changed (atomically, and
    /// only when it still names this node), returns what it says.
    pub(super) async fn refresh_ini(
        &self,
        client: &K2hr3,
    ) -> Result<ini::IniFacts, DatastoreError> {
        let text = ini::personalize(
            &client
                .resource()
                .await
                .map_err(|e| failed("get k2hdkc.ini from K2HR3", e))?,
            &self.settings.cuk,
        );
        let facts = ini::facts(&text);
        let is_self = |n: &ini::NodeEntry| n.cuk.as_deref() == Some(self.settings.cuk.as_str());
        if !facts.servers.iter().any(is_self) {
            return Err(failed(
                "check k2hdkc.ini from K2HR3",
                format!(
                    "it has no [SVRNODE] with CUK {} (registration not visible yet?)",
                    self.settings.cuk
                ),
            ));
        }
        // The containers run as the database user: the directory must be
        // readable whatever umask the agent runs with (systemd: 0077).
        let dir = &self.settings.config_dir;
        ini::ensure_shared_dir(dir)
            .map_err(|e| failed(&format!("prepare {}", dir.display()), e))?;
        let changed = ini::write_atomic(&self.ini_path(), &text, 0o644)
            .map_err(|e| failed(&format!("write {}", self.ini_path().display()), e))?;
        if changed {
            tracing::info!(servers = facts.servers.len(), slaves = facts.slaves.len(), path = %self.ini_path().display(), "k2hdkc.ini written");
        }
        Ok(facts)
    }

    pub(super) fn ini_path(&self) -> PathBuf {
        self.settings.config_dir.join(INI_NAME)
    }

    /// What the ini chmpx and k2hdkc run with says.
    pub(crate) fn ini_facts(&self) -> Result<ini::IniFacts, DatastoreError> {
        let path = self.ini_path();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| failed(&format!("read {}", path.display()), e))?;
        Ok(ini::facts(&text))
    }
}
