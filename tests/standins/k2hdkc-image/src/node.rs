//! One chmpx node's state and its control-port commands, without I/O.
//!
//! Replies are chmpx's (yahoojapan/chmpx lib/chmeventsock.cc `CTL_RES_*`,
//! `CtlComSelfStatus`, `CtlComAllServerStatus`); the status transitions are
//! chmpx's `CHANGE_CHMPXSTS_TO_SRVIN/SRVOUT` macros, with merging reduced
//! to a short timer:
//!
//! - a server starts `[SERVICE OUT][UP][n/a][Nothing][Suspend]`;
//!   `Suspend` follows whether a `k2hdkc` process is attached;
//! - with AUTOMERGE (effective: `DOMERGE` on too), a serviced-out node
//!   whose k2hdkc has been attached for [`AUTO_JOIN_AFTER`] goes
//!   `[SERVICE IN][UP][ADD][Doing]`, then `[SERVICE IN][UP][n/a][Nothing]`
//!   after [`MERGE_TAKES`]; without it, it stays out until `SERVICEIN`;
//! - `SERVICEIN` (serviced out, up, attached) → `[ADD][Pending]`, merged at
//!   once with AUTOMERGE, else on `MERGE` (→ `[Doing]` → `[Done]`) and
//!   `COMPMERGE`; `ABORTMERGE` takes a merge back to `[Pending]`;
//! - `SERVICEOUT` of self (in service) → `[DELETE][Pending]`, then out
//!   after the merge; a node serviced out by command never rejoins by
//!   itself;
//! - other servers are polled on their control ports: their own status
//!   when they answer; when they stop answering, `[SERVICE IN][DOWN]
//!   [DELETE][Pending]` if they were in service (cleared by `MERGE` then
//!   `COMPMERGE` here), else `[SERVICE OUT][DOWN][n/a][Nothing]`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::conf::{Conf, IdType, Me, NodeCfg};
use crate::status::{Action, Op, Ring, Status};

/// How long k2hdkc must be attached before AUTOMERGE services a node in.
pub const AUTO_JOIN_AFTER: Duration = Duration::from_millis(500);
/// How long a stand-in merge takes.
pub const MERGE_TAKES: Duration = Duration::from_millis(300);

/// `SUCCEED`.
pub const SUCCEED: &str = "SUCCEED\n";
const SUCCEED_NOSERVER: &str = "SUCCEED: There no server on RING.\n";
const SUCCEED_STATUS_NOTICE: &str = "SUCCEED: Send status notice to no server on RING.\n";
const SUCCEED_ALREADY_OUT: &str = "SUCCEED: Already server has been SERVICEOUT.\n";
/// A server command on a slave.
pub const ERROR_ON_SLAVE: &str = "ERROR: The command can not be executed on the slave node.\n";
const ERROR_NOT_SERVERMODE: &str = "ERROR: Command must run on server mode.\n";
const ERROR_SERVICEOUT_PARAM: &str = "ERROR: SERVICEOUT command must have parameter as server/ctlport.(ex: \"SERVICEOUT servername.fqdn:ctlport\")\n";
/// `SERVICEOUT` of a server the ini does not have.
pub const ERROR_NO_SUCH_SERVER: &str = "ERROR: There is no such as server.\n";
const ERROR_OPERATING: &str = "ERROR: Could not change status, because server is operating now.\n";
/// `SERVICEIN`/`SERVICEOUT` from a status that does not allow it.
pub const ERROR_NOT_ALLOWED: &str = "ERROR: Could not change status, because status is not allowed.\n";
/// A forwarded command whose target did not answer.
pub const ERROR_TRANSFER: &str = "ERROR: Failed to transfer command to other target server, something error occured on target server.\n";

/// What to answer on the control port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// This text (empty: close without a reply).
    Text(String),
    /// Send `command` to the control port of `name:ctlport` and relay its
    /// reply (chmpx forwards SERVICEOUT of a live server to it).
    Forward {
        /// Server name.
        name: String,
        /// Its control port.
        ctlport: u16,
        /// The original command.
        command: String,
    },
}

#[derive(Clone, Debug, Default)]
struct Peer {
    /// Its own status, from its last answer.
    seen: Option<Status>,
    /// What this node makes of it since it stopped answering.
    down: Option<Status>,
    /// MERGE was asked while it was down and pending deletion.
    merge_asked: bool,
}

