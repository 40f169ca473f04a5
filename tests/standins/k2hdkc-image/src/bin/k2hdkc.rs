//! k2hdkc STAND-IN (tests only): `k2hdkc -conf <ini> [-ctlport <port>]
//! [-cuk <cuk>] [-d level] [-comlog ...] [-no_giveup_rejoin]`.
//!
//! Checks what k2hdkc checks at start, in its order, exiting 1 on the
//! first failure: the ini parses and names this process as a server node;
//! `[K2HDKC]` exists; the k2hash file (`K2HTYPE`/`K2HFILE`) opens or is
//! created (its directory must exist: k2hash does not create it); chmpx's
//! shared memory `/var/lib/antpickax/<GROUP>-<ctlport>.chmpx` exists and a
//! `chmpx` process is visible in `/proc` (same `/var/lib/antpickax` and
//! PID namespace as chmpx); `[GLOBAL] MQACK` is off. Then it stays
//! attached (its process name is what chmpx looks for) until SIGINT,
//! SIGTERM or SIGHUP (exit 0). When chmpx goes away it exits 1 after 10 s,
//! unless `-no_giveup_rejoin`. It serves no data.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use k2hdkc_standin::flags::{self, Opts};
use k2hdkc_standin::net::Local;
use k2hdkc_standin::{conf, err, k2hfile, log, msg, procs, shm_base_dir, shm_file, sig};

const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

fn fail(what: &str) -> ! {
    err!("{what}");
    println!("ERROR: {what}");
    std::process::exit(1)
}

fn chmpx_there(shm: &Path) -> bool {
    shm.exists() && !procs::named("chmpx").is_empty()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opts = Opts::parse(args.into_iter().skip(1));
    if opts.has(&["h", "help"]) {
        println!("[STAND-IN of k2hdkc, for tests]");
        println!("Usage: k2hdkc -conf <file> [-ctlport <port>] [-cuk <cuk>] [-d [silent|err|wan|msg|dump]] [-comlog [off|on]] [-no_giveup_rejoin]");
        return;
    }
    if opts.has(&["v", "ver", "version"]) {
        println!("K2HDKC Version {} (STAND-IN for tests, not k2hdkc)", k2hdkc_standin::K2HDKC_VERSION);
        return;
    }
    let c = flags::common(&opts).unwrap_or_else(|e| {
        println!("{e}");
        std::process::exit(1)
    });
    if let Some(level) = c.level {
        log::set_level(level);
    }
    sig::catch(&[sig::SIGINT, sig::SIGTERM, sig::SIGHUP]);
    let no_giveup = opts.has(&["no_giveup_rejoin"]);

    let local = Local::detect();
    let text = std::fs::read_to_string(&c.conf).unwrap_or_else(|e| fail(&format!("Could not load configuration file({}): {e}", c.conf)));
    let cfg = conf::load(&text, &local).unwrap_or_else(|e| fail(&e));
    let me = cfg.find_self(c.ctlport, c.cuk.as_deref(), &local).unwrap_or_else(|e| fail(&e));
    if !me.server {
        fail(&format!("control port {} is a slave node; k2hdkc runs on server nodes", me.ctlport));
    }
    let section = cfg
        .k2hdkc
        .clone()
        .unwrap_or_else(|| fail(&format!("Could not find section([K2HDKC]) in configuration({}).", c.conf)));

    // k2hash: K2HTYPE mem / file / temp (default: file when K2HFILE is set).
    let kind = section.get("K2HTYPE").map(|t| t.to_ascii_uppercase());
    let file: Option<(PathBuf, bool)> = match kind.as_deref() {
        Some("M" | "MEM" | "MEMORY") => None,
        Some("F" | "FILE") | None => section.get("K2HFILE").map(|f| (PathBuf::from(f), false)),
        Some("T" | "TEMP" | "TEMPORARY") => section.get("K2HFILE").map(|f| (PathBuf::from(f), true)),
        Some(other) => fail(&format!("keyword(K2HTYPE)'s value({other}) in section([K2HDKC]) is unknown value.")),
    };
    if matches!(kind.as_deref(), Some("F" | "FILE" | "T" | "TEMP" | "TEMPORARY")) && file.is_none() {
        fail("keyword(K2HFILE) in section([K2HDKC]) is needed for a file k2hash.");
    }
    if let Some((path, _)) = &file {
        let opened = if path.exists() {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .and_then(|f| f.set_modified(SystemTime::now()))
        } else {
            k2hfile::store(path, &k2hfile::Data::new())
        };
        if let Err(e) = opened {
            fail(&format!("Failed to initialize(create or attach) k2hash {}: {e}", path.display()));
        }
    }

    // chmpx: its shared memory in the same /var/lib/antpickax, its process
    // in the same PID namespace.
    let shm = shm_file(&shm_base_dir(), &cfg.group, c.ctlport.or(cfg.selfctlport), "chmpx");
    if !chmpx_there(&shm) {
        fail(&format!(
            "Could not initialize(attach) chmpx shared memory for testing ({} with a running chmpx).",
            shm.display()
        ));
    }
    if cfg.mqack {
        fail("Chmpx MQ Ack mode is true(on), MQ Ack mode must be OFF(FALSE) for k2hdkc process.");
    }
    msg!(
        "k2hdkc stand-in attached to chmpx (control port {}), k2hash {}",
        me.ctlport,
        file.as_ref().map_or("in memory".into(), |(p, _)| p.display().to_string())
    );

    let mut lost: Option<Instant> = None;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(s) = sig::caught() {
            msg!("caught signal {s}, exiting");
            if let Some((path, true)) = &file {
                let _ = std::fs::remove_file(path);
            }
            std::process::exit(0);
        }
        if chmpx_there(&shm) {
            if lost.take().is_some() {
                msg!("chmpx is back");
            }
        } else {
            let since = *lost.get_or_insert_with(|| {
                err!("chmpx went away; trying to rejoin");
                Instant::now()
            });
            if !no_giveup && since.elapsed() >= GIVE_UP_AFTER {
                fail("Could not rejoin chmpx, gave up.");
            }
        }
    }
}
