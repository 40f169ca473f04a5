//! The slave's configuration: a small `key = value` file (the cloud-init
//! user data writes it; `#` starts a comment), parsed from a reader.
//!
//! ```text
//! extdata_url = https://k2hr3.example.com/v1/extdata/trove/<tenant>/<cluster>/slave
//! image       = registry.example.com/k2hdkc:1.0.17
//! ```
//!
//! Or, instead of `extdata_url`: `k2hr3_api_url`, `role` (the slave role's
//! YRN) and `role_token`. Everything else has a default.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use driver_api::host::Network;

use driver_api::Secret;

/// The default config file.
pub const DEFAULT_PATH: &str = "/etc/k2hdkc-slave/slave.conf";

/// Where the slave's role comes from.
#[derive(Clone)]
pub enum RoleSource {
    /// The slave role's EXTDATA URL (role, token and API URL in its text).
    Extdata(String),
    /// Given directly.
    Direct {
        /// K2HR3 API base URL.
        api_url: String,
        /// The slave role's YRN.
        role: String,
        /// The role token.
        token: Secret,
    },
}

/// An EXTDATA URL carries K2HR3's token in its path: Debug shows only
/// where it points.
impl std::fmt::Debug for RoleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoleSource::Extdata(url) => {
                let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
                write!(f, "Extdata({origin}/***)")
            }
            RoleSource::Direct { api_url, role, .. } => f
                .debug_struct("Direct")
                .field("api_url", api_url)
                .field("role", role)
                .field("token", &"***")
                .finish(),
        }
    }
}

/// Everything `k2hdkc-slave` needs.
#[derive(Debug, Clone)]
pub struct SlaveConfig {
    /// The slave role.
    pub role: RoleSource,
    /// The k2hdkc image (it has chmpx and k2hdkc's client tools).
    pub image: String,
    /// The slave's control port; `None`: what the resource says (8031).
    pub ctlport: Option<u16>,
    /// The container's name.
    pub container: String,
    /// Where the ini, chmpx's files and the state live.
    pub state_dir: PathBuf,
    /// This slave's chmpx id seed and K2HR3 tag (unique per slave).
    pub seed: String,
    /// The container's network: `host` (a VM), or `container:NAME`.
    pub network: Network,
    /// How often K2HR3 is read for membership changes.
    pub poll_interval: Duration,
    /// The database user the container runs as.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// RLIMIT_MSGQUEUE of chmpx (bytes; 0: the engine's default).
    pub msgqueue_bytes: i64,
    /// A CA bundle for K2HR3's TLS (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Where the Prometheus endpoint listens (off when unset).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// A bad configuration: every problem, named.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The `key = value` lines (blank lines and `#` comments skipped), and a
/// problem for every other line.
fn key_values(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                values.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            None => problems.push(format!("line {}: not key = value", n + 1)),
        }
    }
    (values, problems)
}

/// Where the slave role comes from: an EXTDATA URL, or K2HR3's API with a
/// role and its token, never both.
fn role_source(
    values: &mut BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> Option<RoleSource> {
    let extdata = take(values, "extdata_url");
    let direct = (
        take(values, "k2hr3_api_url"),
        take(values, "role"),
        take(values, "role_token"),
    );
    match (extdata, direct) {
        (Some(url), (None, None, None)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!("extdata_url is not an http(s) URL: {url}"));
            }
            Some(RoleSource::Extdata(url))
        }
        (None, (Some(api_url), Some(role), Some(token))) => Some(RoleSource::Direct {
            api_url: api_url.trim_end_matches('/').to_owned(),
            role,
            token: Secret::new(token),
        }),
        (Some(_), _) => {
            problems.push("give extdata_url or k2hr3_api_url + role + role_token, not both".into());
            None
        }
        (None, _) => {
            problems.push("no slave role: give extdata_url (the cluster's slave EXTDATA URL), or k2hr3_api_url, role and role_token".into());
            None
        }
    }
}

/// A container or seed name: letters, digits and `_ . -`, starting with a
/// letter or digit.
fn valid_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn take(values: &mut BTreeMap<String, String>, key: &str) -> Option<String> {
    values.remove(key).filter(|v| !v.is_empty())
}

fn number(
    values: &mut BTreeMap<String, String>,
    problems: &mut Vec<String>,
    key: &str,
    default: u64,
    min: u64,
    max: u64,
) -> u64 {
    match take(values, key) {
        None => default,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                problems.push(format!("{key} = {v}: want a number from {min} to {max}"));
                default
            }
        },
    }
}

