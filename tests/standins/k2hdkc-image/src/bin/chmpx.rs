//! chmpx STAND-IN: a control port answering like chmpx, a data port, ring
//! state driven by whether a `k2hdkc` process is attached (seen in /proc,
//! as real chmpx checks), AUTOMERGE, and reload of the ini on change.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k2hdkc_standin::{data_dir, flags, parse, signals, Ini};

struct State {
    ini: Ini,
    slave: bool,
    ring_in: bool,
    /// SERVICEOUT was asked: the node does not rejoin by itself.
    out_by_command: bool,
    attached_since: Option<Instant>,
}

fn k2hdkc_attached() -> bool {
    std::fs::read_dir("/proc")
        .map(|d| d.flatten().any(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "k2hdkc")))
        .unwrap_or(false)
}

fn status_line(st: &State) -> String {
    if st.slave {
        return "0x1(SAFE -> [SLAVE][UP][n/a][Nothing][NoSuspend])".into();
    }
    let suspend = if st.attached_since.is_some() { "NoSuspend" } else { "Suspend" };
    let (code, ring) = match (st.ring_in, st.attached_since.is_some()) {
        (true, true) => ("0x21", "SERVICE IN"),
        (true, false) => ("0x10021", "SERVICE IN"),
        (false, true) => ("0x11", "SERVICE OUT"),
        (false, false) => ("0x10011", "SERVICE OUT"),
    };
    format!("{code}(SAFE -> [{ring}][UP][n/a][Nothing][{suspend}])")
}

fn peer_up(name: &str, port: u16) -> bool {
    format!("{name}:{port}")
        .parse()
        .ok()
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
}

fn answer(cmd: &str, state: &Mutex<State>, self_ctl: u16) -> String {
    let mut words = cmd.split_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    let mut st = state.lock().unwrap();
    match verb.as_str() {
        "SELFSTATUS" => format!("chmpx self status (stand-in)\n  control port   = {self_ctl}\n  Server Status  = {}\n", status_line(&st)),
        "ALLSTATUS" => {
            let gctl = st.ini.global.get("CTLPORT").and_then(|v| v.parse().ok()).unwrap_or(8021);
            let mut out = String::from("chmpx all status (stand-in)\n");
            let servers = st.ini.servers.clone();
            for n in &servers {
                let port = n.ctlport.unwrap_or(gctl);
                let line = if port == self_ctl && !st.slave {
                    status_line(&st)
                } else if peer_up(&n.name, port) {
                    "0x21(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])".into()
                } else {
                    "0x10(SAFE -> [SERVICE OUT][DOWN][n/a][Nothing][NoSuspend])".into()
                };
                out.push_str(&format!("  [{}:{}]\n    Server Status = {line}\n", n.name, port));
            }
            out
        }
        "VERSION" => "CHMPX Version 1.0.111 (stand-in)\n".into(),
        _ if st.slave && matches!(verb.as_str(), "SERVICEIN" | "SERVICEOUT" | "MERGE" | "COMPMERGE" | "ABORTMERGE") => {
            "ERROR: This command is for server node.\n".into()
        }
        "SERVICEIN" => {
            if st.ring_in {
                "ERROR: Could not change status, because status is not allowed.\n".into()
            } else {
                st.ring_in = true;
                st.out_by_command = false;
                "SUCCEED\n".into()
            }
        }
        "SERVICEOUT" => {
            let target = words.next().unwrap_or("");
            let gctl: u16 = st.ini.global.get("CTLPORT").and_then(|v| v.parse().ok()).unwrap_or(8021);
            let known = st.ini.servers.iter().any(|n| format!("{}:{}", n.name, n.ctlport.unwrap_or(gctl)) == target);
            if !known {
                return "ERROR: There is no such as server.\n".into();
            }
            if target.ends_with(&format!(":{self_ctl}")) {
                st.ring_in = false;
                st.out_by_command = true;
            }
            "SUCCEED\n".into()
        }
        "MERGE" | "COMPMERGE" | "ABORTMERGE" => "SUCCEED\n".into(),
        _ => format!("Unknown command({})\n", cmd.trim()),
    }
}

