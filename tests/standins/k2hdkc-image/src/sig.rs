//! Signals without a crate: glibc's `signal()` (BSD semantics, SA_RESTART)
//! with a handler that only records the signal. As PID 1 of a container a
//! process gets no default action for INT/HUP/TERM, so handlers are needed.

use std::sync::atomic::{AtomicI32, Ordering};

/// SIGHUP.
pub const SIGHUP: i32 = 1;
/// SIGINT.
pub const SIGINT: i32 = 2;
/// SIGTERM.
pub const SIGTERM: i32 = 15;

const SIG_IGN: usize = 1;

static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
}

extern "C" fn on_signal(signum: i32) {
    CAUGHT.store(signum, Ordering::SeqCst);
}

/// Records these signals instead of their default action.
pub fn catch(signals: &[i32]) {
    let handler: extern "C" fn(i32) = on_signal;
    for &s in signals {
        // SAFETY: installs a handler that only stores to an atomic.
        unsafe { signal(s, handler as usize) };
    }
}

/// Ignores a signal (chmpx blocks SIGTERM: `docker stop` without
/// `--signal SIGINT` then waits out its timeout).
pub fn ignore(signum: i32) {
    // SAFETY: SIG_IGN is a valid disposition.
    unsafe { signal(signum, SIG_IGN) };
}

/// The last signal caught, if any.
pub fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
