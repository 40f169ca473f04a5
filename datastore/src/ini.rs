//! The node's `k2hdkc.ini`: what K2HR3 renders, made this node's, written
//! so chmpx never reads half a file, and read back for the facts the agent
//! needs (this node's ports, the first server node).

use std::io::Write;
use std::path::Path;

/// The placeholder K2HR3 leaves for the fetching node's CUK
/// (yahoojapan/k2hr3_get_resource replaces it the same way).
pub const SELF_PLACEHOLDER: &str = "__SELF_INSTANCE_ID__";

/// Makes the rendered resource this node's.
pub fn personalize(rendered: &str, cuk: &str) -> String {
    rendered.replace(SELF_PLACEHOLDER, cuk)
}

/// Writes `text` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over the old one. chmpx
/// watches the file with inotify and reads it at once; a truncating
/// rewrite made it read half a file and exit. Returns whether the content
/// changed (nothing is written when it did not).
pub fn write_atomic(path: &Path, text: &str, mode: u32) -> std::io::Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".k2hdkc.ini.")
        .tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(mode),
    )?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(true)
}

/// Makes `dir` exist with mode 0755: the containers (the database user)
/// read the ini from it, whatever umask the agent runs under (systemd's
/// unit sets 0077, which made chmpx unable to read its ini).
pub fn ensure_shared_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
}

/// Where `container_path` (a path inside the containers) lies on the
/// host, when it is under the bind mount `container_root` -> `host_root`.
/// `None` for a relative path, one outside the mount, or one with `..`.
pub fn host_path(
    container_path: &Path,
    container_root: &Path,
    host_root: &Path,
) -> Option<std::path::PathBuf> {
    use std::path::Component;
    if !container_path.is_absolute()
        || container_path
            .components()
            .any(|c| matches!(c, Component::ParentDir))
    {
        return None;
    }
    let rest = container_path.strip_prefix(container_root).ok()?;
    Some(host_root.join(rest))
}

/// How chmpx derives a node's id (`[GLOBAL] CHMPXIDTYPE`, chmpx
/// `CHMPXID_SEED_TYPE`). It decides the grammar of `SERVICEOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdType {
    /// `NAME` (chmpx's default): from the name and control port.
    #[default]
    Name,
    /// `CUK`: from the node's CUK.
    Cuk,
    /// `CTLENDPOINTS` (or `CTLEPS`): from the control endpoints.
    CtlEndpoints,
    /// `CUSTOM`: from `CUSTOM_ID_SEED` (the K2HDKC DBaaS template).
    Custom,
}

impl IdType {
    /// Reads chmpx's spelling (case-insensitive); `None` for a value chmpx
    /// refuses.
    pub fn parse(value: &str) -> Option<IdType> {
        match value.trim().to_ascii_uppercase().as_str() {
            "NAME" => Some(IdType::Name),
            "CUK" => Some(IdType::Cuk),
            "CTLENDPOINTS" | "CTLEPS" => Some(IdType::CtlEndpoints),
            "CUSTOM" => Some(IdType::Custom),
            _ => None,
        }
    }
}

/// One `[SVRNODE]` or `[SLVNODE]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeEntry {
    /// `NAME` (host name or address).
    pub name: String,
    /// `PORT` (server nodes).
    pub port: Option<u16>,
    /// `CTLPORT`.
    pub ctlport: Option<u16>,
    /// `CUK`, when the template sets one.
    pub cuk: Option<String>,
    /// `CUSTOM_ID_SEED` (the node's id seed with `CHMPXIDTYPE = CUSTOM`).
    pub custom_id_seed: Option<String>,
    /// `CTLENDPOINTS` (`host:port[,host:port...]`).
    pub ctlendpoints: Option<String>,
}

