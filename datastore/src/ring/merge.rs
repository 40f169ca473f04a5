//! Merging the whole ring so every key sits on its owner (CONTRACTS.md §7).
//!
//! Measured on the real chmpx: reads go to a key's primary owner only, and
//! a merge moves data only into servers that are `[Pending]` when it
//! starts. A membership change therefore ends with every server of the
//! ring pending (the joining one by `SERVICEIN`, the others by a k2hdkc
//! restart, the leaving one by `SERVICEOUT`), then `MERGE`, a wait until
//! every server is `[Done]`, and `COMPMERGE`. This module runs that last
//! part and watches it through `ALLSTATUS`, which has no progress counter:
//! the merge is over when no server shows Pending, Doing or Done and every
//! server's Enable hash equals its Pending hash.
//!
//! chmpx answers its control port seconds late while it merges: a slow
//! answer is a busy server, never a dead one. A merge that stays `[Doing]`
//! beyond [`MergeBounds::stuck_after`] (longer while the other servers
//! merge too, see `Merge::stuck_bound`) is aborted (`ABORTMERGE`, which
//! freed the hung join measured in §7) and started again, at most
//! [`MergeBounds::repairs`] times, but only [`MergeBounds::rearm_after`]
//! after the MERGE it repairs. Read in chmpx 1.0.111 (`lib/chmeventsock.cc`
//! `MergeWorkerFunc`, `lib/chmeventmq.cc` `PxCltSendMergeGetLastTime`): a
//! merging server first asks its k2hdkc for its last update time and
//! clears the "answered" flag only after sending the question, so a quick
//! answer is lost; it then polls 10^6 times with 1 µs sleeps (its "1 s"
//! timeout, 66-74 s measured in the box), gives up, and stays `[Doing]`
//! with nothing running. A MERGE sent while that poll runs was lost too
//! and left the server stuck through every later repair (CI, and the box).
//!
//! `ABORTMERGE` also takes a leaving server's `[DELETE]` back to
//! `[n/a][Pending]` (chmpx `MergeAbort`): merged like that, the ring kept
//! the leaver in service with its hash range, and its keys became
//! unreadable once it stopped (seen on a shrink in the box). So every
//! server seen leaving is sent its `SERVICEOUT` again after an abort, and
//! no MERGE goes until it shows `[DELETE]` again.
//!
//! The real chmpx spreads `MERGE`, `COMPMERGE` and `ABORTMERGE` to the
//! whole ring from the server that takes them; each command is also sent
//! to every server whose own status asks for it, which a server that
//! already took it refuses harmlessly.

use std::time::{Duration, Instant};

use driver_api::DatastoreError;
use serde::Serialize;

use super::view::RingView;
use crate::chmpx::{self, ServerStatus};

mod bounds;
mod seen;
mod watch;
pub use bounds::MergeBounds;
pub use seen::describe;
use seen::{blocking_merge, control_addr, key, phase, read_ring, Phase, ReadError};

/// How often the ring is looked at while it waits for a command.
const POLL: Duration = Duration::from_millis(250);
/// How often while it merges: every look is a control-port connection,
/// and chmpx 1.0.111 mishandles the descriptors of control connections
/// that come and go while its sockets are busy (`AcceptCtlport` finds its
/// new socket closed under it, `errno=9`, and another thread reads a
/// command as a peer's packet) in every merge of the box at 4 looks a
/// second. A merge takes seconds to minutes; one look a second tells it.
const MERGING_POLL: Duration = Duration::from_secs(1);
/// How long after the first server finished a server still shown
/// `[Doing]` is asked itself how it stands, and how often again.
const ASK_DOING_EVERY: Duration = Duration::from_secs(5);
/// How long one control command may take during a merge.
const SLOW_ANSWER: Duration = Duration::from_secs(10);
/// The least time between two sends of the same command.
const RESEND_AFTER: Duration = Duration::from_secs(2);
/// How long the ring must look settled, twice in a row, to be merged.
const SETTLED_FOR: Duration = Duration::from_secs(1);
/// How long only the coordinator is given MERGE or COMPMERGE before the
/// servers that still ask for it get it themselves.
const FAN_OUT_AFTER: Duration = Duration::from_secs(5);
/// When nothing to merge ever showed: statuses reach `ALLSTATUS` through
/// status notices, so a change just made may show a moment later.
const NOTHING_SHOWED_AFTER: Duration = Duration::from_secs(3);
/// How long a server's own view may still show a server `[Done]` after
/// the coordinator's view settled before it is sent `COMPMERGE`: a
/// notice on its way takes milliseconds.
const STALE_VIEW_AFTER: Duration = Duration::from_secs(3);

