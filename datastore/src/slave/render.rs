//! A chmpx SLAVE's ini (an application host's way into the ring), made
//! from what K2HR3 renders for the cluster: the slave role's resource
//! (`MODE = SLAVE`, the packaged template) or, as well, a server
//! resource. The [SVRNODE] list is kept as rendered, so the slave routes
//! to the ring as it is now; everything that makes the ini a slave's is
//! set here, whatever the template said (CONTRACTS.md §7):
//!
//! - `[GLOBAL]`: `MODE = SLAVE`, `CTLPORT` and `SELFCTLPORT` = the slave's
//!   control port, no `SELFCUK`;
//! - every `[SVRNODE]` carries its own `PORT` and `CTLPORT` (a server
//!   resource leaves them to `[GLOBAL]`, which now holds the slave's);
//! - one `[SLVNODE]`, `NAME = [.]*` (this host, whatever its name), with
//!   this slave's `CUSTOM_ID_SEED` under `CHMPXIDTYPE = CUSTOM` (the chmpx
//!   id; without one chmpx exits, and two slaves with one seed collide);
//! - no `[K2HDKC]` (a slave runs no k2hdkc server).

use crate::ini::{self, IdType, IniFacts};

/// The slave control port when neither the caller nor the ini names one
/// (the configuration group's `chmpx-slave-ctlport` default).
pub const DEFAULT_SLAVE_CTLPORT: u16 = 8031;

/// A slave ini and what the slave needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveIni {
    /// The ini text to give chmpx.
    pub text: String,
    /// The slave's control port.
    pub ctlport: u16,
    /// The ring's server nodes, as the ini lists them.
    pub facts: IniFacts,
    /// `fs.mqueue.msg_max` chmpx needs (MAXMQSERVER + MAXMQCLIENT, at
    /// least 1024).
    pub mq_msg_max: u32,
}

struct Section {
    /// Upper-case name; `None` before the first header.
    name: Option<String>,
    lines: Vec<String>,
}

fn key_of(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    if t.starts_with('#') || t.starts_with(';') {
        return None;
    }
    let (k, v) = t.split_once('=')?;
    Some((k.trim().to_ascii_uppercase(), v.trim().to_owned()))
}

fn header(line: &str) -> Option<String> {
    let t = line.trim();
    let name = t.strip_prefix('[')?.strip_suffix(']')?.trim();
    (!name.is_empty()).then(|| name.to_ascii_uppercase())
}

fn sections(text: &str) -> Vec<Section> {
    let mut out = vec![Section {
        name: None,
        lines: vec![],
    }];
    for line in text.lines() {
        match header(line) {
            Some(name) => out.push(Section {
                name: Some(name),
                lines: vec![line.to_owned()],
            }),
            None => out
                .last_mut()
                .expect("one section")
                .lines
                .push(line.to_owned()),
        }
    }
    out
}

impl Section {
    fn value(&self, key: &str) -> Option<String> {
        self.lines
            .iter()
            .filter_map(|l| key_of(l))
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn is(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name)
    }

    /// Sets `set` (replacing the first line of each key, adding missing
    /// keys after the last key line) and removes the keys in `drop`.
    fn edit(&mut self, set: &[(&str, String)], drop: &[&str]) {
        let mut seen = Vec::new();
        let mut lines = Vec::new();
        let mut last_key = 0;
        for line in self.lines.drain(..) {
            let key = key_of(&line).map(|(k, _)| k);
            match key.as_deref() {
                Some(k) if drop.contains(&k) => continue,
                Some(k) => match set.iter().find(|(s, _)| *s == k) {
                    Some(_) if seen.contains(&k.to_owned()) => continue,
                    Some((s, v)) => {
                        seen.push(k.to_owned());
                        lines.push(format!("{s:<22} = {v}"));
                    }
                    None => lines.push(line),
                },
                None => lines.push(line),
            }
            if key.is_some() || header(lines.last().map_or("", |l| l.as_str())).is_some() {
                last_key = lines.len();
            }
        }
        let added = set
            .iter()
            .filter(|(k, _)| !seen.iter().any(|s| s == k))
            .map(|(k, v)| format!("{k:<22} = {v}"));
        let tail = lines.split_off(last_key);
        lines.extend(added);
        lines.extend(tail);
        self.lines = lines;
    }
}

