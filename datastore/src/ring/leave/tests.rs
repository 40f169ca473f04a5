//! Tests of `ring/leave.rs` against fake chmpx control ports.
use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const PARAM_ERROR: &str = "ERROR: SERVICEOUT command must have parameter as server/ctlport.(ex: \"SERVICEOUT servername.fqdn:ctlport\")\n";

/// A control port that checks SERVICEOUT as chmpx does for
/// `CHMPXIDTYPE = CUSTOM` (exactly `name:ctlport:seed`) and shows the
/// node out `delay_polls` ALLSTATUS answers after accepting it.
struct FakeRing {
    /// Alone on the ring, as the real chmpx: SERVICEOUT answers the
    /// status-notice error, the deletion waits for MERGE.
    lone: bool,
    /// MERGE answers success and changes nothing (chmpx while its
    /// previous merge still runs).
    merge_ignored: bool,
    /// SERVICEOUTs refused as "operating" (a merge under way) first.
    busy: AtomicUsize,
    /// SERVICEOUTs taken whose answers are lost (closed, nothing said).
    lost: AtomicUsize,
    /// SELFSTATUS questions dropped (closed, nothing said) first.
    selfstatus_dropped: AtomicUsize,
    deleting: AtomicBool,
    out: AtomicBool,
    polls_after_out: AtomicUsize,
    delay_polls: usize,
    commands: std::sync::Mutex<Vec<String>>,
}

async fn serve(ring: Arc<FakeRing>) -> String {
    crate::testing::fake_ctlport(move |cmd| {
        ring.commands.lock().unwrap().push(cmd.to_owned());
        let out_now = ring.out.load(Ordering::SeqCst)
            && ring.polls_after_out.fetch_add(1, Ordering::SeqCst) >= ring.delay_polls;
        let status = if out_now {
            "0x11(SAFE -> [SERVICE OUT][UP][n/a][Nothing][NoSuspend])"
        } else if ring.deleting.load(Ordering::SeqCst) {
            "0x1221(SAFE -> [SERVICE IN][UP][DELETE][Pending][NoSuspend])"
        } else {
            "0x21(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])"
        };
        let reply = match cmd.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["SELFSTATUS"] if ring.selfstatus_dropped.load(Ordering::SeqCst) > 0 => {
                ring.selfstatus_dropped.fetch_sub(1, Ordering::SeqCst);
                return String::new();
            }
            ["SERVICEOUT", _] if out_now => format!("{NOT_ALLOWED}\n"),
            ["SERVICEOUT", _] if ring.busy.load(Ordering::SeqCst) > 0 => {
                ring.busy.fetch_sub(1, Ordering::SeqCst);
                format!("{OPERATING}\n")
            }
            ["SERVICEOUT", arg] if arg.split(':').count() == 3 && ring.lone => {
                ring.deleting.store(true, Ordering::SeqCst);
                "ERROR: Failed to send status notice to other servers.\n".to_owned()
            }
            ["SERVICEOUT", arg] if arg.split(':').count() == 3 => {
                ring.out.store(true, Ordering::SeqCst);
                "SUCCEED\n".to_owned()
            }
            ["MERGE"] if ring.merge_ignored => "SUCCEED: There no server on RING.\n".to_owned(),
            ["MERGE"] if ring.deleting.load(Ordering::SeqCst) => {
                ring.out.store(true, Ordering::SeqCst);
                "SUCCEED: There no server on RING.\n".to_owned()
            }
            ["SERVICEOUT", ..] => PARAM_ERROR.to_owned(),
            ["ALLSTATUS"] => format!("RING Name = c1\nNo.1\n  Server Name = 127.0.0.1\n    Control Port = 8021\n    CUK = cuk-a\n    Custom ID Seed = host-a\n    Server Status = {status}\n"),
            ["SELFSTATUS"] => format!("    Server Status = {status}\n"),
            _ => "Unknown command\n".to_owned(),
        };
        let took = cmd.starts_with("SERVICEOUT") && reply.starts_with("SUCCEED");
        if took && ring.lost.load(Ordering::SeqCst) > 0 {
            ring.lost.fetch_sub(1, Ordering::SeqCst);
            return String::new();
        }
        reply
    })
    .await
}

