//! Facts about the guest host that Trove asks for: filesystem stats of the
//! data volume, the agent's own diagnostics, and the hardware.

use std::path::Path;

use serde_json::{json, Value};

/// A fact the host could not give: what was read, and why not.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {cause}")]
pub struct FactError {
    /// What was asked ("read /proc/meminfo").
    pub what: String,
    /// Why it failed.
    pub cause: String,
}

fn fact_error(what: impl Into<String>, cause: impl std::fmt::Display) -> FactError {
    FactError {
        what: what.into(),
        cause: cause.to_string(),
    }
}

/// Trove's `utils.to_gb`: GiB rounded to 2 places, never 0.0 for a
/// non-zero size.
pub fn to_gb(bytes: u64) -> f64 {
    if bytes == 0 {
        return 0.0;
    }
    let gb = bytes as f64 / 1024f64.powi(3);
    ((gb * 100.0).round() / 100.0).max(0.01)
}

/// `get_filesystem_stats` for `mount_point`, with upstream's keys and
/// units (`guestagent_utils.get_filesystem_volume_stats`): block counts,
/// `total` and `used` in GiB, `free` in bytes, plus `mgr_extra_info`.
pub fn filesystem_stats(mount_point: &Path) -> Result<Value, FactError> {
    let st = nix::sys::statvfs::statvfs(mount_point).map_err(|e| {
        fact_error(
            format!("Filesystem not found ({})", mount_point.display()),
            e,
        )
    })?;
    // statvfs reports block counts in f_frsize units; Python's f_bsize
    // equals it on the filesystems Trove uses (ext4, xfs).
    let bsize = st.block_size() as u64;
    let total = st.blocks() as u64 * bsize;
    let free = st.blocks_free() as u64 * bsize;
    Ok(json!({
        "block_size": bsize,
        "total_blocks": st.blocks() as u64,
        "free_blocks": st.blocks_free() as u64,
        "avail_blocks": st.blocks_available() as u64,
        "total": to_gb(total),
        "free": free,
        "used": to_gb(total - free),
        "mgr_extra_info": {},
    }))
}

/// The value of a `Key:   123 kB` line of a /proc status-like file, in kB.
fn proc_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `get_diagnostics`: the agent's version and process figures, with the
/// keys Trove's diagnostics view reads (sizes in kB, as /proc gives them).
pub fn diagnostics() -> Result<Value, FactError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| fact_error("read /proc/self/status", e))?;
    let field = |k: &str| proc_field(&status, k).unwrap_or(0);
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "threads": field("Threads"),
        "fd_size": field("FDSize"),
        "vm_size": field("VmSize"),
        "vm_peak": field("VmPeak"),
        "vm_rss": field("VmRSS"),
        "vm_hwm": field("VmHWM"),
    }))
}

/// `get_hwinfo`: memory (kB) and CPU count, as Trove's hwinfo view reads.
pub fn hwinfo() -> Result<Value, FactError> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| fact_error("read /proc/meminfo", e))?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Ok(json!({"mem_total": proc_field(&meminfo, "MemTotal").unwrap_or(0), "num_cpus": cpus}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_gb_matches_trove() {
        assert_eq!(to_gb(0), 0.0);
        assert_eq!(to_gb(1), 0.01);
        assert_eq!(to_gb(1024 * 1024 * 1024), 1.0);
        assert_eq!(to_gb(1536 * 1024 * 1024), 1.5);
    }

    #[test]
    fn stats_of_a_real_directory_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let s = filesystem_stats(dir.path()).unwrap();
        let blocks = s["total_blocks"].as_u64().unwrap();
        let free = s["free_blocks"].as_u64().unwrap();
        assert!(blocks > 0 && free <= blocks);
        assert_eq!(
            s["free"].as_u64().unwrap(),
            free * s["block_size"].as_u64().unwrap()
        );
        assert!(s["mgr_extra_info"].is_object());
    }

    #[test]
    fn missing_mount_point_is_a_named_error() {
        let err = filesystem_stats(Path::new("/nonexistent/mount")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/mount"), "{err}");
    }

    #[test]
    fn diagnostics_read_proc() {
        let d = diagnostics().unwrap();
        assert!(d["vm_rss"].as_u64().unwrap() > 0);
        assert!(d["threads"].as_u64().unwrap() >= 1);
        assert_eq!(proc_field("VmRSS:\t  1234 kB\n", "VmRSS"), Some(1234));
        assert!(hwinfo().unwrap()["mem_total"].as_u64().unwrap() > 0);
    }
}
