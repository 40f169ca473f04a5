//! Keeps a node's `k2hdkc.ini` converged with its K2HR3 role.
//!
//! The watcher re-reads the rendered resource every `poll_interval` and
//! rewrites the file atomically when it changed; chmpx picks the new file
//! up through inotify and k2hdkc learns membership from chmpx. It also
//! registers the node again if K2HR3 lost it.
//!
//! A change that drops a server is held back until the local chmpx shows
//! that server `[SERVICE OUT][DOWN][n/a]`. Read in chmpx 1.0.111
//! (`UpdateChmpxSvrs`): at an ini reload chmpx removes a server only in
//! that state, and it never re-reads an unchanged ini, so a leaver written
//! out while this chmpx still saw it UP stays listed for good (CI saw a
//! remaining member at `2/3 in` after a shrink, the ini rewritten 0.2 s
//! after the leaver stopped).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::chmpx::{self, ServerStatus};
use crate::ini::{self, IniFacts, NodeEntry};
use crate::k2hr3::{K2hr3, Member};
use crate::overrides::Parameters;
use crate::settings::Settings;

/// The longest a dropping change is held while chmpx answers. A server
/// that died in service never shows SERVICE OUT; after this the file is
/// written anyway. `k2hdkc_ring_converge` allows stale servers the same
/// time.
pub const DROP_HOLD: Duration = Duration::from_secs(10);
/// The longest it is held while chmpx does not answer at all. chmpx
/// resolves names on its event thread, and a resolver that drops a query
/// keeps it silent 5 s a try (seen in CI: a lookup of the node's own
/// address). A file written then leaves the leaver in chmpx for good, and
/// its connection attempts keep chmpx stalling.
pub const SILENT_HOLD: Duration = Duration::from_secs(30);
/// How often chmpx is asked while a change is held.
const HOLD_POLL: Duration = Duration::from_millis(500);
/// The bound of one ALLSTATUS while holding.
const ASK_BOUND: Duration = Duration::from_secs(2);

/// The role watcher of one node.
pub struct Watcher {
    pub settings: Settings,
    pub client: K2hr3,
    pub params: Parameters,
    /// The local chmpx's control address.
    pub ctl: String,
    /// This node's entry in the role, sent when registering again.
    pub member: Member,
}

impl Watcher {
    pub async fn run(self) {
        let path = self.settings.config_dir.join(crate::paths::INI_NAME);
        let mut failures = 0u32;
        loop {
            tokio::time::sleep(self.settings.poll_interval).await;
            let text = match self.client.resource().await {
                Ok(t) => ini::personalize(&t, &self.settings.cuk),
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::warn!(error = %e, failures, "cannot re-read k2hdkc.ini from K2HR3; keeping the current file");
                    }
                    continue;
                }
            };
            failures = 0;
            let facts = ini::facts(&text);
            if !facts
                .servers
                .iter()
                .any(|n| n.cuk.as_deref() == Some(self.settings.cuk.as_str()))
            {
                // An ini without this node would make chmpx exit.
                tracing::warn!("K2HR3 no longer lists this node; registering again");
                if let Err(e) = self.client.register(&self.member).await {
                    tracing::warn!(error = %e, "re-registration failed");
                }
                continue;
            }
            if let Ok(old) = std::fs::read_to_string(&path) {
                if old != text {
                    let gone = dropped(&ini::facts(&old), &facts);
                    if !gone.is_empty() {
                        hold_until_out(&self.ctl, &gone).await;
                    }
                }
            }
            write(&path, &text, &facts);
        }
    }
}

/// Waits until the chmpx at `ctl` shows every server in `gone` out of
/// service and down (or no longer lists it): a node's and a slave's chmpx
/// drop a server at a reload only then. Bounded by [`DROP_HOLD`], or
/// [`SILENT_HOLD`] while chmpx does not answer. Returns whether chmpx
/// showed them out.
pub async fn hold_until_out(ctl: &str, gone: &[NodeEntry]) -> bool {
    hold_within(ctl, gone, DROP_HOLD, SILENT_HOLD, ASK_BOUND).await
}

