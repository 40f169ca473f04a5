//! The chmpx configuration as chmpx checks it (yahoojapan/chmpx
//! lib/chmconf.cc `CHMIniConf::LoadConfiguration`, `IsMatchCuk`), and how a
//! process finds "self" in it.
//!
//! Required: `[GLOBAL]` with `GROUP`, `FILEVERSION`, `DELIVERMODE`
//! (`hash`/`random`); at least one `[SVRNODE]` (`NAME`; `PORT` and
//! `CTLPORT` from the node or from `[GLOBAL]`); at least one `[SLVNODE]`
//! (`NAME`; `CTLPORT` from the node or `[GLOBAL]`). Booleans are
//! `ON`/`YES`/`OFF`/`NO` (anything else is an error). `MQACK` defaults to
//! on, `AUTOMERGE`/`DOMERGE` to off; with `DELIVERMODE = hash`, AUTOMERGE
//! without DOMERGE is turned off (with `random`, AUTOMERGE is forced on).
//!
//! Self: the control port is `-ctlport`, else `[GLOBAL] SELFCTLPORT`
//! (`[GLOBAL] CTLPORT` is only the default of the nodes' ports); the CUK is
//! `-cuk`, else `SELFCUK`, else empty. A server entry is self when its
//! control port equals it, its `CUK` matches (both empty, equal, or the
//! entry's CUK as a pattern) and its `NAME` is this host. Otherwise a
//! slave entry with that control port (any, without one), a matching CUK
//! and a `NAME` pattern matching one of this host's names. `MODE`, when
//! given, must agree.

use std::collections::BTreeMap;

use crate::ini::{self, Section};
use crate::net::Local;

/// How chmpx derives node ids (`CHMPXIDTYPE`); it decides the argument of
/// `SERVICEOUT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdType {
    /// `NAME` (default): `SERVICEOUT <name>:<ctlport>`.
    Name,
    /// `CUK`: `SERVICEOUT <name>:<ctlport>:<cuk>`.
    Cuk,
    /// `CTLENDPOINTS`/`CTLEPS`: `SERVICEOUT <name>:<ctlport>:<endpoints>`.
    CtlEndpoints,
    /// `CUSTOM`: `SERVICEOUT <name>:<ctlport>:<CUSTOM_ID_SEED>`.
    Custom,
}

/// One `[SVRNODE]` or `[SLVNODE]`, ports resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCfg {
    /// `NAME` (servers: normalised, `localhost` → primary address).
    pub name: String,
    /// `PORT` (servers only).
    pub port: Option<u16>,
    /// `CTLPORT`.
    pub ctlport: u16,
    /// `CUK` (empty when absent).
    pub cuk: String,
    /// `CUSTOM_ID_SEED` (empty when absent).
    pub custom_seed: String,
}

/// `MODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `SERVER`.
    Server,
    /// `SLAVE`.
    Slave,
}

/// A checked configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conf {
    /// `GROUP`.
    pub group: String,
    /// `FILEVERSION`.
    pub fileversion: String,
    /// `MODE`, when given.
    pub mode: Option<Mode>,
    /// `DELIVERMODE = random`.
    pub random: bool,
    /// `CHMPXIDTYPE`.
    pub id_type: IdType,
    /// Effective AUTOMERGE.
    pub automerge: bool,
    /// Effective DOMERGE.
    pub domerge: bool,
    /// `MQACK` (default on; k2hdkc refuses on).
    pub mqack: bool,
    /// `SELFCTLPORT`.
    pub selfctlport: Option<u16>,
    /// `SELFCUK`.
    pub selfcuk: String,
    /// `MAXMQSERVER`, `MAXMQCLIENT` (for the status dump only).
    pub max_mq: (u32, u32),
    /// Server nodes, sorted by name and control port as chmpx sorts them.
    pub servers: Vec<NodeCfg>,
    /// Slave nodes.
    pub slaves: Vec<NodeCfg>,
    /// The `[K2HDKC]` section, if any.
    pub k2hdkc: Option<BTreeMap<String, String>>,
    /// Things chmpx would warn about.
    pub warnings: Vec<String>,
}

