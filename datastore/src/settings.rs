//! The driver's settings: the `[k2hdkc]` option group plus what the agent
//! knows about the guest. Parsed once; every bad value reported.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use driver_api::host::Network;

use crate::k2hr3::RoleAccess;

/// What the agent hands the driver at start.
#[derive(Debug, Clone)]
pub struct DriverContext {
    /// Trove instance id.
    pub guest_id: String,
    /// `datastore_version` (the image tag when `docker_image` has none).
    pub datastore_version: Option<String>,
    /// The `[k2hdkc]` group as written.
    pub group: BTreeMap<String, String>,
    /// Where the data volume is mounted.
    pub mount_point: PathBuf,
    /// The database user.
    pub uid: u32,
    /// The database group.
    pub gid: u32,
    /// Where the agent keeps state for this guest.
    pub state_dir: PathBuf,
}

/// The driver's effective settings.
#[derive(Clone)]
pub struct Settings {
    /// Trove instance id (container names and labels).
    pub guest_id: String,
    /// This node's CUK: the Nova instance id cloud-init recorded, else the
    /// guest id.
    pub cuk: String,
    /// Image reference, as the guest was created.
    pub image: String,
    /// The datastore version the guest was created with (Trove's
    /// `datastore_version`), if Trove gave one.
    pub datastore_version: Option<String>,
    /// `docker_image` without a tag, when the tag is the datastore
    /// version: another version's image is this with its tag. None when
    /// `docker_image` pins a tag or a digest.
    pub image_repo: Option<String>,
    /// `uid:gid` the containers run as.
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// Host directory of the data (mounted at /var/lib/antpickax/k2hdkc).
    pub data_dir: PathBuf,
    /// Host directory of k2hdkc.ini (mounted at /etc/antpickax).
    pub config_dir: PathBuf,
    /// Host directory both containers share as /var/lib/antpickax, where
    /// chmpx keeps the files k2hdkc attaches to.
    pub run_dir: PathBuf,
    /// Agent state (saved parameters and role access, 0600).
    pub state_dir: PathBuf,
    /// K2HR3 access given in config (instead of `extdata-url`).
    pub direct: Option<RoleAccess>,
    /// How often the node's resource is re-read.
    pub poll_interval: Duration,
    /// `fs.mqueue.msg_max` for the chmpx IPC namespace.
    pub mq_msg_max: u32,
    /// `RLIMIT_MSGQUEUE` of both containers in bytes; 0 keeps the engine's.
    pub msgqueue_bytes: i64,
    /// Bound on waiting for the first node and for this node to serve.
    pub startup_wait: Duration,
    /// The containers' network namespace (`network_mode`: `host`, as in a
    /// guest VM, or `container:NAME`).
    pub network: Network,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("guest_id", &self.guest_id)
            .field("cuk", &self.cuk)
            .field("image", &self.image)
            .field("datastore_version", &self.datastore_version)
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}

/// Where cloud-init records the Nova instance id.
pub const CLOUD_INIT_INSTANCE_ID: &str = "/var/lib/cloud/data/instance-id";

/// `network_mode`: `host`, or `container:NAME` with a Docker container name.
fn network_mode(value: Option<String>, problems: &mut Vec<String>) -> Network {
    let Some(v) = value else { return Network::Host };
    if v == "host" {
        return Network::Host;
    }
    let name = v.strip_prefix("container:").unwrap_or("");
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Network::Container(name.to_owned())
    } else {
        problems.push(format!("[k2hdkc] network_mode: {v:?} is neither \"host\" nor \"container:NAME\" with a container name"));
        Network::Host
    }
}

fn number<T: std::str::FromStr>(
    group: &BTreeMap<String, String>,
    key: &str,
    default: T,
    problems: &mut Vec<String>,
) -> T {
    match group
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty() && *v != "None")
    {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            problems.push(format!("[k2hdkc] {key}: not a whole number: {v:?}"));
            default
        }),
    }
}