fn facts(custom: bool) -> IniFacts {
    let id = if custom { "CHMPXIDTYPE = CUSTOM\n" } else { "" };
    crate::ini::facts(&format!(
        "[GLOBAL]\nGROUP = c1\n{id}CTLPORT = 8021\n[SVRNODE]\nNAME = 127.0.0.1\nCUK = cuk-a\nCUSTOM_ID_SEED = host-a\n[SLVNODE]\nNAME = [.]*\nCTLPORT = 8031\n"
    ))
}

fn fake(delay_polls: usize) -> FakeRing {
    FakeRing {
        lone: false,
        merge_ignored: false,
        busy: AtomicUsize::new(0),
        lost: AtomicUsize::new(0),
        selfstatus_dropped: AtomicUsize::new(0),
        deleting: AtomicBool::new(false),
        out: AtomicBool::new(false),
        polls_after_out: AtomicUsize::new(0),
        delay_polls,
        commands: Default::default(),
    }
}

fn ring(delay_polls: usize) -> Arc<FakeRing> {
    Arc::new(fake(delay_polls))
}

/// Alone on its ring, as the real chmpx; `merge_ignored`: MERGE
/// changes nothing.
fn lone_ring(merge_ignored: bool) -> Arc<FakeRing> {
    Arc::new(FakeRing {
        lone: true,
        merge_ignored,
        ..fake(0)
    })
}

#[tokio::test]
async fn custom_id_type_leaves_with_the_seed_and_waits_for_service_out() {
    let r = ring(3);
    let addr = serve(r.clone()).await;
    let left = leave(&facts(true), "cuk-a", &addr, 8021, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        left,
        Left::Out {
            command: "SERVICEOUT 127.0.0.1:8021:host-a".into(),
            confirmed_by: 1
        }
    );
    let cmds = r.commands.lock().unwrap().clone();
    assert_eq!(cmds[0], "SERVICEOUT 127.0.0.1:8021:host-a");
    assert!(
        cmds.iter().filter(|c| *c == "ALLSTATUS").count() >= 4,
        "waited until ALLSTATUS showed it out: {cmds:?}"
    );
}

/// Seen on the real chmpx alone on its ring: the status-notice error
/// after the status changed, and a deletion only MERGE finishes.
#[tokio::test]
async fn a_lone_node_is_merged_out_after_the_status_notice_error() {
    let r = lone_ring(false);
    let addr = serve(r.clone()).await;
    let left = leave(&facts(true), "cuk-a", &addr, 8021, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(matches!(left, Left::Out { .. }), "{left:?}");
    let cmds = r.commands.lock().unwrap().clone();
    assert!(cmds.contains(&"MERGE".to_owned()), "{cmds:?}");
}

/// A deletion that MERGE does not finish fails the leave in its
/// bound, and the error says what the last MERGE got.
#[tokio::test]
async fn a_deletion_no_merge_finishes_fails_naming_the_merge_reply() {
    let r = lone_ring(true);
    let addr = serve(r.clone()).await;
    let err = leave(&facts(true), "cuk-a", &addr, 8021, Duration::from_secs(4))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("[DELETE][Pending]"), "{err}");
    assert!(
        err.contains("last MERGE answered: SUCCEED: There no server on RING."),
        "{err}"
    );
}

/// A node that has just joined is still merging: chmpx refuses
/// SERVICEOUT as "operating" for a while, and the leave waits it out.
#[tokio::test]
async fn serviceout_is_asked_again_while_the_ring_merges() {
    let r = ring(0);
    r.busy.store(3, Ordering::SeqCst);
    let addr = serve(r.clone()).await;
    let left = leave(&facts(true), "cuk-a", &addr, 8021, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(matches!(left, Left::Out { .. }), "{left:?}");
    let outs = r
        .commands
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with("SERVICEOUT"))
        .count();
    assert_eq!(outs, 4, "three refusals, then accepted");
}

/// Seen on a real 2-node ring: both control ports answered 4-5 s late
/// while merging. A port that does not answer in time is a busy ring,
/// not an absent one: the leave must not report "nothing to leave"
/// (the agent would then stop a node that is still in the ring).
#[tokio::test]
async fn a_control_port_that_answers_late_is_not_an_absent_ring() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s); // never answers
        }
    });
    let err = leave(&facts(true), "cuk-a", &addr, 8021, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, LeaveError::NotOut { .. }), "{err}");
    assert!(err.to_string().contains("no reply within"), "{err}");
}

