//! STAND-IN for the `antpickax/k2hdkc` server image, for tests only.
//!
//! The real image cannot be pulled where the tests run, so this crate
//! builds look-alikes of its programs (`chmpx`, `k2hdkc`, `k2hlinetool`)
//! as static binaries for an image `FROM scratch`. They follow the real
//! image's observable contract (CONTRACTS.md §6 and the public chmpx /
//! k2hdkc / k2hash sources): the same argv, ini format, control-port
//! protocol, status strings, signals and files. They implement none of the
//! real data path: no ring, no message queues, no key-value service.
//! Production code must never depend on this crate or its image.
//!
//! The modules hold everything testable without processes or sockets; the
//! binaries in `src/bin/` wire them to the outside world.

pub mod conf;
pub mod flags;
pub mod ini;
pub mod k2hfile;
pub mod log;
pub mod net;
pub mod node;
pub mod procs;
pub mod regex;
pub mod sig;
pub mod status;
pub mod timefmt;

/// The chmpx version the stand-in claims to be (the one CONTRACTS.md §6
/// was observed with).
pub const CHMPX_VERSION: &str = "1.0.111";
/// The k2hdkc version the stand-in claims to be.
pub const K2HDKC_VERSION: &str = "1.0.17";

/// Where chmpx keeps its shared-memory files (chmpx `ChmIMData::MakeFilePath`):
/// `/var/lib/antpickax` when it is a directory, else `/tmp`.
pub fn shm_base_dir() -> std::path::PathBuf {
    let base = std::path::Path::new("/var/lib/antpickax");
    if base.is_dir() {
        base.to_path_buf()
    } else {
        "/tmp".into()
    }
}

/// chmpx's shared-memory file for a group and self control port:
/// `<base>/<GROUP>-<ctlport>.chmpx` (`<GROUP>.chmpx` without a control
/// port). k2hdkc attaches to it, so both containers must see the same
/// `/var/lib/antpickax`.
pub fn shm_file(base: &std::path::Path, group: &str, ctlport: Option<u16>, ext: &str) -> std::path::PathBuf {
    match ctlport {
        Some(p) => base.join(format!("{group}-{p}.{ext}")),
        None => base.join(format!("{group}.{ext}")),
    }
}