fn serve(listener: TcpListener, state: Arc<Mutex<State>>, self_ctl: u16) {
    for conn in listener.incoming().flatten() {
        let state = state.clone();
        std::thread::spawn(move || {
            let mut conn = conn;
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).unwrap_or(0);
            let cmd = String::from_utf8_lossy(&buf[..n]).to_string();
            let _ = conn.write_all(answer(&cmd, &state, self_ctl).as_bytes());
        });
    }
}

fn load(path: &str, ctl: Option<u16>) -> Result<(Ini, u16, bool), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("could not read {path}: {e}"))?;
    let ini = parse(&text)?;
    let self_ctl = ini.self_ctlport(ctl).ok_or("no control port for self")?;
    if ini.self_server(self_ctl).is_some() {
        Ok((ini, self_ctl, false))
    } else if ini.self_slave(self_ctl).is_some() {
        Ok((ini, self_ctl, true))
    } else {
        Err(format!("could not find self (control port {self_ctl}) in {path}"))
    }
}

fn main() {
    signals(true);
    let f = flags();
    let (ini, self_ctl, slave) = load(&f.conf, f.ctlport).unwrap_or_else(|e| {
        eprintln!("[ERR] {e}");
        std::process::exit(1)
    });
    let automerge = ini.global.get("AUTOMERGE").is_some_and(|v| v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("yes"));
    let data = data_dir(&ini);
    let _ = std::fs::create_dir_all(&data);
    let _ = std::fs::write(data.join(format!("chmpx-{self_ctl}.state")), "started\n");
    let ctl = TcpListener::bind(("0.0.0.0", self_ctl)).unwrap_or_else(|e| {
        eprintln!("[ERR] could not listen on control port {self_ctl}: {e}");
        std::process::exit(1)
    });
    if !slave {
        let port = ini.self_server(self_ctl).and_then(|n| n.port).or_else(|| ini.global.get("PORT").and_then(|p| p.parse().ok()));
        if let Some(port) = port {
            match TcpListener::bind(("0.0.0.0", port)) {
                Ok(data) => {
                    std::thread::spawn(move || for c in data.incoming().flatten() { drop(c) });
                }
                Err(e) => {
                    eprintln!("[ERR] could not listen on port {port}: {e}");
                    std::process::exit(1)
                }
            }
        }
    }
    eprintln!("[MSG] chmpx stand-in up: control port {self_ctl}, {}", if slave { "slave" } else { "server" });
    let state = Arc::new(Mutex::new(State { ini, slave, ring_in: false, out_by_command: false, attached_since: None }));
    let s2 = state.clone();
    std::thread::spawn(move || serve(ctl, s2, self_ctl));
    let mtime = |p: &str| std::fs::metadata(p).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut seen = mtime(&f.conf);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = mtime(&f.conf);
        if now != seen {
            seen = now;
            match load(&f.conf, f.ctlport) {
                Ok((ini, _, _)) => {
                    eprintln!("[MSG] reloaded {} ({} servers)", f.conf, ini.servers.len());
                    state.lock().unwrap().ini = ini;
                }
                Err(e) => {
                    eprintln!("[ERR] reload failed, exiting: {e}");
                    std::process::exit(1);
                }
            }
        }
        let attached = k2hdkc_attached();
        let mut st = state.lock().unwrap();
        match (attached, st.attached_since) {
            (true, None) => st.attached_since = Some(Instant::now()),
            (false, Some(_)) => st.attached_since = None,
            _ => {}
        }
        if automerge && !st.slave && !st.ring_in && !st.out_by_command && st.attached_since.is_some_and(|t| t.elapsed() > Duration::from_millis(800)) {
            st.ring_in = true;
        }
    }
}
