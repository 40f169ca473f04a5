//! This node's place in the chmpx ring: leaving it so that no key is left
//! with a dead owner (CONTRACTS.md §6–§7: with `REPLICA = 1`, the keys of
//! a node that stops without `SERVICEOUT` are unreadable until a merge).
//!
//! Leaving is `SERVICEOUT` in the grammar of the ini's `CHMPXIDTYPE`, then
//! a bounded wait until every server that still answers lists this node
//! `[SERVICE OUT]` in `ALLSTATUS`. Only then may its containers stop.
//!
//! Seen on the real chmpx 1.0.111: on a ring where no other server is up,
//! SERVICEOUT of self changes the status to `[DELETE][Pending]` but answers
//! `ERROR: Failed to send status notice to other servers.`, and AUTOMERGE
//! never starts the merge; `MERGE` then takes the node `[SERVICE OUT]` at
//! once. So a deletion left pending is merged here (`MERGE`, then
//! `COMPMERGE` once the node shows `[Done]`).

use std::time::{Duration, Instant};

use driver_api::DatastoreError;
use serde_json::{json, Value};

use super::view::{send_checked, RingView, Sent, POLL, SLOW_ANSWER};
use crate::chmpx::{self, ChmpxError, NodeStatus, ServerStatus};
use crate::ini::{IniFacts, NodeEntry};

/// chmpx's reply when this node is already out (and up).
const NOT_ALLOWED: &str = "ERROR: Could not change status, because status is not allowed.";
/// chmpx's reply while a server of the ring is merging: try again.
const OPERATING: &str = "ERROR: Could not change status, because server is operating now.";
/// chmpx's reply to a SERVICEOUT of a server already out.
const ALREADY_OUT: &str = "SUCCEED: Already server has been SERVICEOUT.";
/// chmpx's reply when it changed the status but no other server took
/// the notice (alone on the ring).
const NOTICE_FAILED: &str = "ERROR: Failed to send status notice to other servers.";
/// How long a deletion may stay `[Pending]` before this node asks for the
/// merge itself (AUTOMERGE starts one within a second when it does).
const PENDING_GRACE: Duration = Duration::from_secs(2);

/// Why the node could not leave the ring.
#[derive(Debug, thiserror::Error)]
pub enum LeaveError {
    /// The ini does not allow a SERVICEOUT to be built for this node.
    #[error("cannot build SERVICEOUT for this node: {0}")]
    Command(chmpx::IdError),
    /// chmpx refused the command.
    #[error("{0}")]
    Refused(ChmpxError),
    /// The ring did not show the node out in time.
    #[error("the ring did not show this node [SERVICE OUT] within {bound:?} after `{command}`; last seen: {last}")]
    NotOut {
        /// The bound.
        bound: Duration,
        /// The command sent.
        command: String,
        /// What the servers showed last.
        last: String,
    },
}

/// How leaving went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Left {
    /// SERVICEOUT accepted and every answering server shows the node out.
    Out {
        /// The command sent.
        command: String,
        /// How many servers confirmed it.
        confirmed_by: usize,
    },
    /// The node was already out of the ring.
    AlreadyOut,
    /// No server of the ring answers: nothing is serving to leave from.
    NoServerAnswers,
    /// The ini does not list this node: it is not in the ring.
    NotInIni,
}

/// One server of the ini with its resolved control address.
struct Server<'a> {
    entry: &'a NodeEntry,
    ctlport: u16,
}

fn servers<'a>(facts: &'a IniFacts, default_ctlport: u16) -> Vec<Server<'a>> {
    facts
        .servers
        .iter()
        .map(|e| Server {
            entry: e,
            ctlport: facts.ctlport_of(e, default_ctlport),
        })
        .collect()
}