/// This process's place in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Me {
    /// A server node (else a slave).
    pub server: bool,
    /// Index into `servers` or `slaves`.
    pub index: usize,
    /// The self control port.
    pub ctlport: u16,
    /// The self CUK.
    pub cuk: String,
}

fn boolean(g: &Section, key: &str, default: bool) -> Result<bool, String> {
    match g.get(key) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("yes") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("no") => Ok(false),
        Some(v) => Err(format!("configuration has wrong \"{key}\" value({v}) in [GLOBAL] section.")),
    }
}

fn port(v: &str, what: &str) -> Result<u16, String> {
    v.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{what} has an invalid port({v})."))
}

/// Whether `cuk` matches an entry's `basecuk` (chmpx `IsMatchCuk`).
pub fn cuk_matches(cuk: &str, basecuk: &str) -> bool {
    if cuk.is_empty() && basecuk.is_empty() {
        true
    } else if basecuk.is_empty() {
        false
    } else {
        cuk == basecuk || crate::regex::search(basecuk, cuk)
    }
}

/// Checks an ini text as chmpx does.
pub fn load(text: &str, local: &Local) -> Result<Conf, String> {
    let raw = ini::parse(text);
    let mut warnings = raw.warnings.clone();
    let g = raw.merged("GLOBAL").ok_or("configuration does not have [GLOBAL] section.")?;
    let need = |k: &str| {
        g.get(k)
            .map(str::to_owned)
            .ok_or_else(|| format!("configuration does not have \"{k}\" in [GLOBAL] section."))
    };
    let group = need("GROUP")?;
    if group.is_empty() {
        return Err("configuration has an empty \"GROUP\".".into());
    }
    let fileversion = need("FILEVERSION")?;
    let mode = match g.get("MODE") {
        None => None,
        Some(m) if m.eq_ignore_ascii_case("server") => Some(Mode::Server),
        Some(m) if m.eq_ignore_ascii_case("slave") => Some(Mode::Slave),
        Some(m) => return Err(format!("configuration has \"MODE\" in [GLOBAL] section, but value {m} does not defined.")),
    };
    let id_type = match g.get("CHMPXIDTYPE").map(str::to_ascii_uppercase).as_deref() {
        None => IdType::Name,
        Some("NAME") => IdType::Name,
        Some("CUK") => IdType::Cuk,
        Some("CTLENDPOINTS") | Some("CTLEPS") => IdType::CtlEndpoints,
        Some("CUSTOM") => IdType::Custom,
        Some(other) => {
            return Err(format!(
                "configuration has \"CHMPXIDTYPE\" in [GLOBAL] section, but value {other} does not defined."
            ))
        }
    };
    let random = match need("DELIVERMODE")?.to_ascii_lowercase().as_str() {
        "random" => true,
        "hash" => false,
        other => return Err(format!("configuration has wrong \"DELIVERMODE\" value({other}).")),
    };
    let mqack = boolean(&g, "MQACK", true)?;
    let mut automerge = boolean(&g, "AUTOMERGE", false)?;
    let mut domerge = boolean(&g, "DOMERGE", false)?;
    if random {
        automerge = true;
        domerge = false;
    } else if automerge && !domerge {
        warnings.push(
            "Specified DOMERGE=OFF and AUTOMERGE=ON on DELIVERMODE=hash. These options can not be specified at the same time, so SET AUTOMERGE=OFF.".into(),
        );
        automerge = false;
    }
    let gport = g.get("PORT").map(|p| port(p, "[GLOBAL] PORT")).transpose()?;
    let gctl = g.get("CTLPORT").map(|p| port(p, "[GLOBAL] CTLPORT")).transpose()?;
    let selfctlport = g.get("SELFCTLPORT").map(|p| port(p, "[GLOBAL] SELFCTLPORT")).transpose()?;
    let selfcuk = g.get("SELFCUK").unwrap_or("").to_owned();
    let num = |k: &str, d: u32| g.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    // chmpx defaults (lib/chmstructure.h): 1 server MQ (at most 128), 8192 client MQs.
    let max_mq = (num("MAXMQSERVER", 1).min(128), num("MAXMQCLIENT", 8192));

    let mut servers = Vec::new();
    for s in raw.all("SVRNODE") {
        let Some(name) = s.get("NAME") else {
            warnings.push("invalid server node data, probably NAME is not specified.".into());
            continue;
        };
        let port_ = match s.get("PORT") {
            Some(p) => port(p, &format!("[SVRNODE] {name} PORT"))?,
            None => gport.ok_or_else(|| format!("configuration does not have \"PORT\" in {name} server node in [SVRNODE] section."))?,
        };
        let ctlport = match s.get("CTLPORT") {
            Some(p) => port(p, &format!("[SVRNODE] {name} CTLPORT"))?,
            None => gctl.ok_or_else(|| format!("configuration does not have \"CTLPORT\" in {name} server node in [SVRNODE] section."))?,
        };
        let cuk = s.get("CUK").unwrap_or("").to_owned();
        if cuk.is_empty() && id_type == IdType::Cuk {
            return Err(format!(
                "configuration does not have \"CUK\" in {name} server node in [SVRNODE] section, but chmpxid seed needs \"CUK\"."
            ));
        }
        let custom_seed = s.get("CUSTOM_ID_SEED").unwrap_or("").to_owned();
        if custom_seed.is_empty() && id_type == IdType::Custom {
            return Err(format!(
                "configuration does not have \"CUSTOM_ID_SEED\" in {name} server node in [SVRNODE] section, but chmpxid seed needs it."
            ));
        }
        servers.push(NodeCfg {
            name: local.normalise(name),
            port: Some(port_),
            ctlport,
            cuk,
            custom_seed,
        });
    }
    if servers.is_empty() {
        return Err("configuration does not have [SVRNODE] section.".into());
    }
    servers.sort_by(|a, b| (&a.name, a.ctlport).cmp(&(&b.name, b.ctlport)));

    let mut slaves = Vec::new();
    for s in raw.all("SLVNODE") {
        let Some(name) = s.get("NAME") else {
            warnings.push("invalid slave node data, probably NAME is not specified.".into());
            continue;
        };
        let ctlport = match s.get("CTLPORT") {
            Some(p) => port(p, &format!("[SLVNODE] {name} CTLPORT"))?,
            None => gctl.ok_or_else(|| format!("configuration does not have \"CTLPORT\" in {name} slave node in [SLVNODE] section."))?,
        };
        slaves.push(NodeCfg {
            name: name.to_owned(),
            port: None,
            ctlport,
            cuk: s.get("CUK").unwrap_or("").to_owned(),
            custom_seed: s.get("CUSTOM_ID_SEED").unwrap_or("").to_owned(),
        });
    }
    if slaves.is_empty() {
        return Err("configuration does not have [SLVNODE] section.".into());
    }
    let k2hdkc = raw.merged("K2HDKC").map(|s| s.entries.into_iter().collect());
    Ok(Conf {
        group,
        fileversion,
        mode,
        random,
        id_type,
        automerge,
        domerge,
        mqack,
        selfctlport,
        selfcuk,
        max_mq,
        servers,
        slaves,
        k2hdkc,
        warnings,
    })
}