impl SlaveConfig {
    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<SlaveConfig, ConfigError> {
        let file = std::fs::File::open(path)
            .map_err(|e| ConfigError(vec![format!("cannot read {}: {e}", path.display())]))?;
        let cfg = Self::parse(file).map_err(|mut e| {
            e.0.insert(0, format!("{}", path.display()));
            e
        })?;
        if let RoleSource::Direct { .. } = cfg.role {
            use std::os::unix::fs::MetadataExt;
            if std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o077 != 0) {
                tracing::warn!(path = %path.display(), "the config holds a role token and others may read it: chmod 0600");
            }
        }
        Ok(cfg)
    }

    /// Parses `key = value` lines.
    pub fn parse(mut reader: impl Read) -> Result<SlaveConfig, ConfigError> {
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .map_err(|e| ConfigError(vec![format!("cannot read the config: {e}")]))?;
        let (mut values, mut problems) = key_values(&text);
        let values = &mut values;
        let problems = &mut problems;
        let role = role_source(values, problems);
        let ctlport = values
            .contains_key("ctlport")
            .then(|| number(values, problems, "ctlport", 8031, 1, 65535) as u16);
        let poll_ms = number(values, problems, "poll_interval_ms", 2000, 200, 600_000);
        let uid = number(values, problems, "uid", 1001, 0, u32::MAX as u64) as u32;
        let gid = number(values, problems, "gid", 1001, 0, u32::MAX as u64) as u32;
        let msgqueue_bytes = number(
            values,
            problems,
            "msgqueue_bytes",
            64 * 1024 * 1024,
            0,
            i64::MAX as u64,
        ) as i64;
        let image = take(values, "image").unwrap_or_else(|| "antpickax/k2hdkc:1.0.17".into());
        let container = take(values, "container").unwrap_or_else(|| "k2hdkc-slave".into());
        if !valid_name(&container) {
            problems.push(format!(
                "container = {container}: letters, digits and _ . - only"
            ));
        }
        let state_dir = PathBuf::from(
            take(values, "state_dir").unwrap_or_else(|| "/var/lib/k2hdkc-slave".into()),
        );
        if !state_dir.is_absolute() {
            problems.push(format!(
                "state_dir = {}: want an absolute path",
                state_dir.display()
            ));
        }
        let seed = take(values, "seed").unwrap_or_else(host_name);
        if !valid_name(&seed) {
            problems.push(format!(
                "seed = {seed:?}: this slave's id (default: the host name) must be letters, digits and _ . - only"
            ));
        }
        let network = match take(values, "network").as_deref() {
            None | Some("host") => Network::Host,
            Some(v) => match v.strip_prefix("container:").filter(|n| valid_name(n)) {
                Some(name) => Network::Container(name.to_owned()),
                None => {
                    problems.push(format!("network = {v}: want host or container:NAME"));
                    Network::Host
                }
            },
        };
        let ca_file = take(values, "ca_file").map(PathBuf::from);
        let metrics_listen = take(values, "metrics_listen").and_then(|v| match v.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problems.push(format!(
                    "metrics_listen = {v}: want an address and port such as 0.0.0.0:9285"
                ));
                None
            }
        });
        for unknown in values.keys() {
            problems.push(format!("unknown key {unknown}"));
        }
        if !problems.is_empty() {
            return Err(ConfigError(std::mem::take(problems)));
        }
        Ok(SlaveConfig {
            role: role.expect("no problems means a role"),
            image,
            ctlport,
            container,
            state_dir,
            seed,
            network,
            poll_interval: Duration::from_millis(poll_ms),
            uid,
            gid,
            msgqueue_bytes,
            ca_file,
            metrics_listen,
        })
    }

    /// The ini's directory (mounted read-only at `/etc/antpickax`).
    pub fn ini_dir(&self) -> PathBuf {
        self.state_dir.join("etc")
    }

    /// chmpx's files (mounted at `/var/lib/antpickax`); applications
    /// mount it too.
    pub fn run_dir(&self) -> PathBuf {
        self.state_dir.join("run")
    }

    /// The state `k2hdkc-slave status` reads.
    pub fn status_path(&self) -> PathBuf {
        self.state_dir.join("status.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_data_file_needs_only_the_extdata_url() {
        let c = SlaveConfig::parse(
            "# written by cloud-init\nextdata_url = https://k2hr3:18080/v1/extdata/trove/t/c/slave\n"
                .as_bytes(),
        )
        .unwrap();
        assert!(matches!(c.role, RoleSource::Extdata(ref u) if u.ends_with("/slave")));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("Extdata(https://k2hr3:18080/***)"),
            "{shown}"
        );
        assert!(
            !shown.contains("/slave"),
            "the URL's path stays out: {shown}"
        );
        assert_eq!(c.ctlport, None);
        assert_eq!(c.container, "k2hdkc-slave");
        assert_eq!(c.network, Network::Host);
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        assert_eq!((c.uid, c.gid), (1001, 1001));
        assert_eq!(c.ini_dir(), PathBuf::from("/var/lib/k2hdkc-slave/etc"));
        assert_eq!(c.metrics_listen, None, "metrics are off by default");
        let c = SlaveConfig::parse(
            "extdata_url = https://k2hr3/v1/extdata/trove/t/c/slave\nmetrics_listen = 0.0.0.0:9285\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.metrics_listen, Some("0.0.0.0:9285".parse().unwrap()));
    }

    #[test]
    fn a_direct_role_keeps_its_token_out_of_debug_output() {
        let c = SlaveConfig::parse(
            "k2hr3_api_url = http://10.0.0.1:18080/\nrole = yrn:yahoo:::t:role:c/slave\nrole_token = sEcReT\n\
             ctlport = 8032\nnetwork = container:app-host\nseed = app-1\n"
                .as_bytes(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("sEcReT"));
        assert_eq!(c.ctlport, Some(8032));
        assert_eq!(c.network, Network::Container("app-host".into()));
        match c.role {
            RoleSource::Direct { api_url, .. } => assert_eq!(api_url, "http://10.0.0.1:18080"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_problem_is_named() {
        let e = SlaveConfig::parse(
            "role = r\nctlport = 99999\nnetwork = bridge\nseed = a b\nbogus = 1\nnot a pair\nmetrics_listen = 9285\n"
                .as_bytes(),
        )
        .unwrap_err()
        .to_string();
        for want in [
            "line 6",
            "no slave role",
            "ctlport = 99999",
            "network = bridge",
            "seed = \"a b\"",
            "unknown key bogus",
            "metrics_listen = 9285",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
        let e = SlaveConfig::parse("extdata_url = ftp://x\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an http(s) URL"), "{e}");
    }
}
