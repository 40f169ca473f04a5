//! chmpx STAND-IN (tests only): `chmpx -conf <ini> [-ctlport <port>]
//! [-cuk <cuk>] [-d silent|err|wan|msg|dump]`.
//!
//! Reads and checks the ini and finds itself in it as chmpx does (exits 1
//! otherwise), checks `fs.mqueue.msg_max` when not root (exits 1 when it is
//! below MAXMQSERVER + MAXMQCLIENT), creates its shared-memory files
//! `/var/lib/antpickax/<GROUP>-<ctlport>.chmpx` and `.k2h` (k2hdkc attaches
//! to the first; both are removed on a clean exit), listens on its control
//! port (and, for a server node, its data port: accepted connections are
//! closed) on all interfaces, answers control commands (see `node.rs`),
//! follows k2hdkc through `/proc`, polls the other servers' control ports,
//! reloads the ini when it changes (polling every 200 ms; a reload that
//! fails or loses self ends the process with 1), and exits 0 on SIGINT or
//! SIGHUP. SIGTERM is ignored (chmpx blocks it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k2hdkc_standin::conf::{self, Conf, Me};
use k2hdkc_standin::flags::{self, Common, Opts};
use k2hdkc_standin::net::{self, Local};
use k2hdkc_standin::node::{Node, Reply, ERROR_TRANSFER};
use k2hdkc_standin::status::Status;
use k2hdkc_standin::{err, log, msg, procs, shm_base_dir, shm_file, sig, wan};

const POLL_PEERS: Duration = Duration::from_millis(500);
const WATCH_INI: Duration = Duration::from_millis(200);

fn usage(prg: &str) {
    println!("[STAND-IN of chmpx, for tests]");
    println!("Usage: {prg} [-conf file] [-ctlport port] [-cuk cuk] [-d [silent|err|wan|msg|dump]]");
    println!("       {prg} [ -h | -v ]");
}

/// chmpx `ChmEventMq::InitializeMaxMqSystemSize`: not as root, the IPC
/// namespace's `fs.mqueue.msg_max` must hold MAXMQSERVER + MAXMQCLIENT.
fn check_mq(conf: &Conf) -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|u| u.parse::<u32>().ok());
    if euid == Some(0) {
        return Ok(());
    }
    const MSG_MAX: &str = "/proc/sys/fs/mqueue/msg_max";
    let text = std::fs::read_to_string(MSG_MAX).map_err(|e| format!("Could not open file {MSG_MAX}: {e}"))?;
    let current: u64 = text.trim().parse().unwrap_or(0);
    let need = conf.mq_needed();
    if current < need {
        return Err(format!(
            "Current msg {current} is too small for specified msg {need}(MAXCLIENT in GLOBAL section); set {MSG_MAX} (sysctl fs.mqueue.msg_max) to {need}. Could not get mq size = {} for chmpx process.",
            conf.max_mq.1
        ));
    }
    Ok(())
}

fn load(c: &Common, local: &Local) -> Result<(Conf, Me), String> {
    let text = std::fs::read_to_string(&c.conf).map_err(|e| format!("Could not open(read only) file({}): {e}", c.conf))?;
    let conf = conf::load(&text, local)?;
    let me = conf.find_self(c.ctlport, c.cuk.as_deref(), local)?;
    Ok((conf, me))
}