/// What the agent reads back from an ini.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IniFacts {
    /// `[GLOBAL] GROUP`.
    pub group: Option<String>,
    /// `[GLOBAL] PORT` (default for server nodes).
    pub port: Option<u16>,
    /// `[GLOBAL] CTLPORT` (default control port).
    pub ctlport: Option<u16>,
    /// `[GLOBAL] CHMPXIDTYPE`; `None` when the value is not one chmpx knows.
    pub id_type: Option<IdType>,
    /// `[SVRNODE]` entries in order.
    pub servers: Vec<NodeEntry>,
    /// `[SLVNODE]` entries in order.
    pub slaves: Vec<NodeEntry>,
    /// `[K2HDKC] K2HFILE`: the k2hash file k2hdkc opens, as the container
    /// sees it.
    pub k2hfile: Option<String>,
    /// How k2hdkc lays the K2HFILE out (`[K2HDKC] K2HFULLMAP`,
    /// `K2HMASKBIT`, ...), as `k2hlinetool` options: a file a restore
    /// makes gets the same layout.
    pub k2h_layout: Vec<String>,
}

impl IniFacts {
    /// A server's control port: its own `CTLPORT`, else `[GLOBAL]`'s,
    /// else `default` (the parameters' server control port). The one
    /// place this rule is written.
    pub fn ctlport_of(&self, n: &NodeEntry, default: u16) -> u16 {
        n.ctlport.or(self.ctlport).unwrap_or(default)
    }

    /// A server's control address, `NAME:CTLPORT`.
    pub fn ctl_addr_of(&self, n: &NodeEntry, default: u16) -> String {
        format!("{}:{}", n.name, self.ctlport_of(n, default))
    }
}

