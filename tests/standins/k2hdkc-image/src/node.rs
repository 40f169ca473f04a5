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
//!   when they answer; when they stop answering, chmpx's
//!   `CHANGE_CHMPXSTS_TO_DOWN` (in service: `[SERVICE IN][DOWN][n/a]
//!   [Nothing]`, which AUTOMERGE turns into `[DELETE][Pending]`, cleared by
//!   `MERGE` then `COMPMERGE` here), else `[SERVICE OUT][DOWN]`;
//! - a restarted server takes the status the ring kept for it
//!   ([`Node::adopt`]): back in service after a crash, pending once its
//!   k2hdkc attaches.

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
const ERROR_SERVICEOUT_PARAM: &str = "ERROR: SERVICEOUT command must have parameter as server/ctlport.(ex: \"SERVICEOUT servername.fqdn:ctlport\")\n";
/// `SERVICEOUT` of a server the ini does not have.
pub const ERROR_NO_SUCH_SERVER: &str = "ERROR: There is no such as server.\n";
const ERROR_OPERATING: &str = "ERROR: Could not change status, because server is operating now.\n";
/// `SERVICEIN`/`SERVICEOUT` from a status that does not allow it.
pub const ERROR_NOT_ALLOWED: &str = "ERROR: Could not change status, because status is not allowed.\n";
/// `MERGE`/`COMPMERGE` (also the AUTOMERGE step of `SERVICEIN`/`SERVICEOUT`)
/// while some server is merging or cannot merge.
pub const ERROR_SOME_SERVER_STATUS: &str =
    "ERROR: Could not change status, because some servers could not be changed its status now.\n";
/// `COMPMERGE` alone on the ring when this server cannot complete.
pub const ERROR_MERGE_COMPLETE: &str = "ERROR: Failed to complete merging.\n";
/// Appended (after an empty line) when the AUTOMERGE step fails.
pub const ERROR_MERGE_AUTO: &str = "ERROR: Failed to start merging or complete merging.\n";
/// SERVICEOUT of self with no other server up (chmpx 1.0.111, after the
/// status has changed).
pub const ERROR_STATUS_NOTICE: &str = "ERROR: Failed to send status notice to other servers.\n";
/// SERVICEOUT with an empty host or control port -1.
pub const ERROR_PARAMETER: &str = "ERROR: Parameters are wrong.\n";
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
    /// A k2hdkc has attached before (a later attach is a restart).
    was_attached: bool,
    out_by_command: bool,
    /// `SUSPENDMERGE` is in force (chmpx `is_auto_merge_suspend`).
    merge_suspended: bool,
    timer: Option<(Instant, Status)>,
    peers: BTreeMap<String, Peer>,
    last_update: SystemTime,
    /// `STANDIN_LOSE_NEXT_LASTTS <s>`: the next merge here loses k2hdkc's
    /// answer and its merge thread polls this long.
    lose_next_last_ts: Option<Duration>,
    /// Until when the merge thread polls for a lost answer.
    merge_thread_busy_until: Option<Instant>,
}

const fn st(ring: Ring, up: bool, action: Action, op: Op) -> Status {
    Status::new(ring, up, action, op, false)
}

/// chmpx `CHANGE_CHMPXSTS_TO_SRVIN` (unchanged: not allowed).
fn to_service_in(s: Status) -> Status {
    match (s.ring, s.up, s.action, s.op) {
        (Ring::In, true, Action::Delete, Op::Pending) if s.suspend => {
            Status::new(Ring::In, true, Action::NoAct, Op::Nothing, true)
        }
        (Ring::In, true, Action::Delete, Op::Pending) => st(Ring::In, true, Action::NoAct, Op::Pending),
        (Ring::Out, true, Action::NoAct, _) if !s.suspend => st(Ring::In, true, Action::Add, Op::Pending),
        _ => s,
    }
}

/// chmpx `CHANGE_CHMPXSTS_TO_SRVOUT` (unchanged: not allowed / already out).
fn to_service_out(s: Status) -> Status {
    match (s.ring, s.up, s.action) {
        (Ring::In, true, Action::NoAct) if !s.operating() => st(Ring::In, true, Action::Delete, Op::Pending),
        (Ring::In, true, Action::Add) if !s.operating() => st(Ring::Out, true, Action::NoAct, Op::Nothing),
        (Ring::In, false, Action::NoAct) => st(Ring::In, false, Action::Delete, Op::Pending),
        _ => s,
    }
}

/// chmpx `str_paeser`: splits by each separator in turn like `getline`
/// (empty words kept, no word after a trailing separator), trimming each
/// word; `None` for an empty text.
fn str_paeser(base: &str, seps: &[char]) -> Option<Vec<String>> {
    if base.is_empty() {
        return None;
    }
    let mut words = vec![base.to_owned()];
    for sep in seps {
        words = words
            .into_iter()
            .flat_map(|w| {
                if w.is_empty() {
                    return vec![w];
                }
                let mut parts: Vec<&str> = w.split(*sep).collect();
                if parts.len() > 1 && parts.last() == Some(&"") {
                    parts.pop();
                }
                parts.into_iter().map(|p| p.trim_matches([' ', '\t', '\r', '\n']).to_owned()).collect()
            })
            .collect();
    }
    Some(words)
}

/// C `atoi`: leading blanks, a sign, digits; 0 when there are none.
fn atoi(s: &str) -> i32 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| (n * 10 + i64::from(d - b'0')).min(i64::from(i32::MAX) + 1));
    (if neg { -n } else { n }) as i32
}

