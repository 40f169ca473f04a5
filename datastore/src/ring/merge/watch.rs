//! Watching the servers that merge: a server still shown `[Doing]` is
//! asked how it stands itself (its end-of-merge notice may be lost), and
//! one that stays `[Doing]` too long is aborted and merged again.

use std::time::{Duration, Instant};

use super::seen::{control_addr, same_server};
use super::{send_each, Merge, MergeError, ASK_DOING_EVERY, SLOW_ANSWER};
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