/// Reads the facts the agent needs. chmpx's ini allows repeated sections
/// and `KEY = value` lines; comments start with `#`.
pub fn facts(text: &str) -> IniFacts {
    let mut out = IniFacts {
        id_type: Some(IdType::Name),
        ..IniFacts::default()
    };
    let mut section = String::new();
    let mut current: Option<NodeEntry> = None;
    let flush = |section: &str, entry: Option<NodeEntry>, out: &mut IniFacts| {
        if let Some(e) = entry {
            match section {
                "SVRNODE" => out.servers.push(e),
                "SLVNODE" => out.slaves.push(e),
                _ => {}
            }
        }
    };
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            flush(&section, current.take(), &mut out);
            section = name.trim().to_ascii_uppercase();
            if section == "SVRNODE" || section == "SLVNODE" {
                current = Some(NodeEntry::default());
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim().to_ascii_uppercase(), value.trim().to_owned());
        match (section.as_str(), key.as_str(), current.as_mut()) {
            ("GLOBAL", "GROUP", _) => out.group = Some(value),
            ("GLOBAL", "PORT", _) => out.port = value.parse().ok(),
            ("GLOBAL", "CTLPORT", _) => out.ctlport = value.parse().ok(),
            ("GLOBAL", "CHMPXIDTYPE", _) => out.id_type = IdType::parse(&value),
            ("K2HDKC", "K2HFILE", _) => out.k2hfile = Some(value).filter(|v| !v.is_empty()),
            ("K2HDKC", "K2HFULLMAP", _)
                if value.eq_ignore_ascii_case("on") || value.eq_ignore_ascii_case("yes") =>
            {
                out.k2h_layout.push("-fullmap".into())
            }
            ("K2HDKC", "K2HMASKBIT" | "K2HCMASKBIT" | "K2HMAXELE" | "K2HPAGESIZE", _)
                if value.parse::<u32>().is_ok() =>
            {
                let flag = match key.as_str() {
                    "K2HMASKBIT" => "-mask",
                    "K2HCMASKBIT" => "-cmask",
                    "K2HMAXELE" => "-elementcnt",
                    _ => "-pagesize",
                };
                out.k2h_layout.extend([flag.to_owned(), value]);
            }
            (_, "NAME", Some(e)) => e.name = value,
            (_, "PORT", Some(e)) => e.port = value.parse().ok(),
            (_, "CTLPORT", Some(e)) => e.ctlport = value.parse().ok(),
            (_, "CUK", Some(e)) => e.cuk = Some(value),
            (_, "CUSTOM_ID_SEED", Some(e)) => {
                e.custom_id_seed = Some(value).filter(|v| !v.is_empty())
            }
            (_, "CTLENDPOINTS", Some(e)) => e.ctlendpoints = Some(value).filter(|v| !v.is_empty()),
            _ => {}
        }
    }
    flush(&section, current.take(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = "# rendered by K2HR3\n[GLOBAL]\nFILEVERSION = 1\nGROUP = c1\nPORT = 8020\nCTLPORT = 8021\nSELFCUK = __SELF_INSTANCE_ID__\n\
        [SVRNODE]\nNAME = 10.0.0.1\nCUK = a\n\n[SVRNODE]\nNAME = 10.0.0.2\nPORT = 8022\nCTLPORT = 8023\nCUK = b\n\
        [SLVNODE]\nNAME = [.]*\nCTLPORT = 8031\n[K2HDKC]\nMQACK = no\nK2HFILE = /var/lib/antpickax/k2hdkc/data/k2hdkc.k2h\n";

    #[test]
    fn reads_nodes_in_order() {
        let f = facts(INI);
        assert_eq!(f.group.as_deref(), Some("c1"));
        assert_eq!((f.port, f.ctlport), (Some(8020), Some(8021)));
        assert_eq!(f.servers.len(), 2);
        assert_eq!(
            f.servers[0],
            NodeEntry {
                name: "10.0.0.1".into(),
                cuk: Some("a".into()),
                ..NodeEntry::default()
            }
        );
        assert_eq!(f.id_type, Some(IdType::Name), "chmpx's default");
        assert_eq!(f.servers[1].ctlport, Some(8023));
        assert_eq!(f.slaves[0].ctlport, Some(8031));
        assert_eq!(
            f.k2hfile.as_deref(),
            Some("/var/lib/antpickax/k2hdkc/data/k2hdkc.k2h")
        );
    }

    #[test]
    fn reads_the_id_type_and_seeds_of_the_dbaas_template() {
        let f = facts(
            &INI.replace("GROUP = c1", "GROUP = c1\nCHMPXIDTYPE  = custom")
                .replace(
                    "CUK = b",
                    "CUK = b\nCUSTOM_ID_SEED = host-b\nCTLENDPOINTS = 10.0.0.2:8023",
                ),
        );
        assert_eq!(f.id_type, Some(IdType::Custom));
        assert_eq!(f.servers[1].custom_id_seed.as_deref(), Some("host-b"));
        assert_eq!(f.servers[1].ctlendpoints.as_deref(), Some("10.0.0.2:8023"));
        assert_eq!(f.servers[0].custom_id_seed, None);
        assert_eq!(
            facts(&INI.replace("GROUP = c1", "GROUP = c1\nCHMPXIDTYPE = BOGUS")).id_type,
            None,
            "a value chmpx refuses"
        );
    }

    #[test]
    fn container_paths_map_into_the_data_volume_only() {
        let (root, host) = (
            Path::new("/var/lib/antpickax/k2hdkc"),
            Path::new("/mnt/vol"),
        );
        assert_eq!(
            host_path(Path::new("/var/lib/antpickax/k2hdkc/data"), root, host),
            Some("/mnt/vol/data".into())
        );
        assert_eq!(host_path(root, root, host), Some("/mnt/vol".into()));
        assert_eq!(
            host_path(Path::new("/tmp/data"), root, host),
            None,
            "outside the volume"
        );
        assert_eq!(
            host_path(Path::new("/var/lib/antpickax/k2hdkc/../../etc"), root, host),
            None,
            "no way out with .."
        );
        assert_eq!(host_path(Path::new("data"), root, host), None, "relative");
    }

    #[test]
    fn personalize_replaces_the_placeholder() {
        assert!(personalize(INI, "cuk-1").contains("SELFCUK = cuk-1"));
        assert!(!personalize(INI, "cuk-1").contains(SELF_PLACEHOLDER));
    }

    #[test]
    fn config_dir_is_readable_by_the_database_user_under_umask_0077() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("etc");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        ensure_shared_dir(&dir).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&dir).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn atomic_write_reports_changes_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conf/k2hdkc.ini");
        assert!(write_atomic(&p, "a", 0o644).unwrap());
        assert!(
            !write_atomic(&p, "a", 0o644).unwrap(),
            "same content: untouched"
        );
        assert!(write_atomic(&p, "b", 0o600).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left");
    }
}