/// chmpx `CHANGE_CHMPXSTS_TO_DOWN`: a server that stopped answering.
fn to_down(s: Status) -> Status {
    match (s.ring, s.up, s.action) {
        (Ring::In, true, Action::NoAct) | (Ring::In, false, Action::NoAct) => st(Ring::In, false, Action::NoAct, Op::Nothing),
        (Ring::In, true, Action::Add) => Status::OUT_DOWN,
        (Ring::In, true, Action::Delete) if s.operating() => st(Ring::In, false, Action::Delete, Op::Done),
        (Ring::In, _, Action::Delete) => st(Ring::In, false, Action::Delete, Op::Pending),
        _ => Status::OUT_DOWN,
    }
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
            was_attached: false,
            out_by_command: false,
            merge_suspended: false,
            timer: None,
            peers: BTreeMap::new(),
            last_update: SystemTime::now(),
            lose_next_last_ts: None,
            merge_thread_busy_until: None,
        }
    }

    /// A restarted server takes the status the ring kept for it (chmpx
    /// `InitialAllServerStatus`, then the self-status re-check in
    /// `lib/chmeventsock.cc`): back `[SERVICE IN]` after a crash, and
    /// pending again once its k2hdkc attaches.
    pub fn adopt(&mut self, kept: Status) {
        if !self.me.server {
            return;
        }
        let normal = st(Ring::In, true, Action::NoAct, Op::Nothing);
        let next = match (kept.ring, kept.up, kept.action, kept.op) {
            (Ring::In, true, Action::Add, _) => st(Ring::In, true, Action::Add, Op::Pending),
            (Ring::In, true, Action::Delete, op) => st(Ring::In, true, Action::Delete, op),
            (Ring::In, false, Action::Delete, Op::Pending) => st(Ring::In, true, Action::Delete, Op::Pending),
            (Ring::In, false, Action::Delete, _) => st(Ring::In, true, Action::Delete, Op::Done),
            (Ring::In, _, _, _) => normal,
            _ => return,
        };
        self.was_attached = true;
        self.set(next, "the status the ring kept for this server");
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
            // A k2hdkc restarted on a node in service: chmpx marks the node
            // pending, so the next merge brings it the ranges it owns now
            // (CONTRACTS.md §7: "restart k2hdkc on each remaining node (each
            // goes [n/a][Pending])").
            if attached && self.was_attached && self.me.server && self.ring == st(Ring::In, true, Action::NoAct, Op::Nothing) {
                self.set(st(Ring::In, true, Action::NoAct, Op::Pending), "k2hdkc attached again");
            }
            self.was_attached |= attached;
        }
        if let Some((at, next)) = self.timer {
            if now >= at {
                self.timer = None;
                self.set(next, "merge finished");
            }
        }
        let out_normal = st(Ring::Out, true, Action::NoAct, Op::Nothing);
        if self.me.server
            && self.auto_merge()
            && !self.out_by_command
            && self.ring == out_normal
            && self.timer.is_none()
            && self.attached_since.is_some_and(|t| now.duration_since(t) >= AUTO_JOIN_AFTER)
        {
            self.set(st(Ring::In, true, Action::Add, Op::Doing), "AUTOMERGE: k2hdkc attached");
            self.timer = Some((now + MERGE_TAKES, st(Ring::In, true, Action::NoAct, Op::Nothing)));
        }
        // With AUTOMERGE and no other server up, chmpx completes the removal
        // of a server that stopped while in service by itself (measured:
        // `[SERVICE OUT][DOWN]` within seconds).
        if self.me.server && self.auto_merge() && !self.any_peer_up() {
            for p in self.peers.values_mut() {
                if p.down.is_some_and(|d| d.ring == Ring::In && d.action == Action::Delete) {
                    p.down = Some(Status::OUT_DOWN);
                }
            }
        }
        // chmpx `ContinuousAutoMerge`: with AUTOMERGE a pending change of
        // this node is merged without a MERGE command.
        if self.me.server && self.auto_merge() && self.timer.is_none() && self.merge_start_allowed() {
            self.merge_start(now, "AUTOMERGE");
        }
    }

    /// Applies a reloaded configuration. As chmpx `UpdateChmpxSvrs`, a
    /// server the new ini lacks is dropped only if this node sees it
    /// `[SERVICE OUT][DOWN]` with no action; otherwise it stays listed
    /// (and polled) until a later reload finds it so.
    pub fn reload(&mut self, mut conf: Conf, me: Me) {
        let mut keys: Vec<String> = conf.servers.iter().map(Conf::key).collect();
        let old_me = self.me.server.then_some(self.me.index);
        let kept: Vec<_> = self
            .conf
            .servers
            .iter()
            .enumerate()
            .filter(|(i, n)| Some(*i) != old_me && !keys.contains(&Conf::key(n)))
            .filter(|(_, n)| {
                let s = self.peer_status(&Conf::key(n));
                !(s.ring == Ring::Out && !s.up && s.action == Action::NoAct)
            })
            .map(|(_, n)| n.clone())
            .collect();
        for n in kept {
            crate::log::print(
                crate::log::WAN,
                &format!("server {} is not in the new configuration but not SERVICE OUT and DOWN: kept", n.name),
            );
            keys.push(Conf::key(&n));
            conf.servers.push(n);
        }
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
        // chmpx rebuilds its shared memory from the file: SUSPENDMERGE is gone.
        self.merge_suspended = false;
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
        let auto = self.auto_merge();
        let p = self.peers.entry(key.to_owned()).or_default();
        match status {
            Some(s) => {
                p.seen = Some(s);
                p.down = None;
                p.merge_asked = false;
            }
            None if p.down.is_none() => {
                let was = p.seen.unwrap_or(Status::OUT_DOWN);
                p.down = Some(match to_down(was) {
                    // With AUTOMERGE chmpx then takes the dead server out
                    // (its leave is merged); without, the ring keeps it
                    // [SERVICE IN][DOWN] and the replicas serve its keys.
                    d if auto && d == st(Ring::In, false, Action::NoAct, Op::Nothing) => {
                        st(Ring::In, false, Action::Delete, Op::Pending)
                    }
                    d => d,
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

    /// chmpx `GetNextRingChmpxId` found a server: another server that is up
    /// (in or out of service).
    fn any_peer_up(&self) -> bool {
        // A slave has no place on the ring: chmpx finds no next server.
        self.me.server
            && self.peers
            .values()
            .any(|p| p.down.is_none() && p.seen.is_some_and(|s| s.up && s.ring != Ring::Slave))
    }

    /// chmpx `IsAutoMerge`: AUTOMERGE from the ini and no `SUSPENDMERGE`.
    fn auto_merge(&self) -> bool {
        self.conf.automerge && !self.merge_suspended
    }

    /// Every server of the ring as this node sees it (self included).
    fn all_statuses(&self) -> Vec<Status> {
        self.conf
            .servers
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if self.me.server && i == self.me.index {
                    self.status()
                } else {
                    self.peer_status(&Conf::key(n))
                }
            })
            .collect()
    }

    /// chmpx `IsOperating`: some server is `[Doing]` or `[Done]`.
    fn ring_operating(&self) -> bool {
        self.all_statuses().iter().any(Status::operating)
    }

    /// chmpx `CheckAllStatusForMergeStart`.
    fn merge_start_allowed(&self) -> bool {
        !self.ring_operating()
            && self.all_statuses().iter().all(|s| match (s.ring, s.up) {
                (Ring::In, true) => !s.suspend,
                (Ring::In, false) => s.action != Action::NoAct,
                _ => true,
            })
    }

    /// chmpx `CheckAllStatusForMergeComplete`.
    fn merge_complete_allowed(&self) -> bool {
        self.all_statuses().iter().all(|s| match (s.ring, s.up) {
            (Ring::In, true) => s.op != Op::Doing,
            (Ring::In, false) => s.action != Action::Delete || matches!(s.op, Op::Pending | Op::Done),
            _ => true,
        })
    }

    /// Where a merge of this node ends: `[Done]`, or with AUTOMERGE the
    /// state after chmpx's automatic COMPMERGE.
    fn merge_target(&self, from: Status) -> Status {
        if !self.auto_merge() {
            return Status { op: Op::Done, ..from };
        }
        match from.action {
            Action::Delete => st(Ring::Out, true, Action::NoAct, Op::Nothing),
            _ => st(Ring::In, true, Action::NoAct, Op::Nothing),
        }
    }

    /// chmpx `MergeStart` (`ChangeStatusBeforeMergeStart`, then the data
    /// transfer, here a timer): `[SERVICE IN][UP][..][Pending]` and not
    /// suspended → `[Doing]`. Returns whether it started.
    fn merge_start(&mut self, now: Instant, why: &str) -> bool {
        let s = self.status();
        if !(s.ring == Ring::In && s.up && s.op == Op::Pending && !s.suspend) {
            return false;
        }
        let doing = Status { op: Op::Doing, suspend: false, ..s };
        self.set(doing, why);
        // chmpx 1.0.111 `MergeWorkerFunc` first asks k2hdkc for its last
        // update time (`PxCltSendMergeGetLastTime`) and clears the answered
        // flag after sending, so a quick answer is lost; the thread polls
        // (10^6 sleeps of 1 µs, about 70 s), gives up, and the server stays
        // [Doing]. A merge started while it polls is lost as well.
        if let Some(poll) = self.lose_next_last_ts.take() {
            self.merge_thread_busy_until = Some(now + poll);
            crate::msg!("k2hdkc's last update time answer lost: [Doing] with no merge running; merge thread polls {} s", poll.as_secs());
            return true;
        }
        if self.merge_thread_busy_until.is_some_and(|t| now < t) {
            crate::msg!("merge lost: the merge thread still polls for a lost answer");
            return true;
        }
        self.timer = Some((now + MERGE_TAKES, self.merge_target(doing)));
        true
    }

    /// chmpx `RequestMergeStart`: the reply, `Err` when refused.
    fn request_merge_start(&mut self, now: Instant) -> Result<&'static str, &'static str> {
        if !self.merge_start_allowed() {
            return Err(ERROR_SOME_SERVER_STATUS);
        }
        let ring = self.any_peer_up();
        let started = self.merge_start(now, "MERGE");
        if started || ring {
            // chmpx `ChangeDownSvrStatusByMerge(START)`.
            for p in self.peers.values_mut() {
                if let Some(d) = p.down.filter(|d| d.ring == Ring::In && d.action == Action::Delete) {
                    p.down = Some(Status { op: Op::Done, ..d });
                }
            }
        }
        Ok(if ring { SUCCEED } else { SUCCEED_NOSERVER })
    }

    /// chmpx `RequestMergeComplete` (and `MergeComplete` when alone): the
    /// reply, `Err` when refused.
    fn request_merge_complete(&mut self) -> Result<&'static str, &'static str> {
        if !self.merge_complete_allowed() {
            return Err(ERROR_SOME_SERVER_STATUS);
        }
        let ring = self.any_peer_up();
        // Down servers pending deletion: alone chmpx takes them all out; on
        // a ring only those a MERGE has marked `[Done]`.
        for p in self.peers.values_mut() {
            if p.down.is_some_and(|d| d.ring == Ring::In && d.action == Action::Delete && (!ring || d.op == Op::Done)) {
                p.down = Some(Status::OUT_DOWN);
            }
        }
        let s = self.status();
        let done = s.op == Op::Done || s.op == Op::Nothing;
        let next = match (s.ring, s.up, s.action) {
            (Ring::In, true, Action::NoAct | Action::Add) if s.suspend || !done => None,
            (Ring::In, true, Action::NoAct | Action::Add) => Some(st(Ring::In, true, Action::NoAct, Op::Nothing)),
            (Ring::In, true, Action::Delete) if (s.op != Op::Done && s.suspend) || !done => None,
            (Ring::In, true, Action::Delete) => Some(st(Ring::Out, true, Action::NoAct, Op::Nothing)),
            _ => Some(self.ring),
        };
        match next {
            Some(n) => {
                if n != self.ring {
                    self.timer = None;
                }
                self.set(n, "COMPMERGE");
                Ok(if ring { SUCCEED } else { SUCCEED_NOSERVER })
            }
            // On a ring the failure shows only in the other servers' packets.
            None if ring => Ok(SUCCEED),
            None => Err(ERROR_MERGE_COMPLETE),
        }
    }

    /// chmpx `RequestMergeAbort` / `MergeAbort`.
    fn request_merge_abort(&mut self) -> &'static str {
        let s = self.status();
        let next = match (s.ring, s.up, s.action) {
            (Ring::In, true, Action::NoAct) if s.operating() => {
                Status { op: if s.suspend { Op::Nothing } else { Op::Pending }, suspend: false, ..s }
            }
            (Ring::In, true, Action::Add) if s.operating() => Status { op: Op::Pending, suspend: false, ..s },
            (Ring::In, true, Action::Delete) => {
                st(Ring::In, true, Action::NoAct, if s.suspend { Op::Nothing } else { Op::Pending })
            }
            _ => self.ring,
        };
        self.timer = None;
        self.set(next, "ABORTMERGE");
        for p in self.peers.values_mut() {
            if p.down.is_some_and(|d| d.ring == Ring::In && d.action == Action::Delete) {
                p.down = Some(Status::OUT_DOWN);
            }
        }
        if self.any_peer_up() {
            SUCCEED
        } else {
            SUCCEED_NOSERVER
        }
    }

    /// Answers one control command as chmpx `ChmEventSock::Processing`
    /// does: the text up to a NUL, split like chmpx's `str_paeser` (empty
    /// words kept), verb case-insensitive; an empty text gets no reply.
    pub fn command(&mut self, line: &str, now: Instant) -> Reply {
        let raw = line.split('\0').next().unwrap_or("");
        let Some(words) = str_paeser(raw, &[' ', '\t', '\r', '\n']) else {
            return Reply::Text(String::new());
        };
        let verb = words[0].as_str();
        let args = &words[1..];
        let text = |s: &str| Reply::Text(s.to_owned());
        match verb.to_ascii_uppercase().as_str() {
            "VERSION" => Reply::Text(format!(
                "Version {} (commit: k2hdkc-standin) with none (STAND-IN, not chmpx)\n",
                crate::CHMPX_VERSION
            )),
            "SELFSTATUS" => Reply::Text(self.selfstatus()),
            "ALLSTATUS" => Reply::Text(self.allstatus()),
            "SERVICEIN" => self.service_in(now),
            "SERVICEOUT" => self.service_out(args, raw.trim(), now),
            // `MERGE ring`: the stand-in's spread of a MERGE another server
            // took (chmpx `MergeStart` on a received merge-start notice:
            // this server starts when it is pending, with no new check of
            // the ring, whose statuses the stand-in only knows by polling).
            "MERGE" if args.first().is_some_and(|a| a == "ring") => {
                self.merge_start(now, "MERGE spread by another server");
                text(SUCCEED)
            }
            "MERGE" => text(self.request_merge_start(now).unwrap_or_else(|e| e)),
            "COMPMERGE" => text(self.request_merge_complete().unwrap_or_else(|e| e)),
            "ABORTMERGE" => text(self.request_merge_abort()),
            "SUSPENDMERGE" | "NOSUSPENDMERGE" if !self.me.server => text(ERROR_ON_SLAVE),
            "SUSPENDMERGE" => {
                self.merge_suspended = true;
                // chmpx drops its pending start-up SERVICE IN as well.
                self.out_by_command = true;
                text(SUCCEED)
            }
            "NOSUSPENDMERGE" => {
                self.merge_suspended = false;
                text(SUCCEED)
            }
            "UPDATESTATUS" if !self.me.server => text(ERROR_ON_SLAVE),
            "UPDATESTATUS" => text(if self.any_peer_up() { SUCCEED } else { SUCCEED_NOSERVER }),
            "DUMP" | "TRACE" | "TRACEVIEW" => text("ERROR: Something error is occured.\n"),
            // Stand-in only (a real chmpx answers `Unknown command`): the
            // next merge here hits chmpx's lost-answer race (merge_start).
            "STANDIN_LOSE_NEXT_LASTTS" if self.me.server => match args.first().and_then(|a| a.parse::<u64>().ok()) {
                Some(secs) if (1..=600).contains(&secs) => {
                    self.lose_next_last_ts = Some(Duration::from_secs(secs));
                    text(SUCCEED)
                }
                _ => text(ERROR_PARAMETER),
            },
            _ => Reply::Text(format!("Unknown command({verb})\n")),
        }
    }

    /// chmpx `CtlComServiceIn` (`RequestServiceIn`, then with AUTOMERGE
    /// `RequestMergeStart`).
    fn service_in(&mut self, now: Instant) -> Reply {
        if !self.me.server {
            return Reply::Text(ERROR_ON_SLAVE.into());
        }
        if self.ring_operating() {
            return Reply::Text(ERROR_OPERATING.into());
        }
        let s = self.status();
        let next = to_service_in(s);
        if next == s {
            return Reply::Text(ERROR_NOT_ALLOWED.into());
        }
        self.out_by_command = false;
        self.set(Status { suspend: false, ..next }, "SERVICEIN");
        let mut reply = if self.any_peer_up() { "" } else { SUCCEED_STATUS_NOTICE }.to_owned();
        if self.auto_merge() {
            match self.request_merge_start(now) {
                Ok(r) => reply = r.to_owned(),
                Err(e) => return Reply::Text(format!("{e}\n{ERROR_MERGE_AUTO}")),
            }
        }
        if reply.is_empty() {
            reply = SUCCEED.into();
        }
        Reply::Text(reply)
    }

    /// The server a SERVICEOUT argument names, parsed as chmpx `Processing`
    /// and found as `CtlComServiceOut` / `GetChmpxIdByToServerName` do:
    /// `(index, host, ctlport)`.
    fn target(&self, arg: &str) -> Result<(usize, String, i16), &'static str> {
        let (host, port, third) = match self.conf.id_type {
            IdType::CtlEndpoints => {
                // host ':' ctlport ':' endpoints (which may hold ':'), no trimming.
                let Some((host, rest)) = arg.split_once(':') else { return Err(ERROR_SERVICEOUT_PARAM) };
                let Some((port, eps)) = rest.split_once(':') else { return Err(ERROR_SERVICEOUT_PARAM) };
                if eps.is_empty() {
                    return Err(ERROR_SERVICEOUT_PARAM);
                }
                (host.to_owned(), port.to_owned(), eps.to_owned())
            }
            id_type => {
                let parts = str_paeser(arg, &[':']).unwrap_or_default();
                let ok = match id_type {
                    IdType::Name => (2..=3).contains(&parts.len()),
                    _ => parts.len() == 3,
                };
                if !ok {
                    return Err(ERROR_SERVICEOUT_PARAM);
                }
                (parts[0].clone(), parts[1].clone(), parts.get(2).cloned().unwrap_or_default())
            }
        };
        let ctlport = atoi(&port) as i16;
        if host.is_empty() || ctlport == -1 {
            return Err(ERROR_PARAMETER);
        }
        let found = self.conf.servers.iter().position(|n| match self.conf.id_type {
            IdType::Name => n.name == host && n.ctlport as i16 == ctlport,
            IdType::Cuk => !third.is_empty() && n.cuk == third,
            // Not modelled: the servers' CTLENDPOINTS; chmpx then seeds the
            // id with `name:<ctlport in hex>`.
            IdType::CtlEndpoints => third == format!("{}:{:x}", n.name, n.ctlport),
            IdType::Custom => !third.is_empty() && n.custom_seed == third,
        });
        found.map(|i| (i, host, ctlport)).ok_or(ERROR_NO_SUCH_SERVER)
    }

    /// chmpx `CtlComServiceOut` and `RequestServiceOut`.
    fn service_out(&mut self, args: &[String], line: &str, now: Instant) -> Reply {
        let Some(arg) = args.first() else {
            return Reply::Text(ERROR_SERVICEOUT_PARAM.into());
        };
        let (index, host, ctlport) = match self.target(arg) {
            Err(e) => return Reply::Text(e.into()),
            Ok(t) => t,
        };
        let is_self = self.me.server && index == self.me.index;
        let key = Conf::key(&self.conf.servers[index]);
        if !is_self && self.peer_status(&key).up {
            // chmpx sends the command on to the host and port as given.
            return match ctlport as u16 {
                0 => Reply::Text(ERROR_TRANSFER.into()),
                port => Reply::Forward { name: host, ctlport: port, command: line.to_owned() },
            };
        }
        if !self.me.server {
            return Reply::Text(ERROR_ON_SLAVE.into());
        }
        if self.ring_operating() {
            return Reply::Text(ERROR_OPERATING.into());
        }
        let ring = self.any_peer_up();
        if is_self {
            let s = self.status();
            let next = to_service_out(s);
            if next == s {
                return Reply::Text(ERROR_NOT_ALLOWED.into());
            }
            self.out_by_command = true;
            self.timer = None;
            self.set(Status { suspend: false, ..next }, "SERVICEOUT");
            if !ring {
                // chmpx 1.0.111 then also sends the change to "no server",
                // fails, and stops here (the status is changed).
                return Reply::Text(ERROR_STATUS_NOTICE.into());
            }
            if self.auto_merge() {
                if let Err(e) = self.request_merge_complete() {
                    return Reply::Text(format!("{e}\n{ERROR_MERGE_AUTO}"));
                }
                // The stand-in's merge of the leaving node.
                self.merge_start(now, "SERVICEOUT, AUTOMERGE");
            }
            return Reply::Text(SUCCEED.into());
        }
        let p = self.peers.entry(key).or_default();
        let s = p.down.or(p.seen).unwrap_or(Status::OUT_DOWN);
        let next = to_service_out(s);
        if next == s {
            return Reply::Text(SUCCEED_ALREADY_OUT.into());
        }
        p.down = Some(next);
        if self.auto_merge() {
            if let Err(e) = self.request_merge_complete() {
                return Reply::Text(format!("{e}\n{ERROR_MERGE_AUTO}"));
            }
        }
        Reply::Text(SUCCEED.into())
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
        s.push_str("}\n");
        let mut kv = |k: &str, v: String| s.push_str(&format!("{k:<26}= {v}\n"));
        kv("Connection Count", "{".into());
        kv("    To Servers", servers.to_string());
        kv("    From Slaves", slaves.to_string());
        kv("    On Control port", "1".into());
        s.push_str("}\n");
        // The stand-in moves no data: every counter stays 0.
        s.push_str(&format!("{:<26}= {{\n", "Stats"));
        for peer in ["To(From) Servers", "To(From) Slaves"] {
            s.push_str(&format!("    {peer:<22}= {{\n"));
            for (k, v) in [
                ("send count", "0 count"),
                ("receive count", "0 count"),
                ("total", "0 bytes"),
                ("minimum", "0 bytes"),
                ("maximum", "0 bytes"),
                ("total", "0s 0ns"),
                ("minimum", "0s 0ns"),
                ("maximum", "0s 0ns"),
            ] {
                s.push_str(&format!("        {k:<18}= {v}\n"));
            }
            s.push_str("    }\n");
        }
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

    /// chmpx drops a server the reloaded ini lacks only once it is
    /// SERVICE OUT and DOWN: a leaver still up when the ini changed stays
    /// listed until a later reload (seen on the real chmpx after a shrink).
    #[test]
    fn a_removed_server_still_up_is_kept_at_reload_until_it_is_out_and_down() {
        let t = Instant::now();
        let mut n = node(SERVER_INI);
        let b = Conf::key(&n.conf.servers[1]);
        n.peer_report(&b, Some(Status::new(Ring::Out, true, Action::NoAct, Op::Nothing, false)));
        let without_b = SERVER_INI.replace(
            "[SVRNODE]\nNAME                = 127.0.0.1\nCUK                 = cuk-b\nPORT                = 18022\nCTLPORT             = 18023\n",
            "",
        );
        assert_ne!(without_b, SERVER_INI);
        let reload = |n: &mut Node| {
            let c = load(&without_b, &local()).unwrap();
            let me = c.find_self(None, None, &local()).unwrap();
            n.reload(c, me);
        };
        reload(&mut n);
        assert!(say(&mut n, "ALLSTATUS", t).contains("cuk-b"), "kept while up");
        n.peer_report(&b, None);
        assert!(say(&mut n, "ALLSTATUS", t).contains("[SERVICE OUT][DOWN]"));
        reload(&mut n);
        assert!(!say(&mut n, "ALLSTATUS", t).contains("cuk-b"), "dropped once out and down");
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
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t2), ERROR_STATUS_NOTICE, "alone on the ring");
        assert!(self_line(&mut n, t2).contains("[SERVICE IN][UP][DELETE][Pending]"));
        n.tick(t2, true);
        assert!(self_line(&mut n, t2).contains("[SERVICE IN][UP][DELETE][Doing]"), "AUTOMERGE merges it");
        n.tick(t2 + MERGE_TAKES, true);
        assert_eq!(self_line(&mut n, t2), "0x11(SAFE -> [SERVICE OUT][UP][n/a][Nothing][NoSuspend])");
        n.tick(t2 + Duration::from_secs(10), true);
        assert!(self_line(&mut n, t2).contains("[SERVICE OUT]"), "no rejoin by itself");
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t2), ERROR_NOT_ALLOWED);
        assert_eq!(say(&mut n, "SERVICEIN", t2), SUCCEED_NOSERVER, "AUTOMERGE: merge started alone");
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
    fn a_restarted_k2hdkc_leaves_the_node_pending_for_the_next_merge() {
        let mut n = node(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        let t = Instant::now();
        n.tick(t, true);
        say(&mut n, "SERVICEIN", t);
        say(&mut n, "MERGE", t);
        n.tick(t + Duration::from_secs(1), true);
        say(&mut n, "COMPMERGE", t);
        assert!(self_line(&mut n, t).contains("[SERVICE IN][UP][n/a][Nothing][NoSuspend]"));
        n.tick(t + Duration::from_secs(2), false);
        assert!(self_line(&mut n, t).contains("[SERVICE IN][UP][n/a][Nothing][Suspend]"), "k2hdkc stopped");
        n.tick(t + Duration::from_secs(3), true);
        assert!(self_line(&mut n, t).contains("[SERVICE IN][UP][n/a][Pending][NoSuspend]"), "attached again: pending");
        say(&mut n, "MERGE", t);
        n.tick(t + Duration::from_secs(4), true);
        assert!(self_line(&mut n, t).contains("[n/a][Done]"));
        say(&mut n, "COMPMERGE", t);
        assert!(self_line(&mut n, t).contains("[SERVICE IN][UP][n/a][Nothing][NoSuspend]"));
    }

    #[test]
    fn a_lost_last_update_time_sticks_the_merge_and_the_merges_sent_while_it_polls() {
        let mut n = node(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        let t = Instant::now();
        n.tick(t, true);
        say(&mut n, "SERVICEIN", t);
        assert_eq!(say(&mut n, "STANDIN_LOSE_NEXT_LASTTS 0", t), ERROR_PARAMETER);
        assert_eq!(say(&mut n, "STANDIN_LOSE_NEXT_LASTTS 20", t), SUCCEED);
        say(&mut n, "MERGE", t);
        n.tick(t + Duration::from_secs(10), true);
        assert!(self_line(&mut n, t).contains("[ADD][Doing]"), "stuck: the answer was lost");
        assert!(say(&mut n, "ABORTMERGE", t).starts_with("SUCCEED"));
        say(&mut n, "MERGE", t + Duration::from_secs(11));
        n.tick(t + Duration::from_secs(19), true);
        assert!(self_line(&mut n, t).contains("[ADD][Doing]"), "a MERGE while the thread polls is lost too");
        say(&mut n, "ABORTMERGE", t);
        say(&mut n, "MERGE", t + Duration::from_secs(21));
        n.tick(t + Duration::from_secs(22), true);
        assert!(self_line(&mut n, t).contains("[ADD][Done]"), "after the poll gave up a MERGE works");
    }

    #[test]
    fn a_spread_merge_starts_a_pending_server_whatever_it_last_polled() {
        let mut n = node(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        let t = Instant::now();
        n.tick(t, true);
        say(&mut n, "SERVICEIN", t);
        assert!(self_line(&mut n, t).contains("[ADD][Pending]"));
        // The ring's other server was last seen [Done]: a MERGE asked here
        // is refused, the one spread from the server that took it is not.
        let key = n.others()[0].0.clone();
        n.peer_report(&key, Some(st(Ring::In, true, Action::NoAct, Op::Done)));
        assert_eq!(say(&mut n, "MERGE", t), ERROR_SOME_SERVER_STATUS);
        assert_eq!(say(&mut n, "MERGE ring", t), SUCCEED);
        assert!(self_line(&mut n, t).contains("[ADD][Doing]"));
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
        // Alone on the ring, COMPMERGE takes it out (chmpx
        // `ChangeDownSvrStatusByMerge`).
        assert_eq!(say(&mut n, "COMPMERGE", t), SUCCEED_NOSERVER);
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
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:seed-a", t), ERROR_STATUS_NOTICE, "found: alone");
    }

    // ---- Regression tests: chmpx 1.0.111 `ChmEventSock` refusals, one each,
    // with the real reply text.

    fn custom_ini() -> String {
        SERVER_INI
            .replace("DELIVERMODE         = hash", "DELIVERMODE = hash\nCHMPXIDTYPE = CUSTOM")
            .replace("CUK                 = cuk-a", "CUK = cuk-a\nCUSTOM_ID_SEED = seed-a")
            .replace("CUK                 = cuk-b", "CUK = cuk-b\nCUSTOM_ID_SEED = seed-b")
    }

    fn with_id_type(t: &str) -> Node {
        node(&SERVER_INI.replace("DELIVERMODE         = hash", &format!("DELIVERMODE = hash\nCHMPXIDTYPE = {t}")))
    }

    /// A node serving (`0x21`) at `t + 2 s`.
    fn serving(text: &str) -> (Node, Instant) {
        let mut n = node(text);
        let t = Instant::now();
        n.tick(t, true);
        n.tick(t + AUTO_JOIN_AFTER, true);
        n.tick(t + Duration::from_secs(2), true);
        if !n.conf.automerge {
            say(&mut n, "SERVICEIN", t);
            say(&mut n, "MERGE", t);
            n.tick(t + Duration::from_secs(2), true);
            say(&mut n, "COMPMERGE", t);
        }
        assert!(self_line(&mut n, t).starts_with("0x21("));
        (n, t + Duration::from_secs(2))
    }

    const PEER: &str = "127.0.0.1:18023";

    #[test]
    fn serviceout_custom_refuses_name_ctlport_shape() {
        // The defect that reached production: `host:ctlport` on a CUSTOM ring.
        let (mut n, t) = serving(&custom_ini());
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t), ERROR_SERVICEOUT_PARAM);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:seed-a:x", t), ERROR_SERVICEOUT_PARAM, "four parts");
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:", t), ERROR_SERVICEOUT_PARAM, "no word after a trailing ':'");
        assert!(self_line(&mut n, t).starts_with("0x21("), "no change");
    }

    #[test]
    fn serviceout_without_argument_refused() {
        let (mut n, t) = serving(SERVER_INI);
        assert_eq!(say(&mut n, "SERVICEOUT", t), ERROR_SERVICEOUT_PARAM);
        assert_eq!(say(&mut n, "serviceout\n", t), ERROR_SERVICEOUT_PARAM);
    }

    #[test]
    fn serviceout_name_shape_is_two_or_three_parts() {
        let (mut n, t) = serving(SERVER_INI);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1", t), ERROR_SERVICEOUT_PARAM);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:a:b", t), ERROR_SERVICEOUT_PARAM);
        // The third part (a CUK) is ignored by NAME ids: found, and alone.
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:whatever", t), ERROR_STATUS_NOTICE);
    }

    #[test]
    fn serviceout_cuk_needs_exactly_three_parts_and_matches_by_cuk() {
        let mut n = with_id_type("CUK");
        let t = Instant::now();
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t), ERROR_SERVICEOUT_PARAM);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:cuk-a:x", t), ERROR_SERVICEOUT_PARAM);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:cuk-z", t), ERROR_NO_SUCH_SERVER);
        // Only the CUK names the node; it is out and suspended here.
        assert_eq!(say(&mut n, "SERVICEOUT other.host:1:cuk-a", t), ERROR_NOT_ALLOWED);
    }

    #[test]
    fn serviceout_ctlendpoints_takes_the_rest_after_the_second_colon() {
        let mut n = with_id_type("CTLENDPOINTS");
        let t = Instant::now();
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t), ERROR_SERVICEOUT_PARAM);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:", t), ERROR_SERVICEOUT_PARAM, "empty endpoints");
        // Endpoints holding ':' are one value (not a fourth part).
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:10.0.0.1:8021", t), ERROR_NO_SUCH_SERVER);
        // A node without CTLENDPOINTS: chmpx seeds its id with name:<ctlport hex>.
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:127.0.0.1:4665", t), ERROR_NOT_ALLOWED);
    }

    #[test]
    fn serviceout_empty_host_or_port_minus_one_parameters_wrong() {
        let (mut n, t) = serving(&custom_ini());
        assert_eq!(say(&mut n, "SERVICEOUT :18021:seed-a", t), ERROR_PARAMETER);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:-1:seed-a", t), ERROR_PARAMETER);
        let (mut m, t) = serving(SERVER_INI);
        assert_eq!(say(&mut m, "SERVICEOUT :18021", t), ERROR_PARAMETER);
    }

    #[test]
    fn serviceout_port_is_read_like_atoi() {
        let (mut n, t) = serving(SERVER_INI);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:abc", t), ERROR_NO_SUCH_SERVER, "port 0");
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021abc", t), ERROR_STATUS_NOTICE, "port 18021: self");
    }

    #[test]
    fn serviceout_unknown_server() {
        let (mut n, t) = serving(&custom_ini());
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:seed-z", t), ERROR_NO_SUCH_SERVER);
    }

    #[test]
    fn serviceout_custom_live_peer_is_forwarded_to_the_host_given() {
        let (mut n, t) = serving(&custom_ini());
        n.peer_report(PEER, Status::from_code(0x21));
        assert_eq!(
            n.command("SERVICEOUT 10.9.9.9:18099:seed-b", t),
            Reply::Forward { name: "10.9.9.9".into(), ctlport: 18099, command: "SERVICEOUT 10.9.9.9:18099:seed-b".into() }
        );
        assert_eq!(say(&mut n, "SERVICEOUT 10.9.9.9::seed-b", t), ERROR_TRANSFER, "port 0: no connection");
    }

    #[test]
    fn serviceout_self_alone_changes_status_but_replies_status_notice_error() {
        let (mut n, t) = serving(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t), ERROR_STATUS_NOTICE);
        assert_eq!(self_line(&mut n, t), "0x1221(SAFE -> [SERVICE IN][UP][DELETE][Pending][NoSuspend])");
    }

    #[test]
    fn serviceout_self_on_a_ring_succeeds() {
        let (mut n, t) = serving(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        n.peer_report(PEER, Status::from_code(0x21));
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t), SUCCEED);
        assert!(self_line(&mut n, t).contains("[SERVICE IN][UP][DELETE][Pending]"));
    }

    #[test]
    fn serviceout_twice_of_self_not_allowed() {
        let (mut n, t) = serving(&custom_ini());
        say(&mut n, "SERVICEOUT 127.0.0.1:18021:seed-a", t);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021:seed-a", t), ERROR_NOT_ALLOWED, "[DELETE][Pending]");
    }

    #[test]
    fn serviceout_self_when_out_and_up_not_allowed() {
        let mut n = node(SERVER_INI);
        let t = Instant::now();
        n.tick(t, true);
        assert!(self_line(&mut n, t).starts_with("0x11("));
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t), ERROR_NOT_ALLOWED);
    }

    #[test]
    fn serviceout_while_merging_operating() {
        let (mut n, t) = serving(SERVER_INI);
        n.peer_report(PEER, Status::from_code(0x2121));
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18021", t), ERROR_OPERATING, "a peer is [Doing]");
        n.peer_report(PEER, Status::from_code(0x3121));
        assert_eq!(say(&mut n, "SERVICEIN", t), ERROR_OPERATING, "a peer is [Done]");
    }

    #[test]
    fn serviceout_of_a_down_server_twice_already_serviceout() {
        let (mut n, t) = serving(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        n.peer_report(PEER, Status::from_code(0x21));
        n.peer_report(PEER, None);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18023", t), SUCCEED, "[SERVICE IN][DOWN] -> [DELETE]");
        assert!(say(&mut n, "ALLSTATUS", t).contains("[SERVICE IN][DOWN][DELETE][Pending]"));
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18023", t), SUCCEED_ALREADY_OUT, "already [DELETE]");
        n.peer_report(PEER, Status::from_code(0x11));
        n.peer_report(PEER, None);
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18023", t), SUCCEED_ALREADY_OUT, "out and down");
    }

    #[test]
    fn a_crashed_server_is_kept_in_service_and_comes_back_pending() {
        // AUTOMERGE off: the ring keeps a dead server [SERVICE IN][DOWN].
        let ini = SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off");
        let (mut n, t) = serving(&ini);
        n.peer_report(PEER, Status::from_code(0x21));
        n.peer_report(PEER, None);
        let all = say(&mut n, "ALLSTATUS", t);
        assert!(all.contains("0x20(SAFE -> [SERVICE IN][DOWN][n/a][Nothing][NoSuspend])"), "{all}");
        // Restarted, it takes that status: in service, suspended until
        // k2hdkc attaches, then pending for the merge of what it missed.
        let mut back = node(&ini);
        back.adopt(Status::parse_reply(&all.split("\nNo.").nth(2).unwrap().to_owned()).unwrap());
        assert!(self_line(&mut back, t).contains("[SERVICE IN][UP][n/a][Nothing][Suspend]"));
        back.tick(t, true);
        assert!(self_line(&mut back, t).contains("[SERVICE IN][UP][n/a][Pending][NoSuspend]"));
        // A server the ring never had in service starts out of it.
        let mut new = node(&ini);
        new.adopt(Status::OUT_DOWN);
        assert!(self_line(&mut new, t).contains("[SERVICE OUT][UP]"));
    }

    #[test]
    fn serviceout_on_slave_of_a_down_server_refused() {
        let slave_ini = SERVER_INI
            .replace("MODE                = SERVER", "MODE = SLAVE")
            .replace("SELFCTLPORT         = 18021", "SELFCTLPORT = 18031")
            .replace("SELFCUK             = cuk-a", "");
        let mut s = node(&slave_ini);
        let t = Instant::now();
        assert_eq!(say(&mut s, "SERVICEOUT 127.0.0.1:18021", t), ERROR_ON_SLAVE);
        assert_eq!(say(&mut s, "SERVICEIN", t), ERROR_ON_SLAVE);
        assert_eq!(say(&mut s, "SUSPENDMERGE", t), ERROR_ON_SLAVE);
        assert_eq!(say(&mut s, "NOSUSPENDMERGE", t), ERROR_ON_SLAVE);
        assert_eq!(say(&mut s, "UPDATESTATUS", t), ERROR_ON_SLAVE);
        // chmpx never sends "Command must run on server mode.": a slave has no ring.
        assert_eq!(say(&mut s, "MERGE", t), SUCCEED_NOSERVER);
        assert_eq!(say(&mut s, "ABORTMERGE", t), SUCCEED_NOSERVER);
    }

    #[test]
    fn servicein_when_in_not_allowed() {
        let (mut n, t) = serving(SERVER_INI);
        assert_eq!(say(&mut n, "SERVICEIN", t), ERROR_NOT_ALLOWED);
    }

    #[test]
    fn servicein_while_suspended_not_allowed() {
        let mut n = node(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        let t = Instant::now();
        assert_eq!(say(&mut n, "SERVICEIN", t), ERROR_NOT_ALLOWED, "[SERVICE OUT][UP][Suspend]: no k2hdkc");
    }

    #[test]
    fn servicein_while_self_merging_operating() {
        let mut n = node(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        let t = Instant::now();
        n.tick(t, true);
        say(&mut n, "SERVICEIN", t);
        say(&mut n, "MERGE", t);
        assert!(self_line(&mut n, t).contains("[ADD][Doing]"));
        assert_eq!(say(&mut n, "SERVICEIN", t), ERROR_OPERATING);
    }

    #[test]
    fn servicein_after_serviceout_goes_back_to_noact_pending() {
        // CHANGE_CHMPXSTS_TO_SRVIN: [DELETE][Pending] → [n/a][Pending], not [Nothing].
        let (mut n, t) = serving(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        say(&mut n, "SERVICEOUT 127.0.0.1:18021", t);
        assert_eq!(say(&mut n, "SERVICEIN", t), SUCCEED_STATUS_NOTICE);
        assert_eq!(self_line(&mut n, t), "0x1021(SAFE -> [SERVICE IN][UP][n/a][Pending][NoSuspend])");
    }

    #[test]
    fn servicein_automerge_refused_merge_appends_auto_error() {
        // SERVICEIN succeeds, the AUTOMERGE start is refused (a peer in service without k2hdkc).
        let mut n = node(SERVER_INI);
        let t = Instant::now();
        n.tick(t, true);
        n.peer_report(PEER, Status::from_code(0x10021));
        say(&mut n, "SUSPENDMERGE", t);
        say(&mut n, "NOSUSPENDMERGE", t);
        assert_eq!(
            say(&mut n, "SERVICEIN", t),
            format!("{ERROR_SOME_SERVER_STATUS}\n{ERROR_MERGE_AUTO}"),
        );
        assert!(self_line(&mut n, t).contains("[SERVICE IN][UP][ADD][Pending]"));
    }

    #[test]
    fn merge_while_a_server_is_doing_some_servers() {
        let (mut n, t) = serving(SERVER_INI);
        n.peer_report(PEER, Status::from_code(0x2121));
        assert_eq!(say(&mut n, "MERGE", t), ERROR_SOME_SERVER_STATUS);
    }

    #[test]
    fn merge_twice_while_doing_or_done_some_servers() {
        let mut n = node(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        let t = Instant::now();
        n.tick(t, true);
        say(&mut n, "SERVICEIN", t);
        assert_eq!(say(&mut n, "MERGE", t), SUCCEED_NOSERVER);
        assert_eq!(say(&mut n, "MERGE", t), ERROR_SOME_SERVER_STATUS, "[Doing]");
        n.tick(t + Duration::from_secs(1), true);
        assert!(self_line(&mut n, t).contains("[ADD][Done]"));
        assert_eq!(say(&mut n, "MERGE", t), ERROR_SOME_SERVER_STATUS, "[Done]");
    }

    #[test]
    fn merge_with_a_serving_server_suspended_some_servers() {
        let (mut n, t) = serving(SERVER_INI);
        n.tick(t, false);
        assert!(self_line(&mut n, t).starts_with("0x10021("));
        assert_eq!(say(&mut n, "MERGE", t), ERROR_SOME_SERVER_STATUS);
    }

    #[test]
    fn compmerge_while_a_server_is_doing_some_servers() {
        let mut n = node(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        let t = Instant::now();
        n.tick(t, true);
        say(&mut n, "SERVICEIN", t);
        say(&mut n, "MERGE", t);
        assert_eq!(say(&mut n, "COMPMERGE", t), ERROR_SOME_SERVER_STATUS);
        assert!(self_line(&mut n, t).contains("[ADD][Doing]"), "unchanged");
    }

    #[test]
    fn compmerge_alone_when_pending_or_suspended_failed_to_complete() {
        let mut n = node(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        let t = Instant::now();
        n.tick(t, true);
        say(&mut n, "SERVICEIN", t);
        assert_eq!(say(&mut n, "COMPMERGE", t), ERROR_MERGE_COMPLETE, "[ADD][Pending]: not merged yet");
        let (mut m, t) = serving(SERVER_INI);
        m.tick(t, false);
        assert_eq!(say(&mut m, "COMPMERGE", t), ERROR_MERGE_COMPLETE, "[SERVICE IN][Suspend]");
        let (mut k, t) = serving(SERVER_INI);
        assert_eq!(say(&mut k, "COMPMERGE", t), SUCCEED_NOSERVER, "serving: nothing to do");
    }

    #[test]
    fn abortmerge_of_serviceout_goes_back_to_noact_pending() {
        let (mut n, t) = serving(&SERVER_INI.replace("AUTOMERGE           = on", "AUTOMERGE = off"));
        say(&mut n, "SERVICEOUT 127.0.0.1:18021", t);
        assert_eq!(say(&mut n, "ABORTMERGE", t), SUCCEED_NOSERVER);
        assert_eq!(self_line(&mut n, t), "0x1021(SAFE -> [SERVICE IN][UP][n/a][Pending][NoSuspend])");
    }

    #[test]
    fn suspendmerge_stops_automerge_until_nosuspendmerge() {
        let mut n = node(SERVER_INI);
        let t = Instant::now();
        n.tick(t, true);
        let (t1, t2) = (t + Duration::from_secs(1), t + Duration::from_secs(2));
        assert_eq!(say(&mut n, "SUSPENDMERGE", t), SUCCEED);
        n.tick(t1, true);
        assert!(self_line(&mut n, t1).starts_with("0x11("), "no automatic join while suspended");
        assert_eq!(say(&mut n, "SERVICEIN", t1), SUCCEED_STATUS_NOTICE, "no automatic merge either");
        n.tick(t2, true);
        assert!(self_line(&mut n, t2).contains("[ADD][Pending]"));
        assert_eq!(say(&mut n, "NOSUSPENDMERGE", t2), SUCCEED);
        n.tick(t2, true);
        n.tick(t2 + Duration::from_secs(1), true);
        assert!(self_line(&mut n, t2).starts_with("0x21("), "AUTOMERGE again merges the pending join");
    }

    #[test]
    fn updatestatus_alone_no_server_on_ring() {
        let (mut n, t) = serving(SERVER_INI);
        assert_eq!(say(&mut n, "UPDATESTATUS", t), SUCCEED_NOSERVER);
    }

    #[test]
    fn words_are_split_like_str_paeser() {
        let (mut n, t) = serving(SERVER_INI);
        assert_eq!(say(&mut n, "\n", t), "Unknown command()\n", "an empty word");
        assert_eq!(say(&mut n, " SELFSTATUS", t), "Unknown command()\n", "a leading blank makes an empty verb");
        assert_eq!(say(&mut n, "", t), "", "nothing received: no reply");
        assert_eq!(say(&mut n, "SERVICEIN and more", t), ERROR_NOT_ALLOWED, "extra words are ignored");
        assert_eq!(say(&mut n, "SERVICEOUT  127.0.0.1:18021", t), ERROR_SERVICEOUT_PARAM, "two blanks: empty argument");
    }

    #[test]
    fn automerge_alone_takes_a_stopped_server_out() {
        // compare-real.sh F01: the survivor alone shows the stopped peer as 0x10.
        let (mut n, t) = serving(SERVER_INI);
        n.peer_report(PEER, Status::from_code(0x21));
        n.peer_report(PEER, None);
        assert!(say(&mut n, "ALLSTATUS", t).contains("0x1220("));
        n.tick(t + Duration::from_secs(1), true);
        assert!(say(&mut n, "ALLSTATUS", t).contains("0x10(SAFE -> [SERVICE OUT][DOWN]"));
        assert_eq!(say(&mut n, "SERVICEOUT 127.0.0.1:18023", t), SUCCEED_ALREADY_OUT);
    }
}