/// How a merge went.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MergeReport {
    /// Seconds from start to a settled ring.
    pub seconds: f64,
    /// The commands sent, in order, with where and the reply.
    pub commands: Vec<String>,
    /// What was repaired (a stuck merge aborted and started again).
    pub repairs: Vec<String>,
    /// Servers that had finished but were still shown merging (a lost
    /// status notice), and were told to announce their status again.
    pub renotified: Vec<String>,
    /// Whether any server had something to merge.
    pub merged: bool,
}

/// Why the ring did not merge.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No server of the ring answers `ALLSTATUS`.
    #[error("no server of the ring answers ALLSTATUS: {0}")]
    NoAnswer(String),
    /// Not settled in time.
    #[error(
        "the ring did not finish merging within {bound:?}{blocked}; last seen: {last}; repairs: {repairs:?}"
    )]
    Timeout {
        /// The bound.
        bound: Duration,
        /// Why chmpx refused to start the merge, when it did: `; chmpx
        /// refuses MERGE while ...`, else empty.
        blocked: String,
        /// The servers as last seen.
        last: String,
        /// The repairs tried.
        repairs: Vec<String>,
    },
    /// Stuck again after every repair.
    #[error("the merge stayed stuck at [Doing] on {server} after {repairs} repairs (ABORTMERGE and MERGE); last seen: {last}")]
    Stuck {
        /// The server.
        server: String,
        /// How many repairs were tried.
        repairs: usize,
        /// The servers as last seen.
        last: String,
    },
}

/// Merges the ring `coordinator` (a control address) belongs to, within
/// `bounds`. `members` are the ini's servers as (CUK, control address),
/// this node's with the coordinator's address: where commands go, and
/// where `ALLSTATUS` is read when the coordinator answers late.
/// `serviceout` gives the `SERVICEOUT` command that takes a server out
/// (in the ini's `CHMPXIDTYPE` grammar), for leavers an abort brought back.
pub async fn merge_ring(
    coordinator: &str,
    members: &[(String, String)],
    default_ctlport: u16,
    serviceout: &(dyn Fn(&ServerStatus) -> Option<String> + Sync),
    bounds: MergeBounds,
) -> Result<MergeReport, MergeError> {
    let mut m = Merge::new(coordinator, members, default_ctlport, serviceout, bounds);
    let mut readers: Vec<String> = vec![coordinator.to_owned()];
    for (_, addr) in members {
        if !readers.contains(addr) {
            readers.push(addr.clone());
        }
    }
    loop {
        if Instant::now() >= m.deadline {
            let blocked = m.blocked_why();
            let last = match m.stale_note {
                Some(note) => format!("{}; {note}", m.last),
                None => m.last,
            };
            return Err(MergeError::Timeout {
                bound: bounds.total,
                blocked,
                last,
                repairs: m.report.repairs,
            });
        }
        let servers = match read_ring(&readers).await {
            Ok(s) => s,
            Err(ReadError::Busy(why)) => {
                // A merging chmpx answers late: wait, do not give up.
                m.last = why;
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(ReadError::None(why)) => return Err(MergeError::NoAnswer(why)),
        };
        m.last = describe(&servers);
        m.note_leavers(&servers);
        let phase = phase(&servers);
        m.blocked = if phase == Phase::Start {
            blocking_merge(&servers)
        } else {
            Vec::new()
        };
        if phase != Phase::Settled {
            m.settled_since = None;
            m.report.merged = true;
        }
        let now = Instant::now();
        match phase {
            Phase::Settled => {
                if m.settled_long_enough(now) && m.every_view_settled(&servers, now).await {
                    m.report.seconds = m.start.elapsed().as_secs_f64();
                    tracing::info!(seconds = m.report.seconds, merged = m.report.merged, repairs = m.report.repairs.len(), renotified = m.report.renotified.len(), ring = %m.last, "ring merged");
                    return Ok(m.report);
                }
            }
            Phase::Start | Phase::Complete => m.start_or_complete(phase, &servers, now).await,
            Phase::Merging => {
                m.ask_the_doing(&servers, now).await;
                m.watch_doing(&servers, now).await?
            }
        }
        tokio::time::sleep(if phase == Phase::Merging {
            MERGING_POLL
        } else {
            POLL
        })
        .await;
    }
}

/// One merge in progress: its bounds, what was seen and what was sent.
struct Merge<'a> {
    coordinator: &'a str,
    members: &'a [(String, String)],
    default_ctlport: u16,
    serviceout: &'a (dyn Fn(&ServerStatus) -> Option<String> + Sync),
    bounds: MergeBounds,
    start: Instant,
    deadline: Instant,
    report: MergeReport,
    last_sent: Vec<(String, Instant)>,
    doing_since: Option<(String, Instant)>,
    settled_since: Option<Instant>,
    /// When the ring began asking for MERGE (true) or COMPMERGE (false).
    phase_since: Option<(bool, Instant)>,
    /// Servers seen leaving ([DELETE]): their key, and the SERVICEOUT that
    /// takes them out again after an ABORTMERGE.
    leaving: Vec<((String, String, String), String)>,
    /// When the current MERGE attempt began, and when the next may begin.
    attempt_began: Option<Instant>,
    /// How long into the current attempt the first server showed `[Done]`.
    first_done: Option<Duration>,
    hold_merge_until: Option<Instant>,
    /// When the servers shown `[Doing]` were last asked themselves.
    asked_doing: Option<Instant>,
    /// Since when, when last told and when last looked at, a server's own
    /// view showed a server `[Done]` after the coordinator's had settled.
    stale_views: Option<(Instant, Option<Instant>, Instant)>,
    /// What those views showed, for the errors.
    stale_note: Option<String>,
    /// The ring as last seen, for the errors.
    last: String,
    /// The servers for which chmpx refused a MERGE, as last seen.
    blocked: Vec<String>,
}

