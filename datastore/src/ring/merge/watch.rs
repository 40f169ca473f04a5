//! Watching the servers that merge: a server still shown `[Doing]` is
//! asked how it stands itself (its end-of-merge notice may be lost), and
//! one that stays `[Doing]` too long is aborted and merged again.

use std::time::{Duration, Instant};

use super::seen::{control_addr, same_server};
use super::{
    send_each, Merge, MergeError, ASK_DOING_EVERY, MERGING_POLL, SLOW_ANSWER, STALE_VIEW_AFTER,
};
use crate::chmpx::{self, ServerStatus};

impl<'a> Merge<'a> {
    /// How long a server may stay `[Doing]` before it is stuck, given how
    /// the others fare. Every hang seen left one server `[Doing]` while
    /// the others were `[Done]`; a big ring's healthy merge keeps every
    /// server `[Doing]` for minutes (about 2.3 KB a key at 4-6 MB/s). So:
    /// twice what the first server to finish took, once one has; while
    /// several still merge and none finished, a quarter of the whole
    /// bound; a lone merging server, [`MergeBounds::stuck_after`]. Never
    /// less than that.
    pub(super) fn stuck_bound(&self, merging: usize) -> Duration {
        let by_progress = match self.first_done {
            Some(first) => first * 2,
            None if merging > 1 => self.bounds.total / 4,
            None => Duration::ZERO,
        };
        self.bounds.stuck_after.max(by_progress)
    }

    /// Once some server finished, each server still shown `[Doing]` is
    /// asked how it stands itself, every [`ASK_DOING_EVERY`]. chmpx 1.0.111
    /// announces a server's end of merge once, around the ring
    /// (`MergeDone`, `PxComSendStatusChange`, no retry); a notice lost on
    /// the way leaves the other servers showing it `[Doing]` for good,
    /// and the merge was taken for stuck and merged again (2 to 6 minutes
    /// at 100,000 keys). A server that shows itself done is sent
    /// `COMPMERGE`: chmpx then announces its status again and, if every
    /// server it sees is done, completes the merge (`RequestMergeComplete`);
    /// if some server it sees still merges, it refuses, harmlessly.
    pub(super) async fn ask_the_doing(&mut self, servers: &[ServerStatus], now: Instant) {
        if !servers.iter().any(|s| s.status.merge == "Done") {
            return;
        }
        match self.asked_doing {
            // A notice on its way takes milliseconds: ask only later.
            None => {
                self.asked_doing = Some(now);
                return;
            }
            Some(t) if now.duration_since(t) < ASK_DOING_EVERY => return,
            Some(_) => self.asked_doing = Some(now),
        }
        for doing in servers.iter().filter(|s| s.status.merge == "Doing") {
            let addr = control_addr(doing, self.members, self.default_ctlport);
            let Ok(own_view) = chmpx::all_status_within(&addr, SLOW_ANSWER).await else {
                continue; // busy: it is asked again next time
            };
            let Some(itself) = own_view.iter().find(|s| same_server(s, doing)) else {
                continue;
            };
            if itself.status.merge == "Doing" {
                continue;
            }
            let what = format!(
                "{} shows itself {} while {} still shows it [Doing] (its end-of-merge notice lost or late): COMPMERGE to it, which announces its status again",
                doing.name, itself.status, self.coordinator
            );
            if !self.report.renotified.contains(&what) {
                tracing::warn!(ring = %self.last, "{what}");
                self.report.renotified.push(what);
            }
            send_each(&[addr], "COMPMERGE", &mut self.last_sent, &mut self.report).await;
        }
    }