impl Conf {
    /// Finds this process in the configuration (`-ctlport`, `-cuk`).
    pub fn find_self(&self, ctlport: Option<u16>, cuk: Option<&str>, local: &Local) -> Result<Me, String> {
        let ctl = ctlport.or(self.selfctlport);
        let cuk = cuk.unwrap_or(&self.selfcuk).to_owned();
        let server = self
            .servers
            .iter()
            .position(|n| Some(n.ctlport) == ctl && cuk_matches(&cuk, &n.cuk) && local.is_local(&n.name));
        let shown = ctl.map_or("none".to_owned(), |p| p.to_string());
        match (self.mode, server) {
            (Some(Mode::Slave), Some(_)) => Err(format!(
                "configuration has \"MODE\" as slave mode, but self control port({shown}) found in server list."
            )),
            (Some(Mode::Server), None) => Err(format!(
                "configuration has \"MODE\" as server mode, but self control port({shown}) and cuk({cuk}) not found in server list."
            )),
            (_, Some(index)) => Ok(Me {
                server: true,
                index,
                ctlport: self.servers[index].ctlport,
                cuk,
            }),
            (_, None) => {
                let slave = self.slaves.iter().position(|n| {
                    ctl.is_none_or(|c| c == n.ctlport)
                        && cuk_matches(&cuk, &n.cuk)
                        && (local.is_local(&n.name) || local.names().any(|l| crate::regex::search(&n.name, l)))
                });
                match slave {
                    Some(index) => Ok(Me {
                        server: false,
                        index,
                        ctlport: ctl.unwrap_or(self.slaves[index].ctlport),
                        cuk,
                    }),
                    None => Err(format!(
                        "could not find self (control port {shown}, cuk \"{cuk}\") in the server nor the slave list."
                    )),
                }
            }
        }
    }