async fn hold_within(
    ctl: &str,
    gone: &[NodeEntry],
    answered_bound: Duration,
    silent_bound: Duration,
    ask_bound: Duration,
) -> bool {
    let names: Vec<&str> = gone.iter().map(|n| n.name.as_str()).collect();
    tracing::info!(servers = ?names, "holding the ini change until chmpx sees the leaving servers down");
    let began = Instant::now();
    loop {
        let (last, bound) = match chmpx::all_status_within(ctl, ask_bound).await {
            Ok(seen) => match still_listed(gone, &seen) {
                None => return true,
                Some(what) => (what, answered_bound),
            },
            // No chmpx to keep the server: a chmpx started later reads
            // the new file.
            Err(chmpx::ChmpxError::Io { .. }) => return true,
            Err(e @ (chmpx::ChmpxError::Timeout(..) | chmpx::ChmpxError::Dropped { .. })) => {
                (e.to_string(), silent_bound)
            }
            Err(e) => (e.to_string(), answered_bound),
        };
        if began.elapsed() + HOLD_POLL.min(ask_bound) >= bound {
            tracing::warn!(last = %last, held_ms = began.elapsed().as_millis() as u64, "chmpx still lists a leaving server, or does not answer; writing the ini anyway");
            return false;
        }
        tokio::time::sleep(HOLD_POLL.min(ask_bound)).await;
    }
}

fn write(path: &Path, text: &str, facts: &IniFacts) {
    match ini::write_atomic(path, text, 0o644) {
        Ok(true) => tracing::info!(
            servers = facts.servers.len(),
            slaves = facts.slaves.len(),
            "membership changed: k2hdkc.ini updated"
        ),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, path = %path.display(), "cannot write k2hdkc.ini"),
    }
}

/// Whether two ini entries name the same server: by CUK when both have
/// one, else by name and control port.
fn same(a: &NodeEntry, b: &NodeEntry) -> bool {
    match (&a.cuk, &b.cuk) {
        (Some(x), Some(y)) => x == y,
        _ => a.name == b.name && a.ctlport == b.ctlport,
    }
}

/// The servers of `old` that `new` no longer has.
pub fn dropped(old: &IniFacts, new: &IniFacts) -> Vec<NodeEntry> {
    old.servers
        .iter()
        .filter(|o| !new.servers.iter().any(|n| same(o, n)))
        .cloned()
        .collect()
}

