//! Shared parts of the chmpx/k2hdkc STAND-INs: flags, the ini, self
//! detection, signals. Test code: it follows the real image's contract
//! (CONTRACTS.md §6), not chmpx's implementation.

use std::collections::HashMap;

/// `-conf <ini> -ctlport <port>` and the rest, as the real binaries take them.
pub struct Flags {
    /// `-conf`.
    pub conf: String,
    /// `-ctlport`.
    pub ctlport: Option<u16>,
}

/// Reads the flags; other flags (`-d`, `-cuk`, `-comlog`, ...) are accepted.
pub fn flags() -> Flags {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let Some(conf) = get("-conf") else {
        eprintln!("[ERR] -conf option is not specified.");
        std::process::exit(1);
    };
    Flags { conf, ctlport: get("-ctlport").and_then(|p| p.parse().ok()) }
}

/// A `[SVRNODE]`/`[SLVNODE]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub port: Option<u16>,
    pub ctlport: Option<u16>,
    pub cuk: Option<String>,
}

/// The ini as the stand-ins need it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ini {
    pub global: HashMap<String, String>,
    pub k2hdkc: HashMap<String, String>,
    pub servers: Vec<Node>,
    pub slaves: Vec<Node>,
}

/// Parses the ini; an error names what is wrong (chmpx exits on it).
pub fn parse(text: &str) -> Result<Ini, String> {
    let mut ini = Ini::default();
    let mut section = String::new();
    let mut node: Option<Node> = None;
    let mut push = |section: &str, node: Option<Node>, ini: &mut Ini| {
        if let Some(n) = node {
            if section == "SVRNODE" {
                ini.servers.push(n)
            } else {
                ini.slaves.push(n)
            }
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            let name = line.trim_start_matches('[').trim_end_matches(']').trim().to_ascii_uppercase();
            push(&section, node.take(), &mut ini);
            if name == "SVRNODE" || name == "SLVNODE" {
                node = Some(Node { name: String::new(), port: None, ctlport: None, cuk: None });
            }
            section = name;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {}: not KEY = VALUE", i + 1));
        };
        let (k, v) = (k.trim().to_ascii_uppercase(), v.trim().to_owned());
        match (section.as_str(), node.as_mut()) {
            ("GLOBAL", _) => {
                ini.global.insert(k, v);
            }
            ("K2HDKC", _) => {
                ini.k2hdkc.insert(k, v);
            }
            (_, Some(n)) => match k.as_str() {
                "NAME" => n.name = v,
                "PORT" => n.port = v.parse().ok(),
                "CTLPORT" => n.ctlport = v.parse().ok(),
                "CUK" => n.cuk = Some(v),
                _ => {}
            },
            _ => {}
        }
    }
    push(&section, node.take(), &mut ini);
    for key in ["GROUP", "FILEVERSION", "DELIVERMODE"] {
        if !ini.global.contains_key(key) {
            return Err(format!("[GLOBAL] {key} is missing"));
        }
    }
    if ini.servers.is_empty() {
        return Err("no [SVRNODE]".into());
    }
    Ok(ini)
}

impl Ini {
    fn global_u16(&self, key: &str) -> Option<u16> {
        self.global.get(key).and_then(|v| v.parse().ok())
    }

    /// This process's control port.
    pub fn self_ctlport(&self, flag: Option<u16>) -> Option<u16> {
        flag.or_else(|| self.global_u16("SELFCTLPORT")).or_else(|| self.global_u16("CTLPORT"))
    }

    /// The server entry that is this node: its control port, and its CUK
    /// when the ini names one (SELFCUK), else a local name.
    pub fn self_server(&self, ctlport: u16) -> Option<&Node> {
        let selfcuk = self.global.get("SELFCUK");
        let gctl = self.global_u16("CTLPORT");
        self.servers.iter().find(|n| {
            n.ctlport.or(gctl) == Some(ctlport)
                && match (selfcuk, &n.cuk) {
                    (Some(s), Some(c)) => s == c,
                    _ => is_local(&n.name),
                }
        })
    }

    /// The slave entry for this control port, if any.
    pub fn self_slave(&self, ctlport: u16) -> Option<&Node> {
        self.slaves.iter().find(|n| n.ctlport == Some(ctlport))
    }
}

/// Whether a node name means this host.
pub fn is_local(name: &str) -> bool {
    matches!(name, "127.0.0.1" | "localhost" | "::1") || std::net::UdpSocket::bind((name, 0)).is_ok()
}

extern "C" fn leave(_: libc::c_int) {
    unsafe { libc::_exit(0) };
}

/// SIGINT and SIGHUP end the process; SIGTERM is ignored when `block_term`
/// (real chmpx blocks it). As PID 1 in a container, default actions do
/// nothing, so handlers are installed.
pub fn signals(block_term: bool) {
    unsafe {
        libc::signal(libc::SIGINT, leave as libc::sighandler_t);
        libc::signal(libc::SIGHUP, leave as libc::sighandler_t);
        libc::signal(libc::SIGTERM, if block_term { libc::SIG_IGN } else { leave as libc::sighandler_t });
    }
}

/// The directory of [K2HDKC] K2HFILE (the data volume).
pub fn data_dir(ini: &Ini) -> std::path::PathBuf {
    ini.k2hdkc
        .get("K2HFILE")
        .and_then(|f| std::path::Path::new(f).parent().map(|p| p.to_path_buf()))
        .unwrap_or_else(|| "/var/lib/antpickax/k2hdkc".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = "[GLOBAL]\nGROUP=g\nFILEVERSION=1\nDELIVERMODE=hash\nCTLPORT=8021\nSELFCUK=b\n[SVRNODE]\nNAME=127.0.0.1\nCUK=a\nCTLPORT=18021\n[SVRNODE]\nNAME=127.0.0.1\nCUK=b\nCTLPORT=18023\n[SLVNODE]\nNAME=[.]*\nCTLPORT=18031\n[K2HDKC]\nK2HFILE=/d/x.k2h\n";

    #[test]
    fn self_by_ctlport_and_cuk() {
        let ini = parse(INI).unwrap();
        assert_eq!(ini.self_server(18023).unwrap().cuk.as_deref(), Some("b"));
        assert!(ini.self_server(18021).is_none(), "CUK a is not SELFCUK b");
        assert_eq!(ini.self_slave(18031).unwrap().name, "[.]*");
        assert_eq!(data_dir(&ini), std::path::PathBuf::from("/d"));
        assert!(parse("[GLOBAL]\nGROUP=g\n").is_err());
    }
}
