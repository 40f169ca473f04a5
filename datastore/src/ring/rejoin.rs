//! A cluster member that comes back merges itself into the ring.
//!
//! Read in chmpx 1.0.111 (`lib/chmeventsock.cc`): a restarted chmpx takes
//! the status the ring kept for it (`[SERVICE IN][DOWN]` after a crash
//! with AUTOMERGE off becomes `[SERVICE IN][UP][n/a][Nothing][Suspend]`),
//! and k2hdkc's attach turns that into `[SERVICE IN][UP][n/a][Pending]`
//! (`PxCltReceiveJoinNotify`). The writes the node missed meanwhile sit on
//! its replicas until a merge brings them back, and reads go to a key's
//! owner only, so until then it answers stale values or none. No Trove
//! task asks for that merge after a VM crash, so the node asks for it
//! itself: a merge with only this node pending moves only what it missed.
//! It goes through a server that stayed up.
//!
//! A ring that is changing membership (a server in `ADD` or `DELETE`) is
//! the cluster taskmanager's to merge; this leaves it alone.

use std::time::{Duration, Instant};

use driver_api::DatastoreError;

use super::merge::{self, MergeReport};
use super::view::RingView;

/// The bound of a rejoin: k2hdkc attaching, then a merge of what one node
/// missed (seconds on the real ring; a stuck merge is repaired within it).
pub const REJOIN_WAIT: Duration = Duration::from_secs(300);

/// How often the node's status is looked at.
const POLL: Duration = Duration::from_millis(500);

/// What a rejoin found and did.
#[derive(Debug, PartialEq)]
pub enum Rejoined {
    /// In the ring with nothing to merge.
    InRing,
    /// Was pending: the ring was merged.
    Merged(MergeReport),
    /// Out of the ring (a new member, or one the ring removed): putting it
    /// in is the cluster taskmanager's step.
    NotInRing(String),
    /// A membership change is in progress: the taskmanager merges it.
    Changing(String),
}