impl<'a> Merge<'a> {
    fn new(
        coordinator: &'a str,
        members: &'a [(String, String)],
        default_ctlport: u16,
        serviceout: &'a (dyn Fn(&ServerStatus) -> Option<String> + Sync),
        bounds: MergeBounds,
    ) -> Self {
        let start = Instant::now();
        Merge {
            coordinator,
            members,
            default_ctlport,
            serviceout,
            bounds,
            start,
            deadline: start + bounds.total,
            report: MergeReport::default(),
            last_sent: Vec::new(),
            doing_since: None,
            settled_since: None,
            phase_since: None,
            leaving: Vec::new(),
            attempt_began: None,
            first_done: None,
            hold_merge_until: None,
            asked_doing: None,
            stale_views: None,
            stale_note: None,
            last: String::from("nothing read yet"),
            blocked: Vec::new(),
        }
    }

    /// For a timeout: the servers that kept chmpx from starting a merge.
    fn blocked_why(&self) -> String {
        if self.blocked.is_empty() {
            String::new()
        } else {
            format!("; chmpx refuses MERGE while {}", self.blocked.join(", "))
        }
    }

    fn note_leavers(&mut self, servers: &[ServerStatus]) {
        for s in servers.iter().filter(|s| s.status.action == "DELETE") {
            if !self.leaving.iter().any(|(k, _)| *k == key(s)) {
                if let Some(command) = (self.serviceout)(s) {
                    self.leaving.push((key(s), command));
                }
            }
        }
    }

    /// Settled twice in a row, and either merged or nothing showed for long.
    fn settled_long_enough(&mut self, now: Instant) -> bool {
        let since = *self.settled_since.get_or_insert(now);
        now.duration_since(since) >= SETTLED_FOR
            && (self.report.merged || now.duration_since(self.start) >= NOTHING_SHOWED_AFTER)
    }

