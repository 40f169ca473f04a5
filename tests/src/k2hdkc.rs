//! The k2hdkc server side of the node tests: free ports, which image, the
//! message-queue limit this host allows, Docker, and a host that refuses.

use std::sync::atomic::Ordering;

use crate::repo_root;

/// Ports for one test's K2HDKC node: server, control, slave control.
/// Tests run in parallel on the host network (and beside other test runs),
/// so each call takes three ports that are free now, from a range below
/// the kernel's ephemeral ports (which start at 32768: chmpx keeps ports
/// in a C `short` and cannot listen above 32767), starting at a random
/// place so that test processes side by side rarely meet.
pub fn node_ports() -> (u16, u16, u16) {
    use std::sync::atomic::AtomicU32;
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| uuid::Uuid::new_v4().as_u128() as u32 % SPAN);
    let free = |p: u16| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok();
    let mut picked = Vec::with_capacity(3);
    for _ in 0..SPAN {
        let p = (LOW + (start + NEXT.fetch_add(1, Ordering::SeqCst)) % SPAN) as u16;
        if free(p) {
            picked.push(p);
            if picked.len() == 3 {
                return (picked[0], picked[1], picked[2]);
            }
        }
    }
    panic!("no three free ports in {LOW}..{}", LOW + SPAN);
}

/// The k2hdkc server test image (a stand-in built from tests/standins).
pub const STANDIN_IMAGE: &str = "k2hdkc-standin:test";
/// The real chmpx + k2hdkc, when built on this machine with
/// `packaging/k2hdkc-image/source/build.sh` (tests/run builds it when the
/// sources are there).
pub const REAL_IMAGE: &str = "k2hdkc-real:1.0.17";

/// `msgqueue_bytes = 0` where the engine cannot raise RLIMIT_MSGQUEUE
/// (its root lacks CAP_SYS_RESOURCE, as in this sandbox): the agent's
/// default would fail every container start there.
pub fn msgqueue_line() -> &'static str {
    let cap_sys_resource = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|eff| eff >> 24 & 1 == 1);
    if cap_sys_resource {
        ""
    } else {
        "msgqueue_bytes = 0\n"
    }
}

/// The k2hdkc server image the node tests run: `K2HDKC_TEST_IMAGE` if
/// set, else the real image when it is present, else the stand-in (built
/// once per test process). `tests/run` prints the same choice at the top.
pub fn k2hdkc_image() -> String {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let chosen = match std::env::var("K2HDKC_TEST_IMAGE") {
                Ok(i) if !i.is_empty() => i,
                _ => {
                    let real = std::process::Command::new("docker")
                        .args(["image", "inspect", REAL_IMAGE])
                        .output();
                    if real.is_ok_and(|o| o.status.success()) {
                        REAL_IMAGE.to_owned()
                    } else {
                        STANDIN_IMAGE.to_owned()
                    }
                }
            };
            if chosen == STANDIN_IMAGE {
                ensure_standin_image();
            }
            eprintln!("k2hdkc test image: {chosen}");
            chosen
        })
        .clone()
}

/// Builds the stand-in image once per test process.
pub fn ensure_standin_image() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let script = repo_root().join("tests/standins/k2hdkc-image/build.sh");
        let status = std::process::Command::new("bash")
            .arg(script)
            .arg(STANDIN_IMAGE)
            .status()
            .expect("build.sh runs");
        assert!(status.success(), "building the stand-in image failed");
    });
}

/// Docker CLI (test code only, argv).
pub fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A host on this machine where nothing listens, for a member that is
/// registered but does not run: a container on dockerd's default bridge,
/// so a connection to it is refused at once. Not a second loopback
/// address: chmpx listens on every address of this machine, so a server
/// listed at 127.0.0.2 is the node's own chmpx, which then waits on
/// itself and stops answering (seen: its control port silent for good,
/// a slave unable to join).
pub struct AbsentHost {
    pub ip: String,
    name: String,
}

impl AbsentHost {
    pub fn start() -> Self {
        let name = format!("k2hdkc-absent-{}", uuid::Uuid::new_v4().simple());
        let id = docker(&[
            "run",
            "-d",
            "--rm",
            "--name",
            &name,
            "--network",
            "bridge",
            &k2hdkc_image(),
            "sleep",
            "900",
        ]);
        assert!(!id.is_empty(), "cannot start the absent host's container");
        let ip = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &name]);
        assert!(
            ip.parse::<std::net::Ipv4Addr>().is_ok(),
            "no bridge address: {ip:?}"
        );
        AbsentHost { ip, name }
    }
}

impl Drop for AbsentHost {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.name]);
    }
}