/// Waits until this node's chmpx is up with k2hdkc attached, then merges
/// the ring if this node alone asks for it; all within `within`.
pub async fn rejoin(view: &RingView, within: Duration) -> Result<Rejoined, DatastoreError> {
    let deadline = Instant::now() + within;
    let mut last = String::from("no answer yet");
    loop {
        if Instant::now() >= deadline {
            return Err(DatastoreError::failed(
                "rejoin the ring",
                format!("k2hdkc not attached to chmpx within {within:?}; last: {last}"),
            ));
        }
        match view.self_status(deadline).await {
            Ok(st) if st.ring != "SERVICE IN" && st.live == "UP" => {
                return Ok(Rejoined::NotInRing(st.to_string()))
            }
            Ok(st) if st.live == "UP" && st.suspend == "NoSuspend" => match st.merge.as_str() {
                "Nothing" if st.action == "n/a" => return Ok(Rejoined::InRing),
                "Pending" if st.action == "n/a" => break,
                _ => return Ok(Rejoined::Changing(st.to_string())),
            },
            Ok(st) => last = st.to_string(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(POLL).await;
    }
    let servers = view.all_status(deadline).await?;
    if servers.iter().any(|s| s.status.action != "n/a") {
        return Ok(Rejoined::Changing(merge::describe(&servers)));
    }
    // Seen on the real chmpx: a MERGE sent to the server that just came
    // back answered SUCCEED for minutes and started nothing; the same
    // MERGE sent to a server that stayed up merged it in 3 s.
    let addresses = view.member_addresses();
    let coordinator = servers
        .iter()
        .filter(|s| s.cuk != view.cuk && s.status.is_serving())
        .find_map(|s| addresses.iter().find(|(cuk, _)| *cuk == s.cuk))
        .map(|(_, addr)| addr.clone())
        .unwrap_or_else(|| view.ctl.clone());
    tracing::info!(%coordinator, "pending after coming back: merging the ring");
    let left = deadline.saturating_duration_since(Instant::now());
    let report =
        merge::merge_the_ring(view, &coordinator, merge::MergeBounds::within(left)).await?;
    Ok(Rejoined::Merged(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ini;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A lone server's control port: SELFSTATUS/ALLSTATUS answer `status`;
    /// MERGE takes Pending to Done, COMPMERGE Done to Nothing. The first
    /// `drops` ALLSTATUS connections are closed with no answer, as a
    /// chmpx just started did.
    async fn serve(
        status: Arc<Mutex<String>>,
        seen: Arc<Mutex<Vec<String>>>,
        drops: usize,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let (status, seen) = (status.clone(), seen.clone());
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut line = String::new();
                    if BufReader::new(r).read_line(&mut line).await.is_err() {
                        return;
                    }
                    let cmd = line.trim().to_owned();
                    let asked = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(cmd.clone());
                        seen.iter().filter(|c| *c == "ALLSTATUS").count()
                    };
                    if cmd == "ALLSTATUS" && asked <= drops {
                        return;
                    }
                    let reply = {
                        let mut st = status.lock().unwrap();
                        let now = st.clone();
                        match cmd.as_str() {
                            "SELFSTATUS" => format!("    Server Status = 0x0(SAFE -> {now})\n"),
                            "ALLSTATUS" => format!(
                                "RING Name = r\nNo.1\n  Server Name = s\n    Control Port = 8021\n    CUK = me\n    Custom ID Seed = s\n    Server Status = 0x0(SAFE -> {now})\n    Enable Hash Value = 0x0\n    Pending Hash Value = 0x{}\n",
                                if now.contains("Nothing") { 0 } else { 1 }
                            ),
                            "MERGE" if now.contains("[Pending]") => {
                                *st = now.replace("[Pending]", "[Done]");
                                "SUCCEED\n".into()
                            }
                            "COMPMERGE" if now.contains("[Done]") => {
                                *st = now.replace("[Done]", "[Nothing]");
                                "SUCCEED\n".into()
                            }
                            _ => "ERROR: not allowed\n".into(),
                        }
                    };
                    let _ = w.write_all(reply.as_bytes()).await;
                });
            }
        });
        addr
    }

    fn view(ctl: &str) -> RingView {
        let (host, port) = ctl.rsplit_once(':').unwrap();
        let text = format!(
            "[GLOBAL]\nGROUP = r\nMODE = SERVER\nCHMPXIDTYPE = CUSTOM\nCTLPORT = {port}\n[SVRNODE]\nNAME = {host}\nCUK = me\nCUSTOM_ID_SEED = s\n"
        );
        RingView {
            cuk: "me".into(),
            ctl: ctl.into(),
            ctlport: port.parse().unwrap(),
            facts: ini::facts(&text),
        }
    }

    async fn run(status: &str) -> (Result<Rejoined, DatastoreError>, Vec<String>) {
        run_dropping(status, 0).await
    }

    async fn run_dropping(
        status: &str,
        drops: usize,
    ) -> (Result<Rejoined, DatastoreError>, Vec<String>) {
        let st = Arc::new(Mutex::new(status.to_owned()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let addr = serve(st, seen.clone(), drops).await;
        let out = rejoin(&view(&addr), Duration::from_secs(20)).await;
        let cmds = seen.lock().unwrap().clone();
        (out, cmds)
    }

    #[tokio::test]
    async fn a_node_back_pending_merges_the_ring() {
        let (out, cmds) = run("[SERVICE IN][UP][n/a][Pending][NoSuspend]").await;
        assert!(matches!(out, Ok(Rejoined::Merged(_))), "{out:?}");
        assert!(cmds.contains(&"MERGE".to_owned()), "{cmds:?}");
        assert!(cmds.contains(&"COMPMERGE".to_owned()), "{cmds:?}");
    }

    /// A chmpx just started (a member upgraded to a new release) dropped
    /// the first ALLSTATUS: asked again, not a failed upgrade.
    #[tokio::test]
    async fn an_allstatus_dropped_by_a_chmpx_just_started_is_asked_again() {
        let (out, cmds) = run_dropping("[SERVICE IN][UP][n/a][Pending][NoSuspend]", 2).await;
        assert!(matches!(out, Ok(Rejoined::Merged(_))), "{out:?}");
        assert!(cmds.contains(&"MERGE".to_owned()), "{cmds:?}");
    }

    #[tokio::test]
    async fn a_node_in_the_ring_or_out_of_it_sends_nothing() {
        for (status, want) in [
            ("[SERVICE IN][UP][n/a][Nothing][NoSuspend]", "InRing"),
            ("[SERVICE OUT][UP][n/a][Nothing][NoSuspend]", "NotInRing"),
            ("[SERVICE IN][UP][ADD][Pending][NoSuspend]", "Changing"),
        ] {
            let (out, cmds) = run(status).await;
            let got = format!("{out:?}");
            assert!(got.contains(want), "{status}: {got}");
            assert!(
                cmds.iter().all(|c| c == "SELFSTATUS"),
                "{status}: only looked, sent {cmds:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_node_that_never_attaches_fails_within_its_bound() {
        let st = Arc::new(Mutex::new(
            "[SERVICE IN][UP][n/a][Nothing][Suspend]".to_owned(),
        ));
        let addr = serve(st, Arc::new(Mutex::new(Vec::new())), 0).await;
        let e = rejoin(&view(&addr), Duration::from_secs(2))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("not attached") && e.contains("[Suspend]"), "{e}");
    }
}
