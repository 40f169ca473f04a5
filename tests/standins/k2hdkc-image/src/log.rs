//! Debug output to stderr at chmpx's levels (`-d silent|err|wan|msg|dump`,
//! or the `CHMDBGMODE` environment variable; silent by default, as chmpx).

use std::sync::atomic::{AtomicU8, Ordering};

/// Silent.
pub const SILENT: u8 = 0;
/// Errors.
pub const ERR: u8 = 1;
/// Warnings.
pub const WAN: u8 = 2;
/// Messages.
pub const MSG: u8 = 3;
/// Everything.
pub const DUMP: u8 = 4;

static LEVEL: AtomicU8 = AtomicU8::new(SILENT);

/// Parses a level name as chmpx does (case-insensitive).
pub fn parse_level(name: &str) -> Option<u8> {
    Some(match name.to_ascii_uppercase().as_str() {
        "SLT" | "SILENT" => SILENT,
        "ERR" | "ERROR" => ERR,
        "WAN" | "WARNING" => WAN,
        "MSG" | "MESSAGE" | "INFO" => MSG,
        "DUMP" => DUMP,
        _ => return None,
    })
}

/// Sets the level.
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// Whether messages of `level` are printed.
pub fn enabled(level: u8) -> bool {
    level != SILENT && level <= LEVEL.load(Ordering::Relaxed)
}

/// Prints one line at `level` to stderr.
pub fn print(level: u8, text: &str) {
    if enabled(level) {
        let tag = match level {
            ERR => "ERR",
            WAN => "WAN",
            MSG => "MSG",
            _ => "DMP",
        };
        eprintln!("{} [{tag}] {text}", crate::timefmt::now_utc());
    }
}

/// Logs an error.
#[macro_export]
macro_rules! err { ($($t:tt)*) => { $crate::log::print($crate::log::ERR, &format!($($t)*)) } }
/// Logs a warning.
#[macro_export]
macro_rules! wan { ($($t:tt)*) => { $crate::log::print($crate::log::WAN, &format!($($t)*)) } }
/// Logs a message.
#[macro_export]
macro_rules! msg { ($($t:tt)*) => { $crate::log::print($crate::log::MSG, &format!($($t)*)) } }