impl Settings {
    /// Reads the settings; `instance_id_file` is cloud-init's record.
    pub fn new(
        ctx: &DriverContext,
        instance_id_file: &std::path::Path,
    ) -> Result<Settings, Vec<String>> {
        let g = &ctx.group;
        let get = |k: &str| {
            g.get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty() && v != "None")
        };
        let mut problems = Vec::new();
        let cuk = std::fs::read_to_string(instance_id_file)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ctx.guest_id.clone());
        let base = get("docker_image").unwrap_or_else(|| "antpickax/k2hdkc".into());
        // Trove's convention: the datastore version is the image tag.
        let has_tag = base
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':') || last.contains('@'));
        let datastore_version = ctx.datastore_version.clone().filter(|v| !v.is_empty());
        let (image, image_repo) = match (&datastore_version, has_tag) {
            (Some(v), false) => (format!("{base}:{v}"), Some(base)),
            _ => (base, None),
        };
        let direct = match (
            get("k2hr3_api_url"),
            get("k2hr3_role"),
            get("k2hr3_role_token"),
        ) {
            (Some(api_url), Some(role_yrn), Some(role_token)) => Some(RoleAccess {
                api_url: api_url.trim_end_matches('/').to_owned(),
                role_yrn,
                role_token,
            }),
            (None, None, None) => None,
            _ => {
                problems.push(
                    "[k2hdkc] k2hr3_api_url, k2hr3_role and k2hr3_role_token go together".into(),
                );
                None
            }
        };
        let settings = Settings {
            guest_id: ctx.guest_id.clone(),
            cuk,
            image,
            datastore_version,
            image_repo,
            uid: ctx.uid,
            gid: ctx.gid,
            data_dir: ctx.mount_point.clone(),
            config_dir: get("config_dir")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/etc/antpickax")),
            run_dir: get("run_dir")
                .map(PathBuf::from)
                .unwrap_or_else(|| ctx.state_dir.join("antpickax")),
            state_dir: ctx.state_dir.clone(),
            direct,
            poll_interval: Duration::from_millis(
                number(g, "k2hr3_poll_interval_ms", 2000u64, &mut problems).max(200),
            ),
            mq_msg_max: number(g, "mq_msg_max", 1024u32, &mut problems),
            msgqueue_bytes: number(g, "msgqueue_bytes", 64 * 1024 * 1024i64, &mut problems).max(0),
            startup_wait: Duration::from_secs(number(g, "startup_wait", 120u64, &mut problems)),
            network: network_mode(get("network_mode"), &mut problems),
        };
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }

    /// The image of datastore version `version`: `docker_image` tagged
    /// with it. None when `docker_image` pins its own tag.
    pub fn image_for(&self, version: &str) -> Option<String> {
        self.image_repo
            .as_ref()
            .map(|repo| format!("{repo}:{version}"))
    }

    /// The chmpx container's name.
    pub fn chmpx_container(&self) -> String {
        format!("k2hdkc-chmpx-{}", self.guest_id)
    }

    /// The k2hdkc container's name.
    pub fn server_container(&self) -> String {
        format!("k2hdkc-server-{}", self.guest_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(group: &[(&str, &str)]) -> DriverContext {
        DriverContext {
            guest_id: "g1".into(),
            datastore_version: Some("1.0.17".into()),
            group: group
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mount_point: "/var/lib/antpickax/k2hdkc".into(),
            uid: 1001,
            gid: 1001,
            state_dir: "/tmp/s".into(),
        }
    }

    #[test]
    fn image_tag_comes_from_the_datastore_version() {
        let s = Settings::new(&ctx(&[]), std::path::Path::new("/nonexistent")).unwrap();
        assert_eq!(s.image, "antpickax/k2hdkc:1.0.17");
        assert_eq!(s.cuk, "g1", "guest id when cloud-init has no instance id");
        let s = Settings::new(
            &ctx(&[("docker_image", "registry:5000/k2hdkc:pinned")]),
            std::path::Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(s.image, "registry:5000/k2hdkc:pinned");
        assert_eq!(s.image_for("1.0.18"), None, "a pinned tag is not replaced");
        let s = Settings::new(
            &ctx(&[("docker_image", "registry:5000/k2hdkc")]),
            std::path::Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(s.image, "registry:5000/k2hdkc:1.0.17");
        assert_eq!(
            s.image_for("1.0.18").as_deref(),
            Some("registry:5000/k2hdkc:1.0.18")
        );
    }

    #[test]
    fn cuk_from_cloud_init() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "i-0123\n").unwrap();
        assert_eq!(Settings::new(&ctx(&[]), f.path()).unwrap().cuk, "i-0123");
    }

    #[test]
    fn partial_direct_access_is_an_error() {
        let err = Settings::new(
            &ctx(&[("k2hr3_api_url", "http://k")]),
            std::path::Path::new("/x"),
        )
        .unwrap_err();
        assert!(err[0].contains("go together"));
    }

    #[test]
    fn network_mode_is_host_or_a_container() {
        let none = std::path::Path::new("/nonexistent");
        assert_eq!(
            Settings::new(&ctx(&[]), none).unwrap().network,
            Network::Host
        );
        assert_eq!(
            Settings::new(&ctx(&[("network_mode", "host")]), none)
                .unwrap()
                .network,
            Network::Host
        );
        let s = Settings::new(&ctx(&[("network_mode", "container:box-host-1a2b")]), none).unwrap();
        assert_eq!(s.network, Network::Container("box-host-1a2b".into()));
        for bad in [
            "bridge",
            "container:",
            "container:-x",
            "container:a b",
            "ns:/var/run/netns/x",
        ] {
            let err = Settings::new(&ctx(&[("network_mode", bad)]), none).unwrap_err();
            assert!(err[0].contains("network_mode"), "{bad}: {err:?}");
        }
    }
}