/// The node.
#[derive(Debug)]
pub struct Node {
    /// The configuration.
    pub conf: Conf,
    /// Self in it.
    pub me: Me,
    /// The name a slave shows for itself.
    pub display_name: String,
    ring: Status,
    attached: bool,
    attached_since: Option<Instant>,
    out_by_command: bool,
    timer: Option<(Instant, Status)>,
    peers: BTreeMap<String, Peer>,
    last_update: SystemTime,
}

const fn st(ring: Ring, up: bool, action: Action, op: Op) -> Status {
    Status::new(ring, up, action, op, false)
}

impl Node {
    /// A node that just started.
    pub fn new(conf: Conf, me: Me, display_name: String) -> Node {
        let ring = if me.server {
            st(Ring::Out, true, Action::NoAct, Op::Nothing)
        } else {
            Status::SLAVE_UP
        };
        Node {
            conf,
            me,
            display_name,
            ring,
            attached: false,
            attached_since: None,
            out_by_command: false,
            timer: None,
            peers: BTreeMap::new(),
            last_update: SystemTime::now(),
        }
    }

    /// This node's entry.
    pub fn entry(&self) -> &NodeCfg {
        if self.me.server {
            &self.conf.servers[self.me.index]
        } else {
            &self.conf.slaves[self.me.index]
        }
    }

    /// The status chmpx reports for itself.
    pub fn status(&self) -> Status {
        Status {
            suspend: self.me.server && self.ring.up && !self.attached,
            ..self.ring
        }
    }

    fn set(&mut self, ring: Status, why: &str) {
        if ring != self.ring {
            self.ring = ring;
            self.last_update = SystemTime::now();
            crate::msg!("status now {} ({why})", self.status().line());
        }
    }

    /// Advances time: k2hdkc attachment, merge timers, AUTOMERGE.
    pub fn tick(&mut self, now: Instant, attached: bool) {
        if attached != self.attached {
            self.attached = attached;
            self.attached_since = attached.then_some(now);
            self.last_update = SystemTime::now();
            crate::msg!("k2hdkc {}; status now {}", if attached { "attached" } else { "detached" }, self.status().line());
        }
        if let Some((at, next)) = self.timer {
            if now >= at {
                self.timer = None;
                self.set(next, "merge finished");
            }
        }
        let out_normal = st(Ring::Out, true, Action::NoAct, Op::Nothing);
        if self.me.server
            && self.conf.automerge
            && !self.out_by_command
            && self.ring == out_normal
            && self.timer.is_none()
            && self.attached_since.is_some_and(|t| now.duration_since(t) >= AUTO_JOIN_AFTER)
        {
            self.set(st(Ring::In, true, Action::Add, Op::Doing), "AUTOMERGE: k2hdkc attached");
            self.timer = Some((now + MERGE_TAKES, st(Ring::In, true, Action::NoAct, Op::Nothing)));
        }
    }

    /// Applies a reloaded configuration.
    pub fn reload(&mut self, conf: Conf, me: Me) {
        let keys: Vec<String> = conf.servers.iter().map(Conf::key).collect();
        self.peers.retain(|k, _| keys.contains(k));
        if me.server != self.me.server {
            self.ring = if me.server {
                st(Ring::Out, true, Action::NoAct, Op::Nothing)
            } else {
                Status::SLAVE_UP
            };
            self.timer = None;
        }
        self.conf = conf;
        self.me = me;
    }

    /// The other servers to poll: key, name, control port.
    pub fn others(&self) -> Vec<(String, String, u16)> {
        self.conf
            .servers
            .iter()
            .enumerate()
            .filter(|(i, _)| !(self.me.server && *i == self.me.index))
            .map(|(_, n)| (Conf::key(n), n.name.clone(), n.ctlport))
            .collect()
    }

    /// Records a poll of another server: its status, or `None` when it did
    /// not answer.
    pub fn peer_report(&mut self, key: &str, status: Option<Status>) {
        let p = self.peers.entry(key.to_owned()).or_default();
        match status {
            Some(s) => {
                p.seen = Some(s);
                p.down = None;
                p.merge_asked = false;
            }
            None if p.down.is_none() => {
                let was_in = p.seen.is_some_and(|s| s.ring == Ring::In);
                p.down = Some(if was_in {
                    st(Ring::In, false, Action::Delete, Op::Pending)
                } else {
                    Status::OUT_DOWN
                });
                p.seen = None;
            }
            None => {}
        }
    }