/// Reads one command as chmpx does (`ChmEventSock::RawReceiveAny` on a
/// control socket): waits for the socket to be readable, then one `recv`
/// is the whole command, however much of the client's text it holds. A
/// client that sends its newline apart gets its connection reset once the
/// reply is written and the socket closed, as from the real chmpx.
fn read_command(s: &mut TcpStream) -> String {
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut chunk = [0u8; 8192];
    let buf = match s.read(&mut chunk) {
        Ok(n) => chunk[..n].to_vec(),
        Err(_) => Vec::new(),
    };
    // chmpx takes the text up to a NUL (its words are split on blanks and
    // newlines): keep the first line with its newline.
    let end = match buf.iter().position(|b| *b == b'\n' || *b == 0) {
        Some(i) if buf[i] == b'\n' => i + 1,
        Some(i) => i,
        None => buf.len(),
    };
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Sends a command to another chmpx's control port; its reply, or `None`.
fn ask(name: &str, ctlport: u16, command: &str, timeout: Duration) -> Option<String> {
    let addr = SocketAddr::new(net::resolve(name)?, ctlport);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(format!("{command}\n").as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn serve_control(listener: TcpListener, node: Arc<Mutex<Node>>) {
    for conn in listener.incoming().flatten() {
        let node = node.clone();
        std::thread::spawn(move || {
            let mut conn = conn;
            let command = read_command(&mut conn);
            let command = command.as_str();
            let reply = node.lock().unwrap().command(command, Instant::now());
            let text = match reply {
                Reply::Text(t) => t,
                Reply::Forward { name, ctlport, command } => {
                    msg!("transfer {command:?} to {name}:{ctlport}");
                    ask(&name, ctlport, &command, Duration::from_secs(3)).unwrap_or_else(|| ERROR_TRANSFER.into())
                }
            };
            let first = text.lines().next().unwrap_or("");
            // chmpx spreads a merge command to the whole ring from the
            // server that takes it (RequestMergeStart and friends send it
            // to every server). The stand-in forwards it with a `ring`
            // word, which marks it as already spread.
            let words: Vec<String> = command.split_whitespace().map(str::to_ascii_uppercase).collect();
            if let [verb] = words.as_slice() {
                if matches!(verb.as_str(), "MERGE" | "COMPMERGE" | "ABORTMERGE") && first.starts_with("SUCCEED") {
                    let others = node.lock().unwrap().others();
                    let verb = verb.clone();
                    std::thread::spawn(move || {
                        for (_, name, ctlport) in others {
                            let r = ask(&name, ctlport, &format!("{verb} ring"), Duration::from_secs(3));
                            msg!("spread {verb} to {name}:{ctlport}: {:?}", r.as_deref().map(str::trim));
                        }
                    });
                }
            }
            match command.split_whitespace().next().map(str::to_ascii_uppercase).as_deref() {
                None => {}
                // Status queries (peers poll twice a second) only at dump level.
                Some("SELFSTATUS" | "ALLSTATUS") => log::print(log::DUMP, &format!("control: {command:?} -> {first:?}")),
                Some(_) => msg!("control: {command:?} -> {first:?}"),
            }
            let _ = conn.set_write_timeout(Some(Duration::from_secs(3)));
            let _ = conn.write_all(text.as_bytes());
            let _ = conn.shutdown(std::net::Shutdown::Both);
        });
    }
}

/// The status the first answering server keeps for this one (its block
/// in that server's `ALLSTATUS`), or `None` when no server answers or none
/// knows it.
fn kept_status(node: &Node) -> Option<Status> {
    if !node.me.server {
        return None;
    }
    let (name, ctlport) = (node.entry().name.clone(), node.me.ctlport);
    node.others().into_iter().find_map(|(_, peer, port)| {
        let all = ask(&peer, port, "ALLSTATUS", Duration::from_secs(1))?;
        all.split("\nNo.").find_map(|block| {
            let field = |k: &str| {
                block
                    .lines()
                    .find(|l| l.trim_start().starts_with(k))
                    .and_then(|l| l.split_once('=').map(|(_, v)| v.trim().to_owned()))
            };
            (field("Server Name")? == name && field("Control Port")? == ctlport.to_string())
                .then(|| Status::parse_reply(block))
                .flatten()
        })
    })
}

fn poll_peers(node: Arc<Mutex<Node>>) {
    loop {
        let others = node.lock().unwrap().others();
        for (key, name, ctlport) in others {
            let status = ask(&name, ctlport, "SELFSTATUS", Duration::from_secs(1)).and_then(|r| Status::parse_reply(&r));
            node.lock().unwrap().peer_report(&key, status);
        }
        std::thread::sleep(POLL_PEERS);
    }
}

fn fingerprint(path: &str) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.ino(), m.len()))
}

struct Files(Vec<PathBuf>);