/// The defect seen on the real chmpx: `SERVICEOUT host:ctlport` on a
/// CUSTOM ring is refused, and the node must not be stopped as if it
/// had left.
#[tokio::test]
async fn a_refused_serviceout_is_an_error_naming_chmpx_reply() {
    let r = ring(0);
    let addr = serve(r.clone()).await;
    // An ini that claims NAME while chmpx runs CUSTOM: the 2-part form.
    let err = leave(&facts(false), "cuk-a", &addr, 8021, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, LeaveError::Refused(_)), "{err}");
    assert!(
        err.to_string()
            .contains("must have parameter as server/ctlport"),
        "{err}"
    );
}

#[tokio::test]
async fn a_ring_that_never_shows_the_node_out_is_bounded() {
    let r = ring(usize::MAX);
    let addr = serve(r).await;
    let t = Instant::now();
    let err = leave(
        &facts(true),
        "cuk-a",
        &addr,
        8021,
        Duration::from_millis(800),
    )
    .await
    .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        err.to_string().contains("[SERVICE IN][UP]"),
        "names what it saw: {err}"
    );
}

#[tokio::test]
async fn nothing_to_leave_without_an_answering_server_or_an_entry() {
    let dead = "127.0.0.1:1";
    assert_eq!(
        leave(&facts(true), "cuk-a", dead, 1, Duration::from_secs(1))
            .await
            .unwrap(),
        Left::NoServerAnswers
    );
    assert_eq!(
        leave(
            &facts(true),
            "someone-else",
            dead,
            1,
            Duration::from_secs(1)
        )
        .await
        .unwrap(),
        Left::NotInIni
    );
    let no_seed = crate::ini::facts("[GLOBAL]\nGROUP = c1\nCHMPXIDTYPE = CUSTOM\n[SVRNODE]\nNAME = h\nCUK = cuk-a\nCTLPORT = 1\n");
    assert!(matches!(
        leave(&no_seed, "cuk-a", dead, 1, Duration::from_secs(1)).await,
        Err(LeaveError::Command(_))
    ));
}

fn serviceouts(r: &FakeRing) -> usize {
    let commands = r.commands.lock().unwrap();
    commands
        .iter()
        .filter(|c| c.starts_with("SERVICEOUT"))
        .count()
}

/// Issue 31: a SERVICEOUT chmpx took whose answer was lost. The ring's
/// status shows it taken, so it is not sent again, and the leave ends.
#[tokio::test]
async fn a_serviceout_taken_with_its_answer_lost_is_sent_once() {
    let r = ring(0);
    r.lost.store(1, Ordering::SeqCst);
    let addr = serve(r.clone()).await;
    let left = leave(&facts(true), "cuk-a", &addr, 8021, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(matches!(left, Left::Out { .. }), "{left:?}");
    assert_eq!(serviceouts(&r), 1);
}

/// The same for a member taken out by another (`k2hdkc_ring_service_out`).
#[tokio::test]
async fn a_members_serviceout_taken_with_its_answer_lost_is_sent_once() {
    let r = ring(0);
    r.lost.store(1, Ordering::SeqCst);
    let addr = serve(r.clone()).await;
    let view = RingView {
        cuk: "cuk-b".into(),
        ctl: addr,
        ctlport: 8021,
        facts: facts(true),
    };
    let out = service_out(&view, "cuk-a", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(serviceouts(&r), 1, "{out}");
    assert!(
        out["reply"].as_str().unwrap().starts_with("answer lost"),
        "{out}"
    );
}

/// Seen in CI on the real chmpx, after a reboot: the node was out
/// already, chmpx refused SERVICEOUT as "not allowed", then dropped the
/// SELFSTATUS that asks why. A dropped answer is a busy chmpx: the
/// question is asked again within the bound, not a failed restart.
#[tokio::test]
async fn a_dropped_selfstatus_after_not_allowed_is_asked_again() {
    let r = ring(0);
    r.out.store(true, Ordering::SeqCst);
    r.selfstatus_dropped.store(2, Ordering::SeqCst);
    let addr = serve(r.clone()).await;
    let left = leave(&facts(true), "cuk-a", &addr, 8021, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(left, Left::AlreadyOut);
    let asked = r
        .commands
        .lock()
        .unwrap()
        .iter()
        .filter(|c| *c == "SELFSTATUS")
        .count();
    assert_eq!(asked, 3, "two dropped, then answered");
}
