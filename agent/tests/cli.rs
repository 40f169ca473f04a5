//! The binary as systemd and an operator run it: flags, config errors,
//! `--show-config`, and exit 0 on SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_trove-guestagent");

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GUEST_INFO: &str =
    "[DEFAULT]\nguest_id = g-cli\ndatastore_manager = k2hdkc\ninstance_rpc_encr_key = SECRETKEY\n";
// Port 1 on loopback: nothing listens, so the agent stays reconnecting.
const AGENT_CONF: &str = "[DEFAULT]\ntransport_url = rabbit://trove:SECRETPASS@127.0.0.1:1/\n";

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--config-dir")
            && help.contains("--config-file")
            && help.contains("--show-config"),
        "{help}"
    );
}

#[test]
fn show_config_masks_secrets_and_keeps_flag_order() {
    let dir = tempfile::tempdir().unwrap();
    let confd = dir.path().join("conf.d");
    std::fs::create_dir(&confd).unwrap();
    write(&confd, "guest_info.conf", GUEST_INFO);
    write(
        &confd,
        "trove-guestagent.conf",
        &format!("{AGENT_CONF}report_interval = 10\n"),
    );
    let late = write(dir.path(), "late.conf", "[DEFAULT]\nreport_interval = 20\n");
    let early = write(dir.path(), "early.conf", "[DEFAULT]\nreport_interval = 5\n");

    // --config-file after --config-dir wins; before it, loses.
    let out = Command::new(BIN)
        .arg("--config-dir")
        .arg(&confd)
        .arg("--config-file")
        .arg(&late)
        .arg("--show-config")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("report_interval = 20"), "{text}");
    assert!(
        !text.contains("SECRETKEY") && !text.contains("SECRETPASS"),
        "{text}"
    );
    assert!(
        text.contains("transport_url = rabbit://trove:***@127.0.0.1:1/"),
        "{text}"
    );

    let out = Command::new(BIN)
        .arg("--config-file")
        .arg(&early)
        .arg("--config-dir")
        .arg(&confd)
        .arg("--show-config")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("report_interval = 10"));
}

#[test]
fn bad_config_exits_2_naming_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let gi = write(dir.path(), "guest_info.conf", GUEST_INFO);
    let bad = write(
        dir.path(),
        "agent.conf",
        &format!("{AGENT_CONF}report_interval = often\nrport_interval = 1\n"),
    );
    let out = Command::new(BIN)
        .arg("--config-file")
        .arg(&gi)
        .arg("--config-file")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("agent.conf: [DEFAULT] report_interval: not a whole number")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("agent.conf: [DEFAULT] rport_interval: unknown option")),
        "{err}"
    );
    assert!(!err.contains("SECRET"), "{err}");

    let out = Command::new(BIN)
        .arg("--config-file")
        .arg(dir.path().join("missing.conf"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.conf"));
}

#[test]
fn unknown_datastore_manager_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "a.conf",
        &format!("{}{AGENT_CONF}", GUEST_INFO.replace("k2hdkc", "mysql")),
    );
    let out = Command::new(BIN)
        .arg("--config-file")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no driver for datastore_manager \"mysql\"")
    );
}

#[test]
fn sigterm_exits_0_even_while_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "a.conf",
        &format!(
            "{GUEST_INFO}{AGENT_CONF}agent_state_dir = {}\n",
            dir.path().display()
        ),
    );
    let mut child = Command::new(BIN)
        .arg("--config-file")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "agent did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("127.0.0.1:1"),
        "the log names the broker it tries: {log}"
    );
    assert!(
        !log.contains("SECRETPASS") && !log.contains("SECRETKEY"),
        "no secret in logs: {log}"
    );
}