impl Files {
    fn remove(&self) {
        for f in &self.0 {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn fail(files: Option<&Files>, what: &str) -> ! {
    err!("{what}");
    if let Some(f) = files {
        f.remove();
    }
    println!("ERROR: Could not initialize process.");
    println!("You can see detail about error, execute with \"-d\" option.");
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let prg = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map_or("chmpx".into(), |n| n.to_string_lossy().into_owned());
    let opts = Opts::parse(args.into_iter().skip(1));
    if opts.has(&["h", "help"]) {
        usage(&prg);
        return;
    }
    if opts.has(&["v", "ver", "version"]) {
        println!("CHMPX Version {} (STAND-IN for tests, not chmpx)", k2hdkc_standin::CHMPX_VERSION);
        return;
    }
    let c = flags::common(&opts).unwrap_or_else(|e| {
        println!("{e}");
        usage(&prg);
        std::process::exit(1)
    });
    if let Some(level) = c.level {
        log::set_level(level);
    }
    sig::catch(&[sig::SIGINT, sig::SIGHUP]);
    sig::ignore(sig::SIGTERM);

    let local = Local::detect();
    let (conf, me) = load(&c, &local).unwrap_or_else(|e| fail(None, &e));
    for w in &conf.warnings {
        wan!("{w}");
    }
    if let Err(e) = check_mq(&conf) {
        fail(None, &e);
    }
    if conf.mqack {
        msg!("MQACK is on (the default); k2hdkc refuses to attach to this chmpx");
    }

    // Shared memory: chmpx removes an old k2hash file and (re)creates both.
    let base = shm_base_dir();
    let file_port = c.ctlport.or(conf.selfctlport);
    let shm = shm_file(&base, &conf.group, file_port, "chmpx");
    let k2h = shm_file(&base, &conf.group, file_port, "k2h");
    let files = Files(vec![shm.clone(), k2h.clone()]);
    let _ = std::fs::remove_file(&k2h);
    if let Err(e) = std::fs::write(&k2h, b"").and_then(|_| std::fs::write(&shm, b"STAND-IN chmpx shared memory\n")) {
        fail(Some(&files), &format!("could not create shared memory files in {}: {e}", base.display()));
    }

    // chmpx keeps ports in a C short: 32768 and up turn negative and it
    // cannot listen (seen on chmpx 1.0.111: "Could not listen port(-25516)").
    let data_port = if me.server { conf.servers[me.index].port } else { None };
    for p in std::iter::once(me.ctlport).chain(data_port) {
        if p > 32767 {
            fail(Some(&files), &format!("Could not listen port({}).", p as i16));
        }
    }
    let ctl =
        TcpListener::bind(("0.0.0.0", me.ctlport)).unwrap_or_else(|e| fail(Some(&files), &format!("could not listen on control port {}: {e}", me.ctlport)));
    let data = if me.server {
        let port = conf.servers[me.index].port.unwrap_or(0);
        Some(TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| fail(Some(&files), &format!("could not listen on port {port}: {e}"))))
    } else {
        None
    };

    let mut node = Node::new(conf, me, local.display_name());
    if let Some(kept) = kept_status(&node) {
        node.adopt(kept);
    }
    print!("{}", node.selfstatus());
    let _ = std::io::stdout().flush();
    msg!(
        "chmpx stand-in up as {} node on control port {}",
        if node.me.server { "server" } else { "slave" },
        node.me.ctlport
    );
    let ctlport = node.me.ctlport;
    let server = node.me.server;
    let node = Arc::new(Mutex::new(node));
    {
        let node = node.clone();
        std::thread::spawn(move || serve_control(ctl, node));
    }
    if let Some(data) = data {
        std::thread::spawn(move || {
            for conn in data.incoming().flatten() {
                drop(conn);
            }
        });
    }
    {
        let node = node.clone();
        std::thread::spawn(move || poll_peers(node));
    }

    let mut seen = fingerprint(&c.conf);
    let mut last_watch = Instant::now();
    let mut last_shm = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(s) = sig::caught() {
            msg!("caught signal {s}, exiting");
            files.remove();
            std::process::exit(0);
        }
        if last_watch.elapsed() >= WATCH_INI {
            last_watch = Instant::now();
            let now = fingerprint(&c.conf);
            if now != seen {
                seen = now;
                match load(&c, &local) {
                    Ok((conf, me)) => {
                        let mut n = node.lock().unwrap();
                        if me.ctlport != ctlport || me.server != server {
                            wan!(
                                "self changed to control port {} ({}); the stand-in keeps its sockets",
                                me.ctlport,
                                if me.server { "server" } else { "slave" }
                            );
                        }
                        msg!("reloaded {} ({} servers, {} slaves)", c.conf, conf.servers.len(), conf.slaves.len());
                        n.reload(conf, me);
                    }
                    Err(e) => {
                        err!("reloading {} failed, exiting: {e}", c.conf);
                        files.remove();
                        println!("ERROR: Something error occured in main event loop.");
                        std::process::exit(1);
                    }
                }
            }
        }
        let attached = server && procs::named("k2hdkc").iter().any(|p| procs::serves_ctlport(&p.argv, ctlport));
        let text = {
            let mut n = node.lock().unwrap();
            n.tick(Instant::now(), attached);
            n.selfstatus()
        };
        if text != last_shm {
            let _ = std::fs::write(&shm, format!("STAND-IN chmpx shared memory\n{text}"));
            last_shm = text;
        }
    }
}
