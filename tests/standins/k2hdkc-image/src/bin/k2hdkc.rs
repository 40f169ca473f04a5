//! k2hdkc STAND-IN: checks its ini as k2hdkc does (parses, finds self,
//! `MQACK = no`), marks the data volume, then stays attached until a
//! signal. Its process name is what chmpx looks for.

use std::time::Duration;

use k2hdkc_standin::{data_dir, flags, parse, signals};

fn main() {
    signals(false);
    let f = flags();
    let text = std::fs::read_to_string(&f.conf).unwrap_or_else(|e| {
        eprintln!("[ERR] could not read {}: {e}", f.conf);
        std::process::exit(1)
    });
    let ini = parse(&text).unwrap_or_else(|e| {
        eprintln!("[ERR] {e}");
        std::process::exit(1)
    });
    let mqack = ini.global.get("MQACK").or_else(|| ini.k2hdkc.get("MQACK")).map(|v| v.to_ascii_lowercase());
    if mqack.as_deref() != Some("no") {
        eprintln!("[ERR] k2hdkc needs MQACK = no");
        std::process::exit(1);
    }
    let ctl = ini.self_ctlport(f.ctlport).unwrap_or(0);
    if ini.self_server(ctl).is_none() {
        eprintln!("[ERR] could not find self (control port {ctl})");
        std::process::exit(1);
    }
    let data = data_dir(&ini);
    let file = ini.k2hdkc.get("K2HFILE").cloned().unwrap_or_else(|| data.join("k2hdkc.k2h").display().to_string());
    let _ = std::fs::create_dir_all(&data);
    if !std::path::Path::new(&file).exists() {
        let _ = std::fs::write(&file, "k2hash stand-in data\n");
    }
    eprintln!("[MSG] k2hdkc stand-in attached (control port {ctl})");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