    /// What this node knows of another server.
    pub fn peer_status(&self, key: &str) -> Status {
        self.peers.get(key).and_then(|p| p.down.or(p.seen)).unwrap_or(Status::OUT_DOWN)
    }

    fn any_peer_up(&self) -> bool {
        self.peers
            .values()
            .any(|p| p.down.is_none() && p.seen.is_some_and(|s| s.up && s.ring != Ring::Slave))
    }

    fn ok(&self, alone: &'static str) -> Reply {
        Reply::Text(if self.any_peer_up() { SUCCEED } else { alone }.into())
    }

    /// Answers one control command (one line, case-insensitive verb).
    pub fn command(&mut self, line: &str, now: Instant) -> Reply {
        let clean: String = line.chars().filter(|c| *c != '\0').collect();
        let mut words = clean.split_whitespace();
        let Some(verb) = words.next() else { return Reply::Text(String::new()) };
        let args: Vec<&str> = words.collect();
        let text = |s: &str| Reply::Text(s.to_owned());
        match verb.to_ascii_uppercase().as_str() {
            "VERSION" => Reply::Text(format!(
                "Version {} (commit: k2hdkc-standin) with none (STAND-IN, not chmpx)\n",
                crate::CHMPX_VERSION
            )),
            "SELFSTATUS" => Reply::Text(self.selfstatus()),
            "ALLSTATUS" => Reply::Text(self.allstatus()),
            "SERVICEIN" => self.service_in(now),
            "SERVICEOUT" => self.service_out(&args, clean.trim(), now),
            "MERGE" | "COMPMERGE" | "ABORTMERGE" | "SUSPENDMERGE" | "NOSUSPENDMERGE" if !self.me.server => text(ERROR_NOT_SERVERMODE),
            "MERGE" => self.merge(now),
            "COMPMERGE" => self.complete_merge(),
            "ABORTMERGE" => self.abort_merge(),
            "SUSPENDMERGE" | "NOSUSPENDMERGE" => text(SUCCEED),
            "UPDATESTATUS" if !self.me.server => text(ERROR_ON_SLAVE),
            "UPDATESTATUS" => self.ok(SUCCEED_STATUS_NOTICE),
            "DUMP" | "TRACE" | "TRACEVIEW" => text("ERROR: Something error is occured.\n"),
            _ => Reply::Text(format!("Unknown command({verb})\n")),
        }
    }

    fn service_in(&mut self, now: Instant) -> Reply {
        if !self.me.server {
            return Reply::Text(ERROR_ON_SLAVE.into());
        }
        if self.ring.operating() {
            return Reply::Text(ERROR_OPERATING.into());
        }
        let r = self.ring;
        let next = if r.ring == Ring::In && r.up && r.action == Action::Delete && r.op == Op::Pending {
            st(Ring::In, true, Action::NoAct, Op::Nothing)
        } else if r.ring == Ring::Out && r.up && r.action == Action::NoAct && self.attached {
            st(Ring::In, true, Action::Add, Op::Pending)
        } else {
            return Reply::Text(ERROR_NOT_ALLOWED.into());
        };
        self.out_by_command = false;
        self.set(next, "SERVICEIN");
        if self.conf.automerge && next.action == Action::Add {
            self.set(Status { op: Op::Doing, ..next }, "SERVICEIN, AUTOMERGE");
            self.timer = Some((now + MERGE_TAKES, st(Ring::In, true, Action::NoAct, Op::Nothing)));
            return self.ok(SUCCEED_NOSERVER);
        }
        self.ok(SUCCEED_STATUS_NOTICE)
    }