/// The ini text of a rendered resource as K2HR3 answers it
/// (`{"resource": "<ini>", ...}`), or the ini text itself.
pub fn resource_text(raw: &str) -> Result<String, IniError> {
    if !raw.trim_start().starts_with('{') {
        return Ok(raw.to_owned());
    }
    let doc: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| IniError::NotJson(e.to_string()))?;
    doc.get("resource")
        .and_then(|r| r.as_str())
        .map(str::to_owned)
        .ok_or(IniError::NoResource)
}

/// Why a resource makes no slave ini: what chmpx would refuse, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IniError {
    /// Text that starts as JSON but is not.
    #[error("the resource looks like JSON but does not parse: {0}")]
    NotJson(String),
    /// JSON without K2HR3's `resource` member.
    #[error("the resource is JSON without a \"resource\" string (K2HR3 answers {{\"resource\": \"<ini>\"}})")]
    NoResource,
    /// Not exactly one `[GLOBAL]`.
    #[error(
        "the K2HR3 resource has {0} [GLOBAL] sections, not 1: is it the cluster's k2hdkc.ini?"
    )]
    Globals(usize),
    /// No server to join yet.
    #[error("the K2HR3 resource lists no [SVRNODE]: the cluster has no server yet")]
    NoServer,
    /// A port that is not one.
    #[error("the K2HR3 resource's {what} is not a port: {value:?}")]
    NotAPort {
        /// Which value.
        what: &'static str,
        /// As written.
        value: String,
    },
    /// `CHMPXIDTYPE = CUSTOM` without a usable seed.
    #[error(
        "CHMPXIDTYPE = CUSTOM needs this slave's id seed (a word, unique per slave); got {0:?}"
    )]
    NoSeed(String),
    /// A server entry without a port that `[GLOBAL]` does not give either.
    #[error("a [SVRNODE] has no {0} and [GLOBAL] gives none")]
    NoServerPort(&'static str),
}

/// Makes a slave ini from the rendered resource. `ctlport`: the slave's
/// control port; `None` takes the resource's (`[GLOBAL] CTLPORT` of a
/// slave resource, the `[SLVNODE] CTLPORT` of a server one, else 8031).
/// `seed`: this slave's `CUSTOM_ID_SEED` (unique per slave).
pub fn slave_ini(resource: &str, seed: &str, ctlport: Option<u16>) -> Result<SlaveIni, IniError> {
    let mut secs = sections(resource);
    let globals = secs.iter().filter(|s| s.is("GLOBAL")).count();
    if globals != 1 {
        return Err(IniError::Globals(globals));
    }
    if !secs.iter().any(|s| s.is("SVRNODE")) {
        return Err(IniError::NoServer);
    }
    let global = secs.iter().find(|s| s.is("GLOBAL")).expect("one GLOBAL");
    let slave_mode = global
        .value("MODE")
        .is_some_and(|m| m.eq_ignore_ascii_case("SLAVE"));
    let global_port = port(global.value("PORT"), "[GLOBAL] PORT")?;
    let global_ctlport = port(global.value("CTLPORT"), "[GLOBAL] CTLPORT")?;
    let slvnode_ctlport = secs
        .iter()
        .filter(|s| s.is("SLVNODE"))
        .find_map(|s| s.value("CTLPORT"));
    let ctlport = match ctlport {
        Some(p) => p,
        None if slave_mode => global_ctlport.unwrap_or(DEFAULT_SLAVE_CTLPORT),
        None => port(slvnode_ctlport, "[SLVNODE] CTLPORT")?.unwrap_or(DEFAULT_SLAVE_CTLPORT),
    };
    let custom =
        global.value("CHMPXIDTYPE").and_then(|t| IdType::parse(&t)) == Some(IdType::Custom);
    if custom && (seed.is_empty() || seed.contains(char::is_whitespace)) {
        return Err(IniError::NoSeed(seed.to_owned()));
    }
    let mq_msg_max = ["MAXMQSERVER", "MAXMQCLIENT"]
        .iter()
        .map(|k| {
            global
                .value(k)
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        })
        .sum::<u32>()
        .max(1024);
    // A server resource's [GLOBAL] ports were the servers'.
    let server_ports = (global_port, global_ctlport);
    for s in secs.iter_mut() {
        if s.is("GLOBAL") {
            s.edit(
                &[
                    ("MODE", "SLAVE".into()),
                    ("CTLPORT", ctlport.to_string()),
                    ("SELFCTLPORT", ctlport.to_string()),
                ],
                &["SELFCUK"],
            );
        } else if s.is("SVRNODE") {
            fill_server_ports(s, server_ports, slave_mode)?;
        }
    }
    let text = assemble(&secs, ctlport, custom.then_some(seed));
    let facts = ini::facts(&text);
    Ok(SlaveIni {
        text,
        ctlport,
        facts,
        mq_msg_max,
    })
}

