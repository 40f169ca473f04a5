//! The bounds of one merge: its whole time, when a server `[Doing]` is
//! stuck, how many repairs, and how long a repair must wait.

use std::time::Duration;

/// How long after a MERGE a server's lost request for its k2hdkc's last
/// update time surely gave up (10^6 sleeps of 1 µs; 66-74 s measured).
pub(super) const STUCK_POLL_ENDS: Duration = Duration::from_secs(120);
/// The same, with less margin, for merges whose whole bound is too short
/// for [`STUCK_POLL_ENDS`] (a lone node's join within `startup_wait`,
/// 120 s): a MERGE sent before the poll ended is lost as well, so an
/// earlier repair could never succeed (a quarter of the bound was 30 s).
const STUCK_POLL_SURELY_OVER: Duration = Duration::from_secs(90);

/// The bounds of one merge.
#[derive(Debug, Clone, Copy)]
pub struct MergeBounds {
    /// The whole merge, repairs included.
    pub total: Duration,
    /// A server `[Doing]` this long is stuck.
    pub stuck_after: Duration,
    /// How many stuck merges are aborted and started again.
    pub repairs: usize,
    /// After an ABORTMERGE, the least time from the MERGE it repairs to
    /// the next one: a stuck server's merge thread must have given up.
    pub rearm_after: Duration,
    /// After an ABORTMERGE, the least time to the next MERGE: the aborted
    /// round's late results must have arrived (see [`ABORT_DRAIN`]).
    pub abort_drain: Duration,
}

impl MergeBounds {
    /// Bounds from the caller's total, with the rearm it allows (see
    /// [`MergeBounds::with_rearm_after`]). A merge of 10,000 keys took
    /// about 4-10 s on the real ring, of 30,000 up to 18 s (one server
    /// `[Doing]` 30 s once); a hung join never ends (CONTRACTS.md §7, and
    /// seen again on a grow 3 -> 4 in the box, freed by ABORTMERGE).
    pub fn within(total: Duration) -> MergeBounds {
        let rearm_after = if total >= 2 * STUCK_POLL_ENDS {
            STUCK_POLL_ENDS
        } else {
            STUCK_POLL_SURELY_OVER
        };
        MergeBounds {
            total,
            stuck_after: stuck_after(total, rearm_after),
            repairs: 3,
            rearm_after,
            abort_drain: ABORT_DRAIN,
        }
    }

    /// The same bounds with another rearm (the taskmanager's
    /// `cluster_merge_rearm_after`); the stuck bound follows it.
    pub fn with_rearm_after(self, rearm_after: Duration) -> MergeBounds {
        MergeBounds {
            stuck_after: stuck_after(self.total, rearm_after),
            rearm_after,
            ..self
        }
    }
}

/// The least time from an `ABORTMERGE` to the next `MERGE`. Read in
/// chmpx 1.0.111: an abort stops every server's senders
/// (`PxCltSendAbortUpdateData`), each of which then reports its request
/// done with a failure; a requester counts any result as that sender done
/// and sets it with no round or state check
/// (`PxComReceiveResultUpdateData`). So the aborted round's late results
/// can end the next round early while its data is still on the way: a
/// MERGE 0.3 s after an abort ended in 38 s with one key of 100,000
/// unreadable right after.
const ABORT_DRAIN: Duration = Duration::from_secs(15);

/// How long before the next MERGE may go a stuck merge is aborted: the
/// abort, the leavers' `SERVICEOUT` again and their `[DELETE]` showing
/// take a few seconds.
const ABORT_AHEAD_OF_REARM: Duration = Duration::from_secs(15);

/// A server `[Doing]` this long is stuck: a twentieth of the total (30 s
/// to 120 s), and never less than the rearm allows. No MERGE may follow an
/// abort before `rearm_after`, so an earlier abort frees nothing sooner;
/// it only cuts short a merge that is slow, not stuck (full queues pace
/// a merge at 30,000 keys), and leaves the ring between an abort and a
/// MERGE for longer.
fn stuck_after(total: Duration, rearm_after: Duration) -> Duration {
    (total / 20)
        .clamp(Duration::from_secs(30), Duration::from_secs(120))
        .max(rearm_after.saturating_sub(ABORT_AHEAD_OF_REARM))
}
