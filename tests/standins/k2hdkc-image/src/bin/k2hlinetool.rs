//! k2hlinetool STAND-IN (tests only): `k2hlinetool -f <K2HFILE> -run
//! <cmdfile>` (or `-t <file>`, `-m`; commands from stdin without `-run`).
//!
//! Works on the stand-in K2HFILE format (`k2hfile.rs`), not k2hash's.
//! Commands, one a line (`#` comments): `set <key> <value>`, `print <key>`
//! (alias `p`), `rm <key>` (alias `del`), `ar put <archive>` (write an
//! archive of every key), `ar load <archive>` (load an archive's keys),
//! `exit` / `quit`. An unknown or failed command prints `ERROR: ...` and
//! makes the exit code 1 (the real tool is less strict), except `ar`,
//! which fails as the real one does (k2hlinetool 1.0.x, seen with a
//! missing and a damaged archive): `[ERR] Something error occurred during
//! loading archive file(<path>).` on stderr, and exit code 0; a caller
//! must read the output.

use std::io::BufRead;
use std::path::PathBuf;

use k2hdkc_standin::flags::Opts;
use k2hdkc_standin::k2hfile::{self, Data, AR_MAGIC};

fn run(line: &str, data: &mut Data, file: Option<&PathBuf>) -> Result<bool, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(first) = words.first() else { return Ok(true) };
    let save = |data: &Data| match file {
        Some(p) => k2hfile::store(p, data).map_err(|e| format!("could not write {}: {e}", p.display())),
        None => Ok(()),
    };
    match (first.to_ascii_lowercase().as_str(), &words[1..]) {
        ("exit" | "quit" | "q", _) => return Ok(false),
        ("set", [key, value @ ..]) => {
            data.insert((*key).to_owned(), value.join(" "));
            save(data)?;
        }
        ("print" | "p", [key]) => match data.get(*key) {
            Some(v) => println!("\"{key}\" => \"{v}\""),
            None => return Err(format!("\"{key}\" => not found")),
        },
        ("rm" | "del", [key]) => {
            data.remove(*key).ok_or_else(|| format!("\"{key}\" not found"))?;
            save(data)?;
        }
        ("ar" | "archive", ["put", archive, ..]) => {
            if std::fs::write(archive, k2hfile::render(AR_MAGIC, data)).is_err() {
                eprintln!("[ERR] Something error occurred during putting archive file({archive}).");
            }
        }
        ("ar" | "archive", ["load", archive, ..]) => {
            match std::fs::read_to_string(archive).map_err(|e| e.to_string()).and_then(|t| k2hfile::read(AR_MAGIC, &t)) {
                Ok(loaded) => {
                    data.extend(loaded);
                    save(data)?;
                }
                Err(_) => eprintln!("[ERR] Something error occurred during loading archive file({archive})."),
            }
        }
        _ => return Err(format!("unknown command or parameters: {line}")),
    }
    Ok(true)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opts = Opts::parse(args.into_iter().skip(1));
    if opts.has(&["h", "help"]) {
        println!("[STAND-IN of k2hlinetool, for tests]");
        println!("Usage: k2hlinetool [-f <file> | -t <file> | -m] [-run <command file>]");
        return;
    }
    let file = opts.get(&["f", "t"]).filter(|f| !f.is_empty()).map(PathBuf::from);
    if file.is_none() && !opts.has(&["m"]) {
        println!("ERROR: specify one of -f, -t or -m");
        std::process::exit(1);
    }
    let mut data = match &file {
        Some(p) => k2hfile::load(p).unwrap_or_else(|e| {
            println!("ERROR: could not attach k2hash {}: {e}", p.display());
            std::process::exit(1)
        }),
        None => Data::new(),
    };
    let lines: Vec<String> = match opts.get(&["run"]) {
        Some(cmdfile) => match std::fs::read_to_string(&cmdfile) {
            Ok(t) => t.lines().map(str::to_owned).collect(),
            Err(e) => {
                println!("ERROR: could not read command file {cmdfile}: {e}");
                std::process::exit(1);
            }
        },
        None => std::io::stdin().lock().lines().map_while(Result::ok).collect(),
    };
    let mut failed = false;
    for line in &lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match run(line, &mut data, file.as_ref()) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                println!("ERROR: {e}");
                failed = true;
            }
        }
    }
    if let Some(p) = &file {
        if data.is_empty() && !p.exists() {
            let _ = k2hfile::store(p, &data);
        }
    }
    std::process::exit(i32::from(failed));
}