/// A port value of the resource, if given.
fn port(v: Option<String>, what: &'static str) -> Result<Option<u16>, IniError> {
    v.map(|value| {
        value
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(IniError::NotAPort { what, value })
    })
    .transpose()
}

/// Writes into a `[SVRNODE]` the PORT and CTLPORT it took from a server
/// resource's `[GLOBAL]`.
fn fill_server_ports(
    s: &mut Section,
    (port, ctlport): (Option<u16>, Option<u16>),
    slave_mode: bool,
) -> Result<(), IniError> {
    let mut fill = Vec::new();
    for (key, global) in [("PORT", port), ("CTLPORT", ctlport)] {
        if s.value(key).is_none() {
            match global.filter(|_| !slave_mode) {
                Some(p) => fill.push((key, p.to_string())),
                None => return Err(IniError::NoServerPort(key)),
            }
        }
    }
    s.edit(&fill, &[]);
    Ok(())
}

/// The sections but the servers' own (`[SLVNODE]`, `[K2HDKC]`), then this
/// slave's `[SLVNODE]`.
fn assemble(secs: &[Section], ctlport: u16, seed: Option<&str>) -> String {
    let mut out: Vec<String> = Vec::new();
    for s in secs.iter().filter(|s| !s.is("SLVNODE") && !s.is("K2HDKC")) {
        out.extend(s.lines.iter().cloned());
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out.push(String::new());
    out.push("[SLVNODE]".to_owned());
    out.push(format!("{:<22} = [.]*", "NAME"));
    out.push(format!("{:<22} = {ctlport}", "CTLPORT"));
    if let Some(seed) = seed {
        out.push(format!("{:<22} = {seed}", "CUSTOM_ID_SEED"));
    }
    out.push(String::new());
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape the packaged template renders for the server role.
    const SERVER: &str = "#\n[GLOBAL]\nGROUP = c1\nMODE = SERVER\nCHMPXIDTYPE = CUSTOM\nMAXMQSERVER = 8\nMAXMQCLIENT = 128\n\
        PORT = 8020\nCTLPORT = 8021\nSELFCTLPORT = 8021\nSELFCUK = __SELF_INSTANCE_ID__\nAUTOMERGE = off\n\n\
        [SVRNODE]\nNAME = 10.0.0.1\nCUK = a\nCUSTOM_ID_SEED = host-a\n\n\
        [SVRNODE]\nNAME = 10.0.0.2\nPORT = 8022\nCTLPORT = 8023\nCUK = b\nCUSTOM_ID_SEED = host-b\n\n\
        [SLVNODE]\nNAME = [.]*\nCTLPORT = 8032\n\n[K2HDKC]\nK2HFILE = /var/lib/antpickax/k2hdkc/data/k2hdkc.k2h\n";

    /// And for the slave role (`chmpx-mode` SLAVE), with two slaves.
    const SLAVE: &str = "[GLOBAL]\nGROUP = c1\nMODE = SLAVE\nCHMPXIDTYPE = CUSTOM\nCTLPORT = 8031\nSELFCTLPORT = 8031\n\n\
        [SVRNODE]\nNAME = host-a\nCUK = a\nPORT = 8020\nCTLPORT = 8021\nCUSTOM_ID_SEED = host-a\n\n\
        [SLVNODE]\nNAME = app-1\nCUK = s1\nCTLPORT = 8031\nCUSTOM_ID_SEED = app-1\n\n\
        [SLVNODE]\nNAME = app-2\nCUK = s2\nCTLPORT = 8031\nCUSTOM_ID_SEED = app-2\n";

    fn global_line(ini: &SlaveIni, key: &str) -> Option<String> {
        let global = sections(&ini.text).into_iter().find(|s| s.is("GLOBAL"))?;
        global.value(key)
    }

    #[test]
    fn a_server_resource_becomes_a_slave_ini_with_the_servers_ports_kept() {
        let ini = slave_ini(SERVER, "app-9", None).unwrap();
        assert_eq!(ini.ctlport, 8032, "the [SLVNODE] port of a server resource");
        assert_eq!(global_line(&ini, "MODE").as_deref(), Some("SLAVE"));
        assert_eq!(global_line(&ini, "CTLPORT").as_deref(), Some("8032"));
        assert_eq!(global_line(&ini, "SELFCTLPORT").as_deref(), Some("8032"));
        assert_eq!(global_line(&ini, "SELFCUK"), None);
        assert!(!ini.text.contains("[K2HDKC]") && !ini.text.contains("K2HFILE"));
        let servers: Vec<_> = ini
            .facts
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.port, s.ctlport))
            .collect();
        assert_eq!(
            servers,
            [
                ("10.0.0.1", Some(8020), Some(8021)),
                ("10.0.0.2", Some(8022), Some(8023))
            ]
        );
        assert_eq!(ini.facts.slaves.len(), 1);
        assert_eq!(ini.facts.slaves[0].name, "[.]*");
        assert_eq!(ini.facts.slaves[0].ctlport, Some(8032));
        assert_eq!(ini.facts.slaves[0].custom_id_seed.as_deref(), Some("app-9"));
        assert_eq!(ini.mq_msg_max, 1024);
    }

    #[test]
    fn a_slave_resource_keeps_its_port_and_gets_one_own_slvnode() {
        let ini = slave_ini(SLAVE, "app-2", None).unwrap();
        assert_eq!(ini.ctlport, 8031);
        assert_eq!(ini.facts.slaves.len(), 1, "{}", ini.text);
        assert_eq!(ini.facts.slaves[0].custom_id_seed.as_deref(), Some("app-2"));
        assert_eq!(ini.facts.servers[0].ctlport, Some(8021));
        let again = slave_ini(SLAVE, "app-2", Some(9031)).unwrap();
        assert_eq!(again.ctlport, 9031);
        assert_eq!(global_line(&again, "CTLPORT").as_deref(), Some("9031"));
        // The same resource renders the same text: no needless reload.
        assert_eq!(slave_ini(SLAVE, "app-2", None).unwrap().text, ini.text);
    }

    #[test]
    fn what_chmpx_would_refuse_is_refused_by_name() {
        let e = slave_ini(SERVER, "", None).unwrap_err();
        assert!(e.to_string().contains("seed"), "{e}");
        let e = slave_ini("[GLOBAL]\nGROUP = c\n", "s", None).unwrap_err();
        assert!(e.to_string().contains("no [SVRNODE]"), "{e}");
        let e = slave_ini("[SVRNODE]\nNAME = a\n", "s", None).unwrap_err();
        assert!(e.to_string().contains("0 [GLOBAL]"), "{e}");
        let e = slave_ini(
            "[GLOBAL]\nMODE = SLAVE\nCTLPORT = 8031\n[SVRNODE]\nNAME = a\n",
            "s",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no PORT"), "{e}");
        let e = slave_ini("[GLOBAL]\nCTLPORT = x\n[SVRNODE]\nNAME = a\n", "s", None).unwrap_err();
        assert!(e.to_string().contains("not a port"), "{e}");
        // Without CUSTOM no seed is needed, and none is written.
        let ini = slave_ini(
            "[GLOBAL]\nCHMPXIDTYPE = NAME\nPORT = 8020\nCTLPORT = 8021\n[SVRNODE]\nNAME = a\n",
            "",
            None,
        )
        .unwrap();
        assert!(!ini.text.contains("CUSTOM_ID_SEED"), "{}", ini.text);
        assert_eq!(ini.ctlport, DEFAULT_SLAVE_CTLPORT);
    }
}