/// Takes this node (the `[SVRNODE]` whose CUK is `cuk`) out of the ring.
/// `self_ctl` is this node's control address (chmpx listens on all
/// interfaces; the agent talks to it on loopback). Others are reached at
/// their ini names. Waits at most `bound` for the ring to agree.
pub async fn leave(
    facts: &IniFacts,
    cuk: &str,
    self_ctl: &str,
    default_ctlport: u16,
    bound: Duration,
) -> Result<Left, LeaveError> {
    let all = servers(facts, default_ctlport);
    let Some(me) = all.iter().find(|s| s.entry.cuk.as_deref() == Some(cuk)) else {
        return Ok(Left::NotInIni);
    };
    let arg = chmpx::serviceout_argument(facts.id_type, me.entry, me.ctlport)
        .map_err(LeaveError::Command)?;
    // Ask this node first; when its chmpx is gone, any live server takes
    // the command for a down node.
    let others = all
        .iter()
        .filter(|s| s.entry.cuk.as_deref() != Some(cuk))
        .map(|s| format!("{}:{}", s.entry.name, s.ctlport));
    let out = Leaving {
        command: format!("SERVICEOUT {arg}"),
        ask: std::iter::once(self_ctl.to_owned()).chain(others).collect(),
        deadline: Instant::now() + bound,
        bound,
        slow: SLOW_ANSWER.min(bound),
    };
    let Some((addr, reply)) = out.send(facts, me).await? else {
        // Nothing listens on any control port: no chmpx of the ring runs.
        tracing::warn!(command = %out.command, "no server of the ring answers: nothing to leave");
        return Ok(Left::NoServerAnswers);
    };
    let Some(reply) = out.accepted(&addr, reply).await? else {
        return Ok(Left::AlreadyOut);
    };
    tracing::info!(command = %out.command, server = %addr, reply = %reply, "SERVICEOUT accepted; waiting for the ring to show this node out");
    out.wait_out(facts, me, addr).await
}

/// One SERVICEOUT of this node: the command, the servers asked (this
/// node's first) and the bounds.
struct Leaving {
    command: String,
    ask: Vec<String>,
    deadline: Instant,
    bound: Duration,
    /// How long one answer may take.
    slow: Duration,
}

impl Leaving {
    fn not_out(&self, last: String) -> LeaveError {
        LeaveError::NotOut {
            bound: self.bound,
            command: self.command.clone(),
            last,
        }
    }

    /// Sends the command until a server takes or refuses it: asked again
    /// while the ring merges (chmpx refuses as "operating"). A control
    /// port that answers late or drops the answer is a busy ring, not an
    /// absent one, and the command may have been taken: that server's
    /// view of this node is read first, and the command sent to it again
    /// only when it still shows the node in and not leaving. None when no
    /// server listens at all.
    async fn send(
        &self,
        facts: &IniFacts,
        me: &Server<'_>,
    ) -> Result<Option<(String, Sent)>, LeaveError> {
        let mut unanswered: Vec<String> = Vec::new();
        loop {
            let mut answered = None;
            let mut busy = Vec::new();
            for addr in &self.ask {
                if unanswered.contains(addr) {
                    match self.shows_leaving(addr, facts, me).await {
                        Ok(Some(seen)) => {
                            tracing::info!(server = %addr, status = %seen, "the answer to SERVICEOUT was lost; the ring shows it taken");
                            return Ok(Some((addr.clone(), Sent::Taken(seen))));
                        }
                        Ok(None) => {
                            tracing::warn!(server = %addr, command = %self.command, "the answer was lost and the ring still shows this node in: sending it again");
                            unanswered.retain(|a| a != addr);
                        }
                        Err(e) => {
                            busy.push(format!("{addr}: status: {e}"));
                            continue;
                        }
                    }
                }
                match chmpx::command_within(addr, &self.command, self.slow).await {
                    Ok(reply) => {
                        answered = Some((addr.clone(), reply.trim().to_owned()));
                        break;
                    }
                    Err(e) if e.is_busy() => {
                        busy.push(e.to_string());
                        unanswered.push(addr.clone());
                    }
                    Err(e) => {
                        tracing::debug!(server = %addr, error = %e, "no answer to SERVICEOUT here")
                    }
                }
            }
            match answered {
                Some((addr, reply)) if !reply.starts_with(OPERATING) => {
                    return Ok(Some((addr, Sent::Answered(reply))))
                }
                None if busy.is_empty() => return Ok(None),
                answered if Instant::now() >= self.deadline => {
                    let last = answered
                        .map(|(a, r)| format!("{a}: {r}"))
                        .unwrap_or_else(|| busy.join("; "));
                    return Err(self.not_out(last));
                }
                _ => {}
            }
            tracing::debug!(command = %self.command, "the ring is busy; SERVICEOUT again shortly");
            tokio::time::sleep(POLL).await;
        }
    }

    /// How the server at `addr` shows this node when it is out or on its
    /// way out; None while it shows it in.
    async fn shows_leaving(
        &self,
        addr: &str,
        facts: &IniFacts,
        me: &Server<'_>,
    ) -> Result<Option<String>, ChmpxError> {
        let list = chmpx::all_status_within(addr, self.slow).await?;
        Ok(list
            .iter()
            .find(|s| s.is(facts.id_type, me.entry, me.ctlport))
            .filter(|s| s.status.ring == "SERVICE OUT" || s.status.action == "DELETE")
            .map(|s| s.status.to_string()))
    }

