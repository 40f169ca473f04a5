//! The datastores this agent serves: the one place the agent names a
//! datastore crate. Everything else in the agent knows only
//! `driver_api::Datastore`.

use std::path::Path;
use std::sync::Arc;

use driver_api::Datastore;

use crate::config::{self, Config};
use crate::docker;

/// What the configuration needs to know of a datastore before its driver
/// exists.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Every key of its group a driver reads (a key outside it is a typo).
    pub options: &'static [&'static str],
    /// `mount_point` when the group names none.
    pub default_mount_point: &'static str,
}

/// The profile of `datastore_manager`, if this agent serves it.
pub fn profile(manager: &str) -> Option<Profile> {
    (manager == datastore::MANAGER).then_some(Profile {
        options: datastore::OPTIONS,
        default_mount_point: datastore::DEFAULT_MOUNT_POINT,
    })
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No driver for `datastore_manager`.
    #[error("no driver for datastore_manager {0:?} (this agent serves: {1})")]
    UnknownDatastore(String, &'static str),
    /// The driver refused its settings.
    #[error("{}", .0.iter().map(|p| format!("config error: {p}")).collect::<Vec<_>>().join("\n"))]
    Driver(Vec<String>),
    /// The host cannot run containers.
    #[error("{0}")]
    Host(driver_api::host::HostError),
}

/// What the K2HDKC driver is built from, out of the agent's config.
fn k2hdkc_context(config: &Config) -> datastore::settings::DriverContext {
    datastore::settings::DriverContext {
        guest_id: config.guest_id.clone(),
        datastore_version: config.datastore_version.clone(),
        group: config.datastore.values.clone(),
        mount_point: config.datastore.mount_point.clone(),
        uid: config.datastore.database_service_uid,
        gid: config.datastore.database_service_gid,
        state_dir: config.state_dir.join(&config.guest_id),
    }
}

/// Checks what the driver for `datastore_manager` would refuse at start,
/// without touching the host: `--show-config` gives the start's verdict.
pub fn check_datastore(config: &Config) -> Result<(), StartError> {
    match config.datastore_manager.as_str() {
        datastore::MANAGER => datastore::settings::Settings::new(
            &k2hdkc_context(config),
            Path::new(datastore::settings::CLOUD_INIT_INSTANCE_ID),
        )
        .map(|_| ())
        .map_err(StartError::Driver),
        other => Err(StartError::UnknownDatastore(
            other.to_owned(),
            datastore::MANAGER,
        )),
    }
}

/// The driver for `datastore_manager`, on this host's Docker engine.
pub fn datastore_for(config: &Config) -> Result<Arc<dyn Datastore>, StartError> {
    match config.datastore_manager.as_str() {
        datastore::MANAGER => {
            let g = &config.datastore.values;
            let auth = match (
                g.get("docker_registry_username"),
                g.get("docker_registry_password"),
            ) {
                (Some(u), Some(p)) if !u.is_empty() => Some(docker::RegistryAuth {
                    username: u.clone(),
                    password: config::Secret::new(p.clone()),
                }),
                _ => None,
            };
            let containers = Arc::new(docker::DockerHost::new(auth).map_err(StartError::Host)?);
            Ok(Arc::new(
                datastore::K2hdkc::new(&k2hdkc_context(config), containers)
                    .map_err(StartError::Driver)?,
            ))
        }
        other => Err(StartError::UnknownDatastore(
            other.to_owned(),
            datastore::MANAGER,
        )),
    }
}