/// `None` when chmpx would drop every server of `gone` at a reload (each
/// is `[SERVICE OUT][DOWN][n/a]` or not listed); else what it still shows.
pub fn still_listed(gone: &[NodeEntry], seen: &[ServerStatus]) -> Option<String> {
    let blocking: Vec<String> = gone
        .iter()
        .filter_map(|g| {
            let s = seen.iter().find(|s| match &g.cuk {
                Some(c) if !s.cuk.is_empty() => *c == s.cuk,
                _ => s.name == g.name && (g.ctlport.is_none() || s.ctlport == g.ctlport),
            })?;
            let st = &s.status;
            let out = st.ring == "SERVICE OUT" && st.live == "DOWN" && st.action == "n/a";
            (!out).then(|| format!("{} {st}", s.name))
        })
        .collect();
    (!blocking.is_empty()).then(|| blocking.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini_with(servers: &[(&str, &str)]) -> IniFacts {
        let mut text = String::from("[GLOBAL]\nCTLPORT = 8021\n");
        for (name, cuk) in servers {
            text.push_str(&format!(
                "[SVRNODE]\nNAME = {name}\nPORT = 8020\nCTLPORT = 8021\nCUK = {cuk}\n"
            ));
        }
        ini::facts(&text)
    }

    fn status(name: &str, cuk: &str, line: &str) -> ServerStatus {
        let reply = format!(
            "RING Name = c1\nNo.1\n  Server Name = {name}\n    Control Port = 8021\n    CUK = {cuk}\n    Server Status = 0x0(SAFE -> {line})\n"
        );
        chmpx::parse_allstatus(&reply).unwrap().remove(0)
    }

    #[test]
    fn a_change_that_drops_a_server_names_it_and_an_added_one_is_not_dropped() {
        let old = ini_with(&[("10.0.0.1", "a"), ("10.0.0.2", "b"), ("10.0.0.3", "c")]);
        let new = ini_with(&[("10.0.0.1", "a"), ("10.0.0.3", "c"), ("10.0.0.4", "d")]);
        let gone = dropped(&old, &new);
        assert_eq!(
            gone.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["10.0.0.2"]
        );
        assert!(dropped(&new, &new).is_empty());
    }

    /// A control port that keeps every connection silent for `silent`
    /// after it starts, then answers ALLSTATUS with `line` for 10.0.0.2.
    async fn silent_then(silent: Duration, line: &'static str) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    if started.elapsed() < silent {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    let (r, mut w) = s.into_split();
                    let _ = BufReader::new(r).read_line(&mut String::new()).await;
                    let reply = format!("RING Name = c1\nNo.1\n  Server Name = 10.0.0.2\n    Control Port = 8021\n    CUK = b\n    Server Status = 0x0(SAFE -> {line})\n");
                    let _ = w.write_all(reply.as_bytes()).await;
                });
            }
        });
        addr
    }

    fn leaver() -> Vec<NodeEntry> {
        dropped(
            &ini_with(&[("10.0.0.1", "a"), ("10.0.0.2", "b")]),
            &ini_with(&[("10.0.0.1", "a")]),
        )
    }

    const OUT_DOWN: &str = "[SERVICE OUT][DOWN][n/a][Nothing][NoSuspend]";
    const IN_UP: &str = "[SERVICE IN][UP][n/a][Nothing][NoSuspend]";
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[tokio::test]
    async fn a_silent_chmpx_is_waited_for_past_the_answered_bound() {
        let ctl = silent_then(MS(1_500), OUT_DOWN).await;
        let t = Instant::now();
        assert!(hold_within(&ctl, &leaver(), MS(600), MS(4_000), MS(300)).await);
        assert!(t.elapsed() >= MS(1_400), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn a_chmpx_silent_for_good_or_still_listing_ends_the_hold_in_its_bound() {
        let ctl = silent_then(MS(60_000), OUT_DOWN).await;
        let t = Instant::now();
        assert!(!hold_within(&ctl, &leaver(), MS(600), MS(2_000), MS(300)).await);
        assert!(
            t.elapsed() >= MS(1_700) && t.elapsed() < MS(3_000),
            "{:?}",
            t.elapsed()
        );
        // Answering and still listing it: the shorter bound.
        let ctl = silent_then(Duration::ZERO, IN_UP).await;
        let t = Instant::now();
        assert!(!hold_within(&ctl, &leaver(), MS(600), MS(2_000), MS(300)).await);
        assert!(t.elapsed() < MS(1_200), "{:?}", t.elapsed());
    }

    #[test]
    fn a_leaver_chmpx_still_sees_up_holds_the_change_and_one_out_and_down_does_not() {
        let gone = dropped(
            &ini_with(&[("10.0.0.1", "a"), ("10.0.0.2", "b")]),
            &ini_with(&[("10.0.0.1", "a")]),
        );
        let up = [status(
            "10.0.0.2",
            "b",
            "[SERVICE OUT][UP][n/a][Nothing][NoSuspend]",
        )];
        let held = still_listed(&gone, &up).expect("UP holds the change");
        assert!(held.contains("10.0.0.2 [SERVICE OUT][UP]"), "{held}");
        // Still in service though down: chmpx would keep it as well.
        let in_down = [status(
            "10.0.0.2",
            "b",
            "[SERVICE IN][DOWN][n/a][Nothing][NoSuspend]",
        )];
        assert!(still_listed(&gone, &in_down).is_some());
        let out_down = [status(
            "10.0.0.2",
            "b",
            "[SERVICE OUT][DOWN][n/a][Nothing][NoSuspend]",
        )];
        assert_eq!(still_listed(&gone, &out_down), None);
        // Not listed at all: nothing to keep.
        assert_eq!(still_listed(&gone, &[]), None);
    }
}