    /// Once the coordinator's view settled, each server in service is
    /// asked for its own: chmpx 1.0.111 also ends a merge by a status
    /// notice around the ring, and one lost left a server showing itself
    /// `[Done]` for good, and a peer showing it so, while the coordinator
    /// showed it done with (CI's box, 30,000 keys, 2026-12-07: the ring
    /// never looked idle again). A view that still shows a server `[Done]`
    /// after [`STALE_VIEW_AFTER`] gets `COMPMERGE` sent to that server
    /// and to the viewer, every [`ASK_DOING_EVERY`]: the server completes
    /// the merge it sees and announces it (sent by hand on that ring,
    /// every view was idle at once); one with nothing to complete refuses,
    /// harmlessly. Whether every view that answered is settled; a server
    /// that does not answer holds nothing up.
    pub(super) async fn every_view_settled(
        &mut self,
        servers: &[ServerStatus],
        now: Instant,
    ) -> bool {
        // Each look is a connection to every server: once a second.
        if let Some((_, _, looked)) = self.stale_views {
            if now.duration_since(looked) < MERGING_POLL {
                return false;
            }
        }
        let mut stale: Vec<(String, Vec<String>, String)> = Vec::new();
        for s in servers
            .iter()
            .filter(|s| s.status.ring == "SERVICE IN" && s.status.live == "UP")
        {
            let viewer = control_addr(s, self.members, self.default_ctlport);
            if viewer == self.coordinator {
                continue;
            }
            let Ok(view) = chmpx::all_status_within(&viewer, SLOW_ANSWER).await else {
                continue;
            };
            let done: Vec<&ServerStatus> =
                view.iter().filter(|v| v.status.merge == "Done").collect();
            if done.is_empty() {
                continue;
            }
            let names: Vec<&str> = done.iter().map(|d| d.name.as_str()).collect();
            let targets = done
                .iter()
                .map(|d| control_addr(d, self.members, self.default_ctlport))
                .collect();
            let what = format!(
                "{} still shows {} [Done] after {} settled (a merge's end notice lost): COMPMERGE to it",
                s.name,
                names.join(", "),
                self.coordinator
            );
            stale.push((viewer, targets, what));
        }
        if stale.is_empty() {
            self.stale_views = None;
            self.stale_note = None;
            return true;
        }
        let (since, told, _) = self.stale_views.unwrap_or((now, None, now));
        self.stale_views = Some((since, told, now));
        let note: Vec<&str> = stale.iter().map(|(_, _, w)| w.as_str()).collect();
        self.stale_note = Some(note.join("; "));
        let due = match told {
            None => now.duration_since(since) >= STALE_VIEW_AFTER,
            Some(t) => now.duration_since(t) >= ASK_DOING_EVERY,
        };
        if !due {
            return false;
        }
        self.stale_views = Some((since, Some(now), now));
        for (viewer, mut targets, what) in stale {
            if !self.report.renotified.contains(&what) {
                tracing::warn!(ring = %self.last, "{what}");
                self.report.renotified.push(what);
            }
            if !targets.contains(&viewer) {
                targets.push(viewer);
            }
            send_each(&targets, "COMPMERGE", &mut self.last_sent, &mut self.report).await;
        }
        false
    }

    /// Some server merges: watch that it does not stay `[Doing]`; a stuck
    /// one is aborted and merged again later, within the repairs allowed.
    pub(super) async fn watch_doing(
        &mut self,
        servers: &[ServerStatus],
        now: Instant,
    ) -> Result<(), MergeError> {
        self.phase_since = None;
        let Some(doing) = servers.iter().find(|s| s.status.merge == "Doing") else {
            return Ok(());
        };
        let since = match &self.doing_since {
            Some((name, t)) if *name == doing.name => *t,
            _ => {
                self.doing_since = Some((doing.name.clone(), now));
                now
            }
        };
        if self.first_done.is_none() && servers.iter().any(|s| s.status.merge == "Done") {
            self.first_done = Some(now.duration_since(self.attempt_began.unwrap_or(self.start)));
        }
        let merging = servers.iter().filter(|s| s.status.merge == "Doing").count();
        if now.duration_since(since) < self.stuck_bound(merging) {
            return Ok(());
        }
        // The next MERGE goes once the stuck thread gave up (the rearm)
        // and the aborted round drained, whichever is later; a repair
        // whose MERGE would fall past the deadline is not started.
        let rearm = (self.attempt_began.unwrap_or(since) + self.bounds.rearm_after)
            .max(now + self.bounds.abort_drain);
        if self.report.repairs.len() >= self.bounds.repairs || rearm >= self.deadline {
            return Err(MergeError::Stuck {
                server: doing.name.clone(),
                repairs: self.report.repairs.len(),
                last: self.last.clone(),
            });
        }
        let what = format!(
            "{} stayed [Doing] for {:.0} s: ABORTMERGE, then MERGE again in {:.0} s (once its merge thread gave up and the aborted round drained)",
            doing.name,
            now.duration_since(since).as_secs_f64(),
            rearm.saturating_duration_since(now).as_secs_f64()
        );
        tracing::warn!(ring = %self.last, "{what}");
        self.report.repairs.push(what);
        let mut targets = vec![self.coordinator.to_owned()];
        for s in servers
            .iter()
            .filter(|s| s.status.merge == "Doing" && s.status.live == "UP")
        {
            targets.push(control_addr(s, self.members, self.default_ctlport));
        }
        self.last_sent.clear();
        send_each(
            &targets,
            "ABORTMERGE",
            &mut self.last_sent,
            &mut self.report,
        )
        .await;
        self.doing_since = None;
        self.attempt_began = None;
        self.first_done = None;
        self.asked_doing = None;
        self.hold_merge_until = Some(rearm);
        Ok(())
    }
}