    /// The ring asks for MERGE (`Phase::Start`) or COMPMERGE.
    async fn start_or_complete(&mut self, phase: Phase, servers: &[ServerStatus], now: Instant) {
        self.doing_since = None;
        let starting = phase == Phase::Start;
        let (command, wanted) = if starting {
            ("MERGE", "Pending")
        } else {
            ("COMPMERGE", "Done")
        };
        // The real chmpx spreads the command to the ring from the server
        // that takes it; a second MERGE from another server while the
        // first spreads was followed, twice in the box, by a join hung at
        // [Doing]. So the coordinator alone first; the servers still
        // asking for it get it themselves only after FAN_OUT_AFTER (a ring
        // that does not spread it, like the stand-in's).
        if self.phase_since.is_some_and(|(start, _)| start != starting) {
            self.phase_since = None;
        }
        if starting {
            if let Some(until) = self.hold_merge_until.filter(|u| now < *u) {
                tracing::debug!(
                    wait_s = until.duration_since(now).as_secs_f64(),
                    "MERGE again once the stuck merge thread gave up"
                );
                return;
            }
            if self.send_leavers_out_again(servers).await {
                return;
            }
            self.hold_merge_until = None;
            self.attempt_began.get_or_insert(now);
        }
        let first = *self.phase_since.get_or_insert((starting, now));
        let mut targets = vec![self.coordinator.to_owned()];
        if now.duration_since(first.1) >= FAN_OUT_AFTER {
            for s in servers
                .iter()
                .filter(|s| s.status.merge == wanted && s.status.live == "UP")
            {
                targets.push(control_addr(s, self.members, self.default_ctlport));
            }
        }
        send_each(&targets, command, &mut self.last_sent, &mut self.report).await;
    }

    /// A leaver an abort brought back goes out again before any MERGE;
    /// true when one had to.
    async fn send_leavers_out_again(&mut self, servers: &[ServerStatus]) -> bool {
        let back: Vec<String> = self
            .leaving
            .iter()
            .filter(|(k, _)| {
                servers.iter().any(|s| {
                    key(s) == *k && s.status.ring == "SERVICE IN" && s.status.action != "DELETE"
                })
            })
            .map(|(_, c)| c.clone())
            .collect();
        for command in &back {
            let to = [self.coordinator.to_owned()];
            send_each(&to, command, &mut self.last_sent, &mut self.report).await;
        }
        !back.is_empty()
    }
}

/// Sends `command` to each target (once per [`RESEND_AFTER`] each),
/// recording replies. Refusals are expected: a server that already took
/// the ring's command says it cannot change its status now.
async fn send_each(
    targets: &[String],
    command: &str,
    last_sent: &mut Vec<(String, Instant)>,
    report: &mut MergeReport,
) {
    let mut seen = Vec::new();
    for addr in targets {
        if seen.contains(addr) {
            continue;
        }
        seen.push(addr.clone());
        let key = format!("{command} {addr}");
        if last_sent
            .iter()
            .any(|(k, t)| *k == key && t.elapsed() < RESEND_AFTER)
        {
            continue;
        }
        last_sent.retain(|(k, _)| *k != key);
        last_sent.push((key, Instant::now()));
        let reply = match chmpx::command_within(addr, command, SLOW_ANSWER).await {
            Ok(r) => r.trim().to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::info!(server = %addr, command, reply = %reply, "merge step");
        report.commands.push(format!("{command} @ {addr}: {reply}"));
    }
}

/// `k2hdkc_ring_merge`: merges the whole ring from this node and reports
/// what it saw.
pub async fn ring_merge(
    view: &RingView,
    bounds: MergeBounds,
) -> Result<serde_json::Value, DatastoreError> {
    let report = merge_the_ring(view, &view.ctl, bounds).await?;
    serde_json::to_value(report).map_err(|e| DatastoreError::failed("report the merge", e))
}

/// Merges the ring `view` belongs to ([`merge_ring`]) from
/// `coordinator` (a control address), with the ini's members as where
/// commands go.
pub async fn merge_the_ring(
    view: &RingView,
    coordinator: &str,
    bounds: MergeBounds,
) -> Result<MergeReport, DatastoreError> {
    let members = view.member_addresses();
    let facts = &view.facts;
    let serviceout = |s: &ServerStatus| {
        facts.servers.iter().find_map(|n| {
            let ctlport = facts.ctlport_of(n, view.ctlport);
            if !s.is(facts.id_type, n, ctlport) {
                return None;
            }
            chmpx::serviceout_argument(facts.id_type, n, ctlport)
                .ok()
                .map(|arg| format!("SERVICEOUT {arg}"))
        })
    };
    merge_ring(coordinator, &members, view.ctlport, &serviceout, bounds)
        .await
        .map_err(|e| DatastoreError::failed("merge the ring", e))
}

#[cfg(test)]
mod tests;
