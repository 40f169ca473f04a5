//! keys-bench: how fast keys go through a chmpx slave, as an application
//! writes and reads them.
//!
//! One K2HDKC node (the agent in-process with the K2HDKC driver, the K2HR3
//! stand-in, the real chmpx + k2hdkc image built here) and a slave beside
//! it (`datastore::slave`, as `k2hdkc-slave` runs it). Then N keys (values
//! of 100 to 1,000 bytes) written and read back through the slave, each in
//! an application's container in the slave's IPC and PID namespaces:
//!
//! - `k2hdkclinetool -perm -run FILE` (k2hdkc's own client; the peer),
//! - `k2hdkc-bulk` (the image's bulk key tool) with 1, 2 and 4 processes.
//!
//! Prints one line per tool and direction: keys/s, and whether every key
//! read back with its value. keys-bench [N]   (default 20000). Run by
//! tests/bench/keys.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datastore::slave::config::SlaveConfig;
use datastore::slave::status::Recorded;
use e2e_tests::app::{on_slave, AppRun};
use e2e_tests::node::node;
use e2e_tests::{docker, k2hdkc_image, msgqueue_line, STANDIN_IMAGE};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let keys: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    assert_ne!(
        k2hdkc_image(),
        STANDIN_IMAGE,
        "keys-bench needs the real image (packaging/k2hdkc-image/source/build.sh)"
    );
    let mut n = node("").await;
    n.prepare_healthy().await;

    // The slave, as cloud-init's config would start it.
    let state = tempfile::tempdir().unwrap();
    let container = format!("k2hdkc-slave-{}", n.agent.guest_id);
    let ctlport = n.ports.2;
    let text = format!(
        "extdata_url = {}\nimage = {}\ncontainer = {container}\nctlport = {ctlport}\nstate_dir = {}\nseed = bench-{ctlport}\n{}",
        n.k2hr3.info["slave_extdata_url"].as_str().unwrap(),
        k2hdkc_image(),
        state.path().display(),
        msgqueue_line()
    );
    let cfg = SlaveConfig::parse(text.as_bytes()).unwrap();
    let containers = Arc::new(agent::docker::DockerHost::new(None).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let slave = tokio::spawn(datastore::slave::run(cfg, containers, async {
        let _ = stopped.await;
    }));
    let began = Instant::now();
    while Recorded::read(&state.path().join("status.json"))
        .map(|r| r.state)
        .ok()
        .as_deref()
        != Some("up")
    {
        assert!(began.elapsed() < Duration::from_secs(60), "slave not up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(work.path(), Some(1001), Some(1001)).unwrap();
    let app = |entrypoint: &str, args: &[&str]| {
        on_slave(
            &container,
            state.path(),
            ctlport,
            Some(work.path()),
            entrypoint,
            args,
        )
    };
    // The first request through a fresh slave waits for its links.
    let _ = app("k2hdkc-bulk", &["write", "-keys", "10", "-prefix", "warm"]);

    println!("| tool | writes/s | reads/s | every key read back |");
    println!("|---|---:|---:|---|");
    let mut rows = vec![linetool_row(&app, work.path(), keys)];
    println!("{}", rows[0]);
    for procs in ["1", "2", "4"] {
        rows.push(bulk_row(&app, keys, procs));
        println!("{}", rows.last().unwrap());
    }

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(60), slave).await;
    docker(&["rm", "-f", &container]);
    n.cleanup().await;
    if rows.iter().any(|r| r.contains("| failed |")) {
        eprintln!("keys-bench: a tool did not read every key back (above)");
        std::process::exit(1);
    }
}

/// The peer, k2hdkclinetool: one command file per direction.
fn linetool_row(app: &dyn Fn(&str, &[&str]) -> AppRun, work: &Path, keys: usize) -> String {
    let values: Vec<String> = (1..=keys)
        .map(|i| format!("value-{i}-{}", "x".repeat(100 + (i * 7919) % 900)))
        .collect();
    let sets: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("set lt-{} {v}\n", i + 1))
        .collect::<String>()
        + "exit\n";
    let prints: String = (1..=keys)
        .map(|i| format!("print lt-{i}\n"))
        .collect::<String>()
        + "exit\n";
    for (name, body) in [("sets", &sets), ("prints", &prints)] {
        let file = work.join(name);
        std::fs::write(&file, body).unwrap();
        std::os::unix::fs::chown(&file, Some(1001), Some(1001)).unwrap();
    }
    let wrote = app("k2hdkclinetool", &["-perm", "-run", "/work/sets"]).took;
    let prints_run = app("k2hdkclinetool", &["-perm", "-run", "/work/prints"]);
    let (out, read) = (prints_run.output, prints_run.took);
    // One pass over the output: a search per key is quadratic in N.
    // (from the key's quote on: the tool may put a prompt before it)
    let printed: std::collections::HashSet<&str> = out
        .lines()
        .filter_map(|l| l.find("\"lt-").map(|at| l[at..].trim_end()))
        .collect();
    let found = (1..=keys)
        .filter(|i| printed.contains(format!("\"lt-{i}\" => \"{}\"", values[i - 1]).as_str()))
        .count();
    row(
        "k2hdkclinetool -perm",
        keys,
        found == keys,
        wrote,
        read,
        format!("{found} of {keys}"),
    )
}

/// A row of the table: rates only for a run that read every key back, since
/// a run that failed fast would show the fastest rate of all.
fn row(
    tool: &str,
    keys: usize,
    ok: bool,
    wrote: Duration,
    read: Duration,
    checked: String,
) -> String {
    let rate = |took: Duration| {
        if ok {
            format!("{:.0}", keys as f64 / took.as_secs_f64())
        } else {
            "failed".to_owned()
        }
    };
    format!("| {tool} | {} | {} | {checked} |", rate(wrote), rate(read))
}

/// The bulk tool with `procs` processes, timed the same way (each run's
/// container start, about half a second here, included for both tools).
fn bulk_row(app: &dyn Fn(&str, &[&str]) -> AppRun, keys: usize, procs: &str) -> String {
    let k = keys.to_string();
    let prefix = format!("bulk{procs}");
    let run = |op: &str| {
        app(
            "k2hdkc-bulk",
            &[op, "-keys", &k, "-prefix", &prefix, "-procs", procs],
        )
    };
    let (w, r) = (run("write"), run("read"));
    let ok = r
        .output
        .contains(&format!("ok={keys} stale=0 missing=0 failed=0"));
    let checked = if ok {
        format!("{keys} of {keys}")
    } else {
        r.output.trim().to_owned()
    };
    row(
        &format!("k2hdkc-bulk, {procs} process(es)"),
        keys,
        ok,
        w.took,
        r.took,
        checked,
    )
}
