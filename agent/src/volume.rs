//! The data volume, as upstream's `trove/guestagent/volume.py` handles it:
//! format only when the device carries no filesystem, mount with the
//! configured type and options, chown to the database user, grow it.
//! Commands run as argument vectors with a time bound; every failure names
//! the command and what it printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

/// How the volume is formatted and mounted (`[DEFAULT] volume_fstype`,
/// `format_options`, `mount_options`, `volume_format_timeout`).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeOptions {
    /// `ext3`, `ext4` or `xfs`.
    pub fstype: String,
    /// Extra `mkfs` arguments (split on white space).
    pub format_options: String,
    /// `mount -o` options.
    pub mount_options: String,
    /// Bound on formatting.
    pub format_timeout: Duration,
}

impl Default for VolumeOptions {
    fn default() -> Self {
        Self {
            fstype: "ext4".into(),
            format_options: "-m 5".into(),
            mount_options: "defaults,noatime".into(),
            format_timeout: Duration::from_secs(120),
        }
    }
}

/// Bound on commands other than formatting.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

async fn run(argv: &[&str], limit: Duration) -> Result<(i32, String), String> {
    let out = tokio::time::timeout(
        limit,
        Command::new(argv[0])
            .args(&argv[1..])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("{} did not finish within {limit:?}", argv.join(" ")))?
    .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_owned();
    Ok((out.status.code().unwrap_or(-1), text))
}

async fn run_ok(argv: &[&str], limit: Duration) -> Result<String, String> {
    match run(argv, limit).await? {
        (0, text) => Ok(text),
        (code, text) => Err(format!("{} exited {code}: {text}", argv.join(" "))),
    }
}

/// Where `device` is mounted now, from /proc/self/mountinfo (matching the
/// device number, so `/dev/vdb` and a symlink to it agree).
pub fn mount_point_of(device: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(device).ok()?.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let wanted = format!("{major}:{minor}");
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&wanted.as_str()) && fields.get(3) == Some(&"/"))
                .then(|| PathBuf::from(fields[4]))
        })
}

/// Whether `device` carries a filesystem (blkid exits 2 when it finds none).
pub async fn has_filesystem(device: &Path) -> Result<bool, String> {
    let dev = device.to_string_lossy();
    match run(
        &["blkid", "-p", "-o", "value", "-s", "TYPE", &dev],
        COMMAND_TIMEOUT,
    )
    .await?
    {
        (0, text) => Ok(!text.is_empty()),
        (2, _) => Ok(false),
        (code, text) => Err(format!("blkid {dev} exited {code}: {text}")),
    }
}

/// Makes `device` mounted on `mount_point`, owned by `uid:gid`: formats it
/// only when it has no filesystem (never over data), mounts it unless it
/// already is. Returns what was done, for the log.
pub async fn ensure_mounted(
    device: &Path,
    mount_point: &Path,
    uid: u32,
    gid: u32,
    opts: &VolumeOptions,
) -> Result<&'static str, String> {
    if !device.exists() {
        return Err(format!("data volume {} does not exist", device.display()));
    }
    if let Some(at) = mount_point_of(device) {
        if at == mount_point {
            return Ok("already mounted");
        }
        return Err(format!(
            "{} is mounted on {}, not on {}",
            device.display(),
            at.display(),
            mount_point.display()
        ));
    }
    let dev = device.to_string_lossy().into_owned();
    let mut done = "mounted";
    if !has_filesystem(device).await? {
        let mut argv = vec!["mkfs", "--type", opts.fstype.as_str()];
        argv.extend(opts.format_options.split_whitespace());
        argv.push(&dev);
        run_ok(&argv, opts.format_timeout).await?;
        done = "formatted and mounted";
    }
    std::fs::create_dir_all(mount_point)
        .map_err(|e| format!("create {}: {e}", mount_point.display()))?;
    let mp = mount_point.to_string_lossy();
    run_ok(
        &[
            "mount",
            "-t",
            &opts.fstype,
            "-o",
            &opts.mount_options,
            &dev,
            &mp,
        ],
        COMMAND_TIMEOUT,
    )
    .await?;
    nix::unistd::chown(
        mount_point,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| format!("chown {} to {uid}:{gid}: {e}", mount_point.display()))?;
    Ok(done)
}

/// Unmounts `mount_point` if something is mounted there.
pub async fn unmount(mount_point: &Path) -> Result<(), String> {
    let mp = mount_point.to_string_lossy();
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            t.lines()
                .any(|l| l.split_whitespace().nth(4) == Some(mp.as_ref()))
        })
        .unwrap_or(false);
    if mounted {
        run_ok(&["umount", &mp], COMMAND_TIMEOUT).await?;
    }
    Ok(())
}

/// Grows the filesystem to the device's size: online while mounted (ext4
/// and xfs allow it), else checked first, as upstream does.
pub async fn resize(
    device: &Path,
    mount_point: &Path,
    online: bool,
    opts: &VolumeOptions,
) -> Result<(), String> {
    let dev = device.to_string_lossy().into_owned();
    if opts.fstype == "xfs" {
        let mp = mount_point.to_string_lossy();
        return run_ok(&["xfs_growfs", &mp], opts.format_timeout)
            .await
            .map(|_| ());
    }
    if !online {
        // e2fsck exits 1 when it corrected errors: not a failure.
        match run(&["e2fsck", "-f", "-p", &dev], opts.format_timeout).await? {
            (0 | 1, _) => {}
            (code, text) => return Err(format!("e2fsck -f -p {dev} exited {code}: {text}")),
        }
    }
    run_ok(&["resize2fs", &dev], opts.format_timeout)
        .await
        .map(|_| ())
}