    /// The message-queue depth chmpx needs: `MAXMQSERVER + MAXMQCLIENT`. Not
    /// as root, chmpx refuses to start when the IPC namespace's
    /// `fs.mqueue.msg_max` is smaller (`Could not get mq size`).
    pub fn mq_needed(&self) -> u64 {
        u64::from(self.max_mq.0) + u64::from(self.max_mq.1)
    }

    /// `<name>:<ctlport>` of a server, the key chmpx reports it under.
    pub fn key(n: &NodeCfg) -> String {
        format!("{}:{}", n.name, n.ctlport)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The shape the K2HR3 template renders (buildutils/custom_k2hr3_resource.txt).
    pub const SERVER_INI: &str = "\
[GLOBAL]
FILEVERSION         = 1
GROUP               = cluster1
MODE                = SERVER
DELIVERMODE         = hash
MAXMQSERVER         = 8
MAXMQCLIENT         = 128
PORT                = 18020
CTLPORT             = 18021
SELFCTLPORT         = 18021
SELFCUK             = cuk-a
MQACK               = no
AUTOMERGE           = on
DOMERGE             = on
[SVRNODE]
NAME                = 127.0.0.1
CUK                 = cuk-a
PORT                = 18020
CTLPORT             = 18021
[SVRNODE]
NAME                = 127.0.0.1
CUK                 = cuk-b
PORT                = 18022
CTLPORT             = 18023
[SLVNODE]
NAME                = [.]*
CTLPORT             = 18031
[K2HDKC]
K2HTYPE             = file
K2HFILE             = /var/lib/antpickax/k2hdkc/k2hdkc.k2h
";

    pub fn local() -> Local {
        Local::fixed(&["localhost", "127.0.0.1", "node-a"], Some("10.0.0.5"))
    }

    #[test]
    fn loads_the_template_shape() {
        let c = load(SERVER_INI, &local()).unwrap();
        assert_eq!(c.group, "cluster1");
        assert!(c.automerge && c.domerge && !c.mqack);
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[1].ctlport, 18023);
        assert_eq!(c.slaves[0].name, "[.]*");
        assert_eq!(c.k2hdkc.as_ref().unwrap()["K2HFILE"], "/var/lib/antpickax/k2hdkc/k2hdkc.k2h");
        assert_eq!(c.mq_needed(), 136, "the old template's 8 + 128");
        let defaults = load(&SERVER_INI.replace("MAXMQSERVER         = 8\nMAXMQCLIENT         = 128\n", ""), &local()).unwrap();
        assert_eq!(defaults.mq_needed(), 8193, "chmpx's defaults: far above the host's msg_max of 10");
    }