    /// Whether the reply `addr` gave means the node is on its way out: the
    /// reply to log, or None when it is out already.
    async fn accepted(&self, addr: &str, sent: Sent) -> Result<Option<String>, LeaveError> {
        let mut reply = match sent {
            Sent::Answered(reply) => reply,
            Sent::Taken(seen) => return Ok(Some(format!("answer lost; {addr} shows {seen}"))),
        };
        let mut leaving = false;
        if reply.starts_with(NOT_ALLOWED) {
            // Refused because of our own status: fine if we are out, or on
            // the way out (an earlier SERVICEOUT whose answer came too late).
            let st = self.self_status(addr).await?;
            if st.ring == "SERVICE OUT" {
                tracing::info!(status = %st.to_string(), "already out of the ring");
                return Ok(None);
            }
            leaving = st.action == "DELETE";
            reply = format!("{reply} (this node shows {st})");
        }
        // NOTICE_FAILED: the status changed but nobody was told; the wait
        // that follows sees whether it did.
        if leaving || reply.starts_with("SUCCEED") || reply.starts_with(NOTICE_FAILED) {
            Ok(Some(reply))
        } else {
            Err(LeaveError::Refused(ChmpxError::Refused {
                command: self.command.clone(),
                reply,
            }))
        }
    }

    /// SELFSTATUS of the server at `addr`, asked again while it is busy
    /// (seen in CI on the real chmpx after a reboot: the question right
    /// after a refused SERVICEOUT was dropped), up to the deadline.
    async fn self_status(&self, addr: &str) -> Result<NodeStatus, LeaveError> {
        loop {
            match chmpx::command_within(addr, "SELFSTATUS", self.slow)
                .await
                .and_then(|r| chmpx::parse_selfstatus(&r))
            {
                Err(e) if e.is_busy() && Instant::now() < self.deadline => {
                    tracing::debug!(server = %addr, error = %e, "SELFSTATUS not answered; asking again");
                    tokio::time::sleep(POLL).await;
                }
                other => return other.map_err(LeaveError::Refused),
            }
        }
    }

