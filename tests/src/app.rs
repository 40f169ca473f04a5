//! An application on a k2hdkc-slave, as docs/applications.md tells one to
//! run: a container in the slave's IPC and PID namespaces, the slave's ini
//! and chmpx's files mounted, as the database user, with k2hdkc's client
//! tools of the test image.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::k2hdkc_image;

/// What an application's run printed and how it ended.
pub struct AppRun {
    /// Whether it exited 0.
    pub ok: bool,
    /// Its standard output, then its standard error.
    pub output: String,
    /// From `docker run` to its end (the container's start included).
    pub took: Duration,
}

/// Runs `entrypoint args... -conf <the slave's ini> -ctlport <ctlport>` in
/// an application's container on the slave `container`, whose state
/// directory is `state`; `work`, if given, is mounted read-only at /work.
pub fn on_slave(
    container: &str,
    state: &Path,
    ctlport: u16,
    work: Option<&Path>,
    entrypoint: &str,
    args: &[&str],
) -> AppRun {
    let t = Instant::now();
    let mut cmd = std::process::Command::new("docker");
    cmd.args(["run", "--rm", "--network", "host"])
        .args(["--ipc", &format!("container:{container}")])
        .args(["--pid", &format!("container:{container}")])
        .args(["--user", "1001:1001"])
        .args([
            "-v",
            &format!("{}:/etc/antpickax:ro", state.join("etc").display()),
        ])
        .args([
            "-v",
            &format!("{}:/var/lib/antpickax", state.join("run").display()),
        ]);
    if let Some(work) = work {
        cmd.args(["-v", &format!("{}:/work:ro", work.display())]);
    }
    let out = cmd
        .args(["--entrypoint", entrypoint, &k2hdkc_image()])
        .args(args)
        .args(["-conf", "/etc/antpickax/slave.ini"])
        .args(["-ctlport", &ctlport.to_string()])
        .output()
        .expect("docker run");
    AppRun {
        ok: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        took: t.elapsed(),
    }
}
