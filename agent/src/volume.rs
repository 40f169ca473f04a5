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

/// Why the volume is not as asked, naming the command and what it printed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A command ran past its bound (and was killed).
    #[error("{command} did not finish within {limit:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// Its bound.
        limit: Duration,
    },
    /// A command could not be started.
    #[error("cannot run {program}: {cause}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        cause: std::io::Error,
    },
    /// A command failed.
    #[error("{command} exited {code}: {output}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit code (-1 for a signal).
        code: i32,
        /// What it printed.
        output: String,
    },
    /// No such device.
    #[error("data volume {0} does not exist")]
    NoDevice(PathBuf),
    /// Mounted, but not where asked: left alone.
    #[error("{device} is mounted on {at}, not on {want}")]
    MountedElsewhere {
        /// The device.
        device: PathBuf,
        /// Where it is mounted.
        at: PathBuf,
        /// Where it was asked to be.
        want: PathBuf,
    },
    /// A local file operation.
    #[error("{what} {path}: {cause}")]
    Io {
        /// The operation.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        cause: String,
    },
}

impl VolumeError {
    pub(crate) fn io(what: &'static str, path: &Path, cause: impl std::fmt::Display) -> Self {
        VolumeError::Io {
            what,
            path: path.to_path_buf(),
            cause: cause.to_string(),
        }
    }
}

async fn run(argv: &[&str], limit: Duration) -> Result<(i32, String), VolumeError> {
    let out = tokio::time::timeout(
        limit,
        Command::new(argv[0])
            .args(&argv[1..])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| VolumeError::Timeout {
        command: argv.join(" "),
        limit,
    })?
    .map_err(|cause| VolumeError::Spawn {
        program: argv[0].to_owned(),
        cause,
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_owned();
    Ok((out.status.code().unwrap_or(-1), text))
}

async fn run_ok(argv: &[&str], limit: Duration) -> Result<String, VolumeError> {
    match run(argv, limit).await? {
        (0, text) => Ok(text),
        (code, output) => Err(VolumeError::Failed {
            command: argv.join(" "),
            code,
            output,
        }),
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
pub async fn has_filesystem(device: &Path) -> Result<bool, VolumeError> {
    let dev = device.to_string_lossy();
    let argv = ["blkid", "-p", "-o", "value", "-s", "TYPE", &dev];
    match run(&argv, COMMAND_TIMEOUT).await? {
        (0, text) => Ok(!text.is_empty()),
        (2, _) => Ok(false),
        (code, output) => Err(VolumeError::Failed {
            command: argv.join(" "),
            code,
            output,
        }),
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
) -> Result<&'static str, VolumeError> {
    if !device.exists() {
        return Err(VolumeError::NoDevice(device.to_path_buf()));
    }
    if let Some(at) = mount_point_of(device) {
        if at == mount_point {
            return Ok("already mounted");
        }
        return Err(VolumeError::MountedElsewhere {
            device: device.to_path_buf(),
            at,
            want: mount_point.to_path_buf(),
        });
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
    std::fs::create_dir_all(mount_point).map_err(|e| VolumeError::io("create", mount_point, e))?;
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
    .map_err(|e| VolumeError::io("chown", mount_point, format!("to {uid}:{gid}: {e}")))?;
    Ok(done)
}

/// Unmounts `mount_point` if something is mounted there.
pub async fn unmount(mount_point: &Path) -> Result<(), VolumeError> {
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
) -> Result<(), VolumeError> {
    let dev = device.to_string_lossy().into_owned();
    if opts.fstype == "xfs" {
        let mp = mount_point.to_string_lossy();
        return run_ok(&["xfs_growfs", &mp], opts.format_timeout)
            .await
            .map(|_| ());
    }
    if !online {
        // e2fsck exits 1 when it corrected errors: not a failure.
        let argv = ["e2fsck", "-f", "-p", &dev];
        match run(&argv, opts.format_timeout).await? {
            (0 | 1, _) => {}
            (code, output) => {
                return Err(VolumeError::Failed {
                    command: argv.join(" "),
                    code,
                    output,
                })
            }
        }
    }
    run_ok(&["resize2fs", &dev], opts.format_timeout)
        .await
        .map(|_| ())
}