    #[test]
    fn finds_self_like_chmpx() {
        let c = load(SERVER_INI, &local()).unwrap();
        let me = c.find_self(None, None, &local()).unwrap();
        assert!(me.server && me.index == 0, "SELFCTLPORT and SELFCUK");
        let err = c.find_self(Some(18023), None, &local()).unwrap_err();
        assert!(err.contains("server mode"), "port 18023 has CUK cuk-b, self is cuk-a: {err}");
        let me = c.find_self(Some(18023), Some("cuk-b"), &local()).unwrap();
        assert_eq!((me.server, me.index), (true, 1));
        assert!(
            c.find_self(Some(18021), None, &Local::fixed(&["other"], None)).is_err(),
            "NAME must be this host"
        );

        let slave = SERVER_INI
            .replace("MODE                = SERVER", "MODE = SLAVE")
            .replace("SELFCUK             = cuk-a", "");
        let c = load(&slave, &local()).unwrap();
        let me = c.find_self(Some(18031), None, &local()).unwrap();
        assert!(!me.server);
        assert!(c.find_self(Some(18021), Some("cuk-a"), &local()).unwrap_err().contains("slave mode"));
        assert!(c.find_self(Some(18099), None, &local()).is_err());
    }

    #[test]
    fn refuses_what_chmpx_refuses() {
        let l = local();
        for (from, to, why) in [
            ("GROUP               = cluster1", "", "GROUP"),
            ("FILEVERSION         = 1", "", "FILEVERSION"),
            ("DELIVERMODE         = hash", "", "DELIVERMODE"),
            ("DELIVERMODE         = hash", "DELIVERMODE = round", "DELIVERMODE"),
            ("MQACK               = no", "MQACK = nope", "MQACK"),
            ("AUTOMERGE           = on", "AUTOMERGE = 1", "AUTOMERGE"),
            ("MODE                = SERVER", "MODE = BOTH", "MODE"),
            ("[SLVNODE]\nNAME                = [.]*\nCTLPORT             = 18031\n", "", "SLVNODE"),
        ] {
            let text = SERVER_INI.replace(from, to);
            let err = load(&text, &l).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
        let no_servers: String = SERVER_INI.replace("[SVRNODE]", "[OTHER]");
        assert!(load(&no_servers, &l).unwrap_err().contains("SVRNODE"));
        let no_ports = SERVER_INI
            .replace("PORT                = 18020\nCTLPORT             = 18021\nSELFCTLPORT", "SELFCTLPORT")
            .replace("PORT                = 18022\n", "");
        assert!(load(&no_ports, &l).unwrap_err().contains("PORT"));
    }

    #[test]
    fn merge_flags_and_defaults() {
        let l = local();
        let c = load(&SERVER_INI.replace("DOMERGE             = on", ""), &l).unwrap();
        assert!(!c.automerge, "hash mode: AUTOMERGE needs DOMERGE");
        let c = load(&SERVER_INI.replace("AUTOMERGE           = on", "").replace("MQACK               = no", ""), &l).unwrap();
        assert!(!c.automerge && c.mqack, "defaults: AUTOMERGE off, MQACK on");
        let c = load(
            &SERVER_INI.replace("NAME                = 127.0.0.1\nCUK                 = cuk-b", "NAME = localhost\nCUK = cuk-b"),
            &l,
        )
        .unwrap();
        assert!(c.servers.iter().any(|n| n.name == "10.0.0.5"), "localhost normalised to the primary address");
    }

    #[test]
    fn cuk_patterns() {
        assert!(cuk_matches("", ""));
        assert!(!cuk_matches("a", ""));
        assert!(cuk_matches("abc", "abc"));
        assert!(cuk_matches("abc", "^a.*"));
        assert!(!cuk_matches("", "abc"));
    }
}