    /// Every server that answers must list the node out; one that answered
    /// once and then does not (busy merging) is waited for, up to the
    /// bound. The server that took the command finishes a deletion no
    /// merge picks up.
    async fn wait_out(
        &self,
        facts: &IniFacts,
        me: &Server<'_>,
        took: String,
    ) -> Result<Left, LeaveError> {
        let mut last = String::from("no server answered ALLSTATUS");
        let mut merge = MergeDriver::new(took);
        let mut alive = std::collections::BTreeSet::new();
        let mut confirmed = std::collections::BTreeSet::new();
        loop {
            let mut pending = Vec::new();
            for addr in &self.ask {
                match chmpx::all_status_within(addr, self.slow).await {
                    Ok(list) => {
                        alive.insert(addr.clone());
                        match list
                            .iter()
                            .find(|s: &&ServerStatus| s.is(facts.id_type, me.entry, me.ctlport))
                        {
                            Some(s) if s.status.ring == "SERVICE OUT" => {
                                confirmed.insert(addr.clone());
                            }
                            Some(s) => {
                                confirmed.remove(addr);
                                if *addr == merge.addr {
                                    merge.step(&s.status).await;
                                }
                                pending.push(format!("{addr} shows {}", s.status))
                            }
                            None => {
                                confirmed.remove(addr);
                                pending.push(format!("{addr} does not list this node"))
                            }
                        }
                    }
                    Err(e) => {
                        if alive.contains(addr) && !confirmed.contains(addr) {
                            pending.push(format!("{addr} does not answer ({e})"));
                        }
                        tracing::debug!(server = %addr, error = %e, "no ALLSTATUS");
                    }
                }
            }
            if pending.is_empty() && !confirmed.is_empty() && alive.is_subset(&confirmed) {
                tracing::info!(
                    confirmed_by = confirmed.len(),
                    "left the ring: [SERVICE OUT]"
                );
                return Ok(Left::Out {
                    command: self.command.clone(),
                    confirmed_by: confirmed.len(),
                });
            }
            if !pending.is_empty() {
                last = pending.join("; ");
            }
            if Instant::now() >= self.deadline {
                return Err(self.not_out(format!("{last}{}", merge.outcome())));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Finishes a deletion that no merge picks up, on the server that took the
/// SERVICEOUT.
struct MergeDriver {
    addr: String,
    pending_since: Option<Instant>,
    merge_sent: Option<Instant>,
    /// The last command sent and its outcome, for the error that ends a
    /// leave the ring did not finish.
    last: Option<String>,
}

impl MergeDriver {
    fn new(addr: String) -> Self {
        Self {
            addr,
            pending_since: None,
            merge_sent: None,
            last: None,
        }
    }

    /// `; last MERGE: <reply>` when a command was sent, else nothing.
    fn outcome(&self) -> String {
        self.last
            .as_ref()
            .map(|l| format!("; {l}"))
            .unwrap_or_default()
    }

    /// Looks at the leaving node's status as this server shows it.
    async fn step(&mut self, st: &NodeStatus) {
        if st.action != "DELETE" {
            return;
        }
        match st.merge.as_str() {
            "Pending" => {
                // Again after another grace: a MERGE whose answer timed
                // out may not have been taken.
                let since = *self.pending_since.get_or_insert_with(Instant::now);
                let due = self.merge_sent.map_or(since, |at| at);
                if due.elapsed() >= PENDING_GRACE {
                    self.merge_sent = Some(Instant::now());
                    match chmpx::command_within(&self.addr, "MERGE", SLOW_ANSWER).await {
                        Ok(r) => {
                            tracing::info!(server = %self.addr, reply = %r.trim(), "the deletion stayed [Pending]: MERGE");
                            self.last = Some(format!("last MERGE answered: {}", r.trim()));
                        }
                        Err(e) => {
                            tracing::warn!(server = %self.addr, error = %e, "MERGE not sent");
                            self.last = Some(format!("last MERGE failed: {e}"));
                        }
                    }
                }
            }
            "Done" => match chmpx::command_within(&self.addr, "COMPMERGE", SLOW_ANSWER).await {
                Ok(r) => {
                    tracing::info!(server = %self.addr, reply = %r.trim(), "merge done: COMPMERGE");
                    self.last = Some(format!("last COMPMERGE answered: {}", r.trim()));
                }
                Err(e) => {
                    tracing::warn!(server = %self.addr, error = %e, "COMPMERGE not sent");
                    self.last = Some(format!("last COMPMERGE failed: {e}"));
                }
            },
            _ => self.pending_since = None,
        }
    }
}

/// `k2hdkc_ring_service_out`: `SERVICEOUT` of the member `cuk`, in the
/// grammar of the ini's `CHMPXIDTYPE`, until the ring shows it leaving.
pub async fn service_out(
    view: &RingView,
    cuk: &str,
    within: Duration,
) -> Result<Value, DatastoreError> {
    let deadline = Instant::now() + within;
    let node = view
        .facts
        .servers
        .iter()
        .find(|n| n.cuk.as_deref() == Some(cuk))
        .ok_or_else(|| {
            DatastoreError::BadRequest(format!(
                "k2hdkc_ring_service_out: no server with CUK {cuk} in this node's k2hdkc.ini"
            ))
        })?;
    let ctlport = view.facts.ctlport_of(node, view.ctlport);
    let arg = chmpx::serviceout_argument(view.facts.id_type, node, ctlport)
        .map_err(|e| DatastoreError::failed("build SERVICEOUT", e))?;
    let command = format!("SERVICEOUT {arg}");
    let (ctl, id_type) = (view.ctl.as_str(), view.facts.id_type);
    let taken = || async move {
        let servers = chmpx::all_status_within(ctl, SLOW_ANSWER).await?;
        Ok(servers
            .iter()
            .find(|s| s.is(id_type, node, ctlport))
            .filter(|s| s.status.ring == "SERVICE OUT" || s.status.action == "DELETE")
            .map(|s| s.status.to_string()))
    };
    let (reply, took) = match send_checked(ctl, &command, deadline, taken).await? {
        Sent::Answered(r) => {
            let took = r.starts_with("SUCCEED") || r.starts_with(ALREADY_OUT);
            (r, took)
        }
        Sent::Taken(seen) => (format!("answer lost; the ring shows it {seen}"), true),
    };
    // Refused as "not allowed": fine when it is already on its way out.
    if !took && !reply.starts_with(NOT_ALLOWED) {
        return Err(DatastoreError::failed(format!("`{command}`"), reply));
    }
    loop {
        let servers = chmpx::all_status_within(&view.ctl, SLOW_ANSWER)
            .await
            .unwrap_or_default();
        let it = servers
            .iter()
            .find(|s| s.is(view.facts.id_type, node, ctlport));
        if let Some(s) = it {
            if s.status.ring == "SERVICE OUT" || s.status.action == "DELETE" {
                return Ok(
                    json!({ "command": command, "reply": reply, "status": s.status.to_string() }),
                );
            }
        }
        if Instant::now() >= deadline {
            let seen = it
                .map(|s| s.status.to_string())
                .unwrap_or_else(|| "not listed".into());
            return Err(DatastoreError::failed(
                format!("`{command}`"),
                format!("`{reply}`, but the ring shows it {seen} after {within:?}"),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests;
