//! The names every part of the driver shares: where things are mounted in
//! the containers, the ini's name, what K2HR3 calls things. The bottom of
//! the crate: it imports nothing of it but the K2HR3 names' type.

use crate::k2hr3::ExtdataNames;

/// The `datastore_manager` name Trove uses for K2HDKC.
pub const MANAGER: &str = "k2hdkc";

/// Where the config directory is mounted in the containers.
pub const CONTAINER_CONFIG_DIR: &str = "/etc/antpickax";
/// chmpx's working directory: its shared-memory files live here, and
/// k2hdkc attaches to them, so both containers mount the same host dir.
pub const CONTAINER_RUN_DIR: &str = "/var/lib/antpickax";
/// Where the data volume is mounted in the containers.
pub const CONTAINER_DATA_DIR: &str = "/var/lib/antpickax/k2hdkc";
/// The ini's name in the config directory.
pub const INI_NAME: &str = "k2hdkc.ini";
/// `extra` K2HR3 keeps for a node registered by this agent.
pub const K2HR3_EXTRA: &str = "openstack-auto-v1";
/// The variable names of k2hr3_api's `config/k2hr3-init.sh.templ`, the
/// template K2HR3's `trove` EXTDATA serves.
pub const EXTDATA_NAMES: ExtdataNames = ExtdataNames {
    api_url: "K2HR3_API_HOST_URI",
    role: "K2HR3_ROLE_NAME",
    role_token: "K2HR3_ROLE_TOKEN",
};