    /// The server a SERVICEOUT argument names, by CHMPXIDTYPE.
    fn target(&self, arg: &str) -> Result<Option<usize>, &'static str> {
        let parts: Vec<&str> = arg.split(':').collect();
        let arity_ok = match self.conf.id_type {
            IdType::Name => (2..=3).contains(&parts.len()),
            IdType::Cuk | IdType::Custom | IdType::CtlEndpoints => parts.len() == 3,
        };
        if !arity_ok || parts[0].is_empty() {
            return Err(ERROR_SERVICEOUT_PARAM);
        }
        let Ok(ctlport) = parts[1].parse::<u16>() else { return Ok(None) };
        Ok(self.conf.servers.iter().position(|n| match self.conf.id_type {
            IdType::Name | IdType::CtlEndpoints => n.name == parts[0] && n.ctlport == ctlport,
            IdType::Cuk => n.cuk == parts[2],
            IdType::Custom => n.custom_seed == parts[2],
        }))
    }

    fn service_out(&mut self, args: &[&str], line: &str, now: Instant) -> Reply {
        let Some(arg) = args.first() else {
            return Reply::Text(ERROR_SERVICEOUT_PARAM.into());
        };
        let index = match self.target(arg) {
            Err(e) => return Reply::Text(e.into()),
            Ok(None) => return Reply::Text(ERROR_NO_SUCH_SERVER.into()),
            Ok(Some(i)) => i,
        };
        if self.me.server && index == self.me.index {
            if self.ring.operating() {
                return Reply::Text(ERROR_OPERATING.into());
            }
            let r = self.ring;
            let next = match (r.ring, r.up, r.action) {
                (Ring::In, true, Action::NoAct) => st(Ring::In, true, Action::Delete, Op::Pending),
                (Ring::In, true, Action::Add) => st(Ring::Out, true, Action::NoAct, Op::Nothing),
                _ => return Reply::Text(ERROR_NOT_ALLOWED.into()),
            };
            self.out_by_command = true;
            self.timer = None;
            self.set(next, "SERVICEOUT");
            if self.conf.automerge && next.action == Action::Delete {
                self.set(Status { op: Op::Doing, ..next }, "SERVICEOUT, AUTOMERGE");
                self.timer = Some((now + MERGE_TAKES, st(Ring::Out, true, Action::NoAct, Op::Nothing)));
            }
            return self.ok(SUCCEED_STATUS_NOTICE);
        }
        let n = self.conf.servers[index].clone();
        let key = Conf::key(&n);
        let p = self.peers.entry(key).or_default();
        if p.down.is_none() && p.seen.is_some_and(|s| s.up) {
            return Reply::Forward {
                name: n.name,
                ctlport: n.ctlport,
                command: line.to_owned(),
            };
        }
        if !self.me.server {
            return Reply::Text(ERROR_ON_SLAVE.into());
        }
        match p.down {
            Some(d) if d.ring == Ring::In && d.action == Action::NoAct => {
                p.down = Some(st(Ring::In, false, Action::Delete, Op::Pending));
                Reply::Text(SUCCEED.into())
            }
            _ => Reply::Text(SUCCEED_ALREADY_OUT.into()),
        }
    }

    fn merge(&mut self, now: Instant) -> Reply {
        let r = self.ring;
        if r.action != Action::NoAct && r.op == Op::Pending {
            self.set(Status { op: Op::Doing, ..r }, "MERGE");
            self.timer = Some((now + MERGE_TAKES, Status { op: Op::Done, ..r }));
        }
        for p in self.peers.values_mut() {
            if p.down.is_some_and(|d| d.action == Action::Delete) {
                p.merge_asked = true;
            }
        }
        self.ok(SUCCEED_NOSERVER)
    }

    fn complete_merge(&mut self) -> Reply {
        let r = self.ring;
        if r.operating() {
            self.timer = None;
            let next = match r.action {
                Action::Add => st(Ring::In, true, Action::NoAct, Op::Nothing),
                Action::Delete => st(Ring::Out, true, Action::NoAct, Op::Nothing),
                Action::NoAct => Status { op: Op::Nothing, ..r },
            };
            self.set(next, "COMPMERGE");
        }
        for p in self.peers.values_mut() {
            if p.merge_asked && p.down.is_some_and(|d| d.action == Action::Delete) {
                p.down = Some(Status::OUT_DOWN);
                p.merge_asked = false;
            }
        }
        self.ok(SUCCEED_NOSERVER)
    }

    fn abort_merge(&mut self) -> Reply {
        let r = self.ring;
        if r.operating() && r.action != Action::NoAct {
            self.timer = None;
            self.set(Status { op: Op::Pending, ..r }, "ABORTMERGE");
        }
        for p in self.peers.values_mut() {
            p.merge_asked = false;
        }
        self.ok(SUCCEED_NOSERVER)
    }

    fn id(&self, n: &NodeCfg) -> String {
        // FNV-1a of chmpx's id seed: stable, not chmpx's hash.
        let seed = format!("{}:{}:{:x}", self.conf.group, n.name, n.ctlport);
        let h = seed
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        format!("{h:016X}")
    }

    /// The `SELFSTATUS` reply (chmpx `CtlComSelfStatus` layout).
    pub fn selfstatus(&self) -> String {
        let e = self.entry();
        let name = if self.me.server { e.name.clone() } else { self.display_name.clone() };
        let (servers, slaves) = (self.conf.servers.len(), self.conf.slaves.len());
        let mut s = String::new();
        let mut kv = |k: &str, v: String| s.push_str(&format!("{k:<26}= {v}\n"));
        kv("Server Name", name);
        kv("Internal ID", format!("0x{}", self.id(e)));
        kv("RING Name", self.conf.group.clone());
        kv("Mode", if self.me.server { "Server" } else { "Slave" }.into());
        kv("Maximum MQ Count", (self.conf.max_mq.0 + self.conf.max_mq.1).to_string());
        kv("Maximum Queue / Chmpx MQ", "8".into());
        kv("Maximum Queue / Client MQ", "8".into());
        kv("Status", "{".into());
        kv("    Server Status", self.status().line());
        kv("    Last Update", crate::timefmt::chmpx_time(self.last_update));
        s.push_str("}\n");
        let mut kv = |k: &str, v: String| s.push_str(&format!("{k:<26}= {v}\n"));
        kv("Hash", "{".into());
        kv("    Enable Hash Value", "0x0".into());
        kv("    Pending Hash Value", "0x0".into());
        s.push_str("}\n");
        let mut kv = |k: &str, v: String| s.push_str(&format!("{k:<26}= {v}\n"));
        kv("Connection", "{".into());
        kv("    Port(socket)", format!("{}(n/a)", e.port.unwrap_or(0)));
        kv("    Control Port(socket)", format!("{}(n/a)", self.me.ctlport));
        kv("    CUK", self.me.cuk.clone());
        kv("    Custom ID Seed", e.custom_seed.clone());
        kv("    Endpoints", String::new());
        kv("    Control Endppoints", String::new());
        kv("    Forward Peers", String::new());
        kv("    Reverse Peers", String::new());
        kv("    SSL Connection", "no".into());
        kv("    To Servers", servers.to_string());
        kv("    From Slaves", slaves.to_string());
        kv("    On Control port", "1".into());
        s.push_str("}\n");
        s
    }

    /// The `ALLSTATUS` reply: every server of the ini, as this node knows it.
    pub fn allstatus(&self) -> String {
        let mut s = format!("RING Name              = {}\n", self.conf.group);
        for (i, n) in self.conf.servers.iter().enumerate() {
            let status = if self.me.server && i == self.me.index {
                self.status()
            } else {
                self.peer_status(&Conf::key(n))
            };
            s.push_str(&format!("No.{}\n", i + 1));
            for (k, v) in [
                ("  Server Name", n.name.clone()),
                ("    Port", n.port.unwrap_or(0).to_string()),
                ("    Control Port", n.ctlport.to_string()),
                ("    CUK", n.cuk.clone()),
                ("    Custom ID Seed", n.custom_seed.clone()),
                ("    Endpoints", String::new()),
                ("    Control Endppoints", String::new()),
                ("    Forward Peers", String::new()),
                ("    Reverse Peers", String::new()),
                ("    Server Status", status.line()),
                ("    Last Update", crate::timefmt::chmpx_time(self.last_update)),
                ("    Enable Hash Value", "0x0".into()),
                ("    Pending Hash Value", "0x0".into()),
            ] {
                s.push_str(&format!("{k:<23}= {v}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::{load, tests::local, tests::SERVER_INI};

    fn node(text: &str) -> Node {
        let c = load(text, &local()).unwrap();
        let me = c.find_self(None, None, &local()).unwrap();
        Node::new(c, me, "10.0.0.5".into())
    }

    fn say(n: &mut Node, cmd: &str, now: Instant) -> String {
        match n.command(cmd, now) {
            Reply::Text(t) => t,
            other => panic!("{cmd}: {other:?}"),
        }
    }

    fn self_line(n: &mut Node, now: Instant) -> String {
        let reply = say(n, "selfstatus", now);
        reply
            .lines()
            .find(|l| l.contains("Server Status"))
            .unwrap()
            .split("= ")
            .nth(1)
            .unwrap()
            .to_owned()
    }

    #[test]
    fn automerge_joins_after_k2hdkc_attaches() {
        let mut n = node(SERVER_INI);
        let t = Instant::now();
        assert_eq!(self_line(&mut n, t), "0x10011(SAFE -> [SERVICE OUT][UP][n/a][Nothing][Suspend])");
        n.tick(t, true);
        assert_eq!(self_line(&mut n, t), "0x11(SAFE -> [SERVICE OUT][UP][n/a][Nothing][NoSuspend])");
        n.tick(t + AUTO_JOIN_AFTER, true);
        assert!(self_line(&mut n, t).contains("[SERVICE IN][UP][ADD][Doing][NoSuspend]"));
        n.tick(t + AUTO_JOIN_AFTER + MERGE_TAKES, true);
        assert_eq!(self_line(&mut n, t), "0x21(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])");
        assert_eq!(say(&mut n, "SERVICEIN", t), ERROR_NOT_ALLOWED, "already in");
        // k2hdkc stops: still in service, suspended.
        n.tick(t + Duration::from_secs(2), false);
        assert_eq!(self_line(&mut n, t), "0x10021(SAFE -> [SERVICE IN][UP][n/a][Nothing][Suspend])");
    }

    #[test]
    fn serviceout_and_no_rejoin() {
        let mut n = node(SERVER_INI);
        let t = Instant::now();
        n.tick(t, true);
        n.tick(t + AUTO_JOIN_AFTER, true);
        n.tick(t + Duration::from_secs(1), true);
        assert_eq!(say(&mut n, "SERVICEOUT localhost:18021", t), ERROR_NO_SUCH_SERVER);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18099", t), ERROR_NO_SUCH_SERVER);
        assert!(say(&mut n, "serviceout", t).starts_with("ERROR: SERVICEOUT command must have parameter"));
        let t2 = t + Duration::from_secs(2);
        assert!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t2).starts_with("SUCCEED"));
        assert!(self_line(&mut n, t2).contains("[SERVICE IN][UP][DELETE][Doing]"));
        n.tick(t2 + MERGE_TAKES, true);
        assert_eq!(self_line(&mut n, t2), "0x11(SAFE -> [SERVICE OUT][UP][n/a][Nothing][NoSuspend])");
        n.tick(t2 + Duration::from_secs(10), true);
        assert!(self_line(&mut n, t2).contains("[SERVICE OUT]"), "no rejoin by itself");
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t2), ERROR_NOT_ALLOWED);
        assert!(say(&mut n, "SERVICEIN", t2).starts_with("SUCCEED"));
        n.tick(t2 + Duration::from_secs(11), true);
        assert!(self_line(&mut n, t2).contains("[SERVICE IN][UP][n/a][Nothing][NoSuspend]"));
    }

    #[test]
    fn without_automerge_servicein_and_merge_by_hand() {
        let mut n = node(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        let t = Instant::now();
        assert_eq!(say(&mut n, "SERVICEIN", t), ERROR_NOT_ALLOWED, "no k2hdkc attached: Suspend");
        n.tick(t, true);
        n.tick(t + Duration::from_secs(5), true);
        assert!(self_line(&mut n, t).contains("[SERVICE OUT]"), "stays out without AUTOMERGE");
        assert_eq!(say(&mut n, "SERVICEIN", t), SUCCEED_STATUS_NOTICE, "alone on the ring");
        assert!(self_line(&mut n, t).contains("[SERVICE IN][UP][ADD][Pending]"));
        assert!(say(&mut n, "MERGE", t).starts_with("SUCCEED"));
        assert!(self_line(&mut n, t).contains("[ADD][Doing]"));
        assert!(say(&mut n, "ABORTMERGE", t).starts_with("SUCCEED"));
        assert!(self_line(&mut n, t).contains("[ADD][Pending]"));
        say(&mut n, "MERGE", t);
        n.tick(t + Duration::from_secs(6), true);
        assert!(self_line(&mut n, t).contains("[ADD][Done]"));
        say(&mut n, "COMPMERGE", t);
        assert!(self_line(&mut n, t).contains("[SERVICE IN][UP][n/a][Nothing][NoSuspend]"));
    }

    #[test]
    fn peers_and_allstatus() {
        let mut n = node(SERVER_INI);
        let t = Instant::now();
        let others = n.others();
        assert_eq!(others, vec![("127.0.0.1:18023".to_owned(), "127.0.0.1".to_owned(), 18023)]);
        let all = say(&mut n, "ALLSTATUS", t);
        assert!(all.starts_with("RING Name              = cluster1\nNo.1\n  Server Name          = 127.0.0.1\n"));
        assert!(
            all.contains("0x10(SAFE -> [SERVICE OUT][DOWN][n/a][Nothing][NoSuspend])"),
            "never answered: down\n{all}"
        );
        n.peer_report("127.0.0.1:18023", Status::from_code(0x21));
        assert!(say(&mut n, "ALLSTATUS", t).contains("0x21(SAFE -> [SERVICE IN][UP]"));
        // A live peer's SERVICEOUT goes to it.
        assert_eq!(
            n.command("SERVICEOUT 127.0.0.1:18023", t),
            Reply::Forward {
                name: "127.0.0.1".into(),
                ctlport: 18023,
                command: "SERVICEOUT 127.0.0.1:18023".into()
            }
        );
        // It stops without SERVICEOUT: pending deletion until MERGE + COMPMERGE.
        n.peer_report("127.0.0.1:18023", None);
        assert!(say(&mut n, "ALLSTATUS", t).contains("[SERVICE IN][DOWN][DELETE][Pending]"));
        say(&mut n, "COMPMERGE", t);
        assert!(
            say(&mut n, "ALLSTATUS", t).contains("[SERVICE IN][DOWN][DELETE][Pending]"),
            "COMPMERGE alone does not clear it"
        );
        say(&mut n, "MERGE", t);
        say(&mut n, "COMPMERGE", t);
        assert!(say(&mut n, "ALLSTATUS", t).contains("0x10(SAFE -> [SERVICE OUT][DOWN]"));
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18023", t), SUCCEED_ALREADY_OUT);
    }

    #[test]
    fn misc_commands_and_slave() {
        let mut n = node(SERVER_INI);
        let t = Instant::now();
        assert_eq!(say(&mut n, "Frobnicate now", t), "Unknown command(Frobnicate)\n");
        assert!(say(&mut n, "version", t).starts_with("Version 1.0.111"));
        assert_eq!(say(&mut n, "", t), "");
        assert!(say(&mut n, "SELFSTATUS\0", t).contains("Mode                      = Server\n"));

        let slave_ini = SERVER_INI
            .replace("MODE                = SERVER", "MODE = SLAVE")
            .replace("SELFCTLPORT         = 18021", "SELFCTLPORT = 18031")
            .replace("SELFCUK             = cuk-a", "");
        let mut s = node(&slave_ini);
        assert!(!s.me.server);
        assert_eq!(self_line(&mut s, t), "0x1(SAFE -> [SLAVE][UP][n/a][Nothing][NoSuspend])");
        s.tick(t + Duration::from_secs(5), false);
        assert!(self_line(&mut s, t).contains("[SLAVE][UP]"));
        assert_eq!(say(&mut s, "SERVICEIN", t), ERROR_ON_SLAVE);
        assert_eq!(say(&mut s, "SERVICEOUT 127.0.0.1:18021", t), ERROR_ON_SLAVE, "target down: refused on a slave");
        assert!(say(&mut s, "MERGE", t).starts_with("ERROR"));
        assert_eq!(s.others().len(), 2, "a slave polls every server");
    }

    #[test]
    fn serviceout_argument_follows_chmpxidtype() {
        let custom = SERVER_INI
            .replace("DELIVERMODE         = hash", "DELIVERMODE = hash\nCHMPXIDTYPE = CUSTOM")
            .replace("CUK                 = cuk-a", "CUK = cuk-a\nCUSTOM_ID_SEED = seed-a")
            .replace("CUK                 = cuk-b", "CUK = cuk-b\nCUSTOM_ID_SEED = seed-b");
        let mut n = node(&custom);
        let t = Instant::now();
        n.tick(t, true);
        n.tick(t + Duration::from_secs(1), true);
        n.tick(t + Duration::from_secs(2), true);
        assert!(
            say(&mut n, "SERVICEOUT 127.0.0.1:18021", t).starts_with("ERROR: SERVICEOUT command must have parameter"),
            "CUSTOM needs name:ctlport:seed"
        );
        assert!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:seed-a", t).starts_with("SUCCEED"));
    }
}
