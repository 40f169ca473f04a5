//! Processes in this PID namespace, through `/proc` (chmpx and k2hdkc check
//! each other there; in two containers that needs `--pid container:<chmpx>`).

/// A process: pid and argv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    /// Pid.
    pub pid: u32,
    /// Command line.
    pub argv: Vec<String>,
}

/// Processes whose name (`/proc/<pid>/comm`) is `name`, except this one.
pub fn named(name: &str) -> Vec<Proc> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name))
        .map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Proc { pid, argv }
        })
        .collect()
}

/// The value of a chmpx-style option (`-ctlport 8021`, case-insensitive,
/// with the aliases chmpx accepts).
pub fn option<'a>(argv: &'a [String], names: &[&str]) -> Option<&'a str> {
    argv.iter()
        .position(|a| a.strip_prefix('-').is_some_and(|n| names.iter().any(|w| n.eq_ignore_ascii_case(w))))
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

/// Whether a process started with this argv serves control port `ctlport`:
/// its `-ctlport` names it, or it has none (then its ini decides; the
/// stand-in accepts it).
pub fn serves_ctlport(argv: &[String], ctlport: u16) -> bool {
    match option(argv, &["ctlport", "cntlport", "cntrlport"]) {
        Some(p) => p.parse::<u16>().ok() == Some(ctlport),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let argv: Vec<String> = ["k2hdkc", "-conf", "/etc/antpickax/k2hdkc.ini", "-CtlPort", "8021", "-d", "err"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(option(&argv, &["conf"]), Some("/etc/antpickax/k2hdkc.ini"));
        assert!(serves_ctlport(&argv, 8021));
        assert!(!serves_ctlport(&argv, 8023));
        assert!(serves_ctlport(&argv[..3], 8023));
        assert!(named("no-such-process-name").is_empty());
    }
}
