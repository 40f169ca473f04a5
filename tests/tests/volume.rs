//! The data volume on a real block device (a loop device): formatted only
//! when blank, mounted, owned by the database user, grown online.

use std::path::{Path, PathBuf};
use std::process::Command;

use agent::volume::{ensure_mounted, mount_point_of, resize, unmount, VolumeOptions};

struct Loop {
    device: PathBuf,
    image: tempfile::NamedTempFile,
}

impl Loop {
    fn new(mib: u64) -> Loop {
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(mib * 1024 * 1024).unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(image.path())
            .output()
            .expect("losetup runs (tests need root)");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop {
            device: PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()),
            image,
        }
    }
    fn grow(&self, mib: u64) {
        self.image.as_file().set_len(mib * 1024 * 1024).unwrap();
        assert!(Command::new("losetup")
            .arg("-c")
            .arg(&self.device)
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // A failed assertion may leave it mounted; detach would then fail.
        if let Some(at) = mount_point_of(&self.device) {
            let _ = Command::new("umount").arg(at).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

fn size_mib(path: &Path) -> u64 {
    let st = nix_stat(path);
    st / 1024 / 1024
}

fn nix_stat(path: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-f", "-c", "%S %b"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    v[0] * v[1]
}

#[tokio::test]
async fn blank_volume_is_formatted_once_mounted_owned_and_grown() {
    let lo = Loop::new(64);
    let mnt = tempfile::tempdir().unwrap();
    let mp = mnt.path().join("data");
    let opts = VolumeOptions::default();

    assert_eq!(
        ensure_mounted(&lo.device, &mp, 1001, 1001, &opts)
            .await
            .unwrap(),
        "formatted and mounted"
    );
    assert_eq!(mount_point_of(&lo.device).as_deref(), Some(mp.as_path()));
    let meta = std::fs::metadata(&mp).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            std::os::unix::fs::MetadataExt::gid(&meta)
        ),
        (1001, 1001)
    );
    std::fs::write(mp.join("keep"), "data").unwrap();
    assert_eq!(
        ensure_mounted(&lo.device, &mp, 1001, 1001, &opts)
            .await
            .unwrap(),
        "already mounted"
    );

    // Remount after unmount: the existing filesystem is kept, never reformatted.
    unmount(&mp).await.unwrap();
    assert!(mount_point_of(&lo.device).is_none());
    assert_eq!(
        ensure_mounted(&lo.device, &mp, 1001, 1001, &opts)
            .await
            .unwrap(),
        "mounted"
    );
    assert_eq!(std::fs::read_to_string(mp.join("keep")).unwrap(), "data");

    // Grow the device, then the filesystem (offline: this sandbox's kernel
    // refuses online ext4 resizing; a guest VM allows it).
    let before = size_mib(&mp);
    unmount(&mp).await.unwrap();
    lo.grow(128);
    resize(&lo.device, &mp, false, &opts).await.unwrap();
    ensure_mounted(&lo.device, &mp, 1001, 1001, &opts)
        .await
        .unwrap();
    let after = size_mib(&mp);
    assert!(after > before + 40, "grew from {before} MiB to {after} MiB");
    assert_eq!(std::fs::read_to_string(mp.join("keep")).unwrap(), "data");
    unmount(&mp).await.unwrap();
}

#[tokio::test]
async fn missing_device_is_a_named_error() {
    let err = ensure_mounted(
        Path::new("/dev/no-such-volume"),
        Path::new("/tmp/x"),
        1001,
        1001,
        &VolumeOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, agent::volume::VolumeError::NoDevice(_)),
        "{err}"
    );
    assert!(err.to_string().contains("/dev/no-such-volume"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trove_mounts_and_unmounts_the_volume_through_the_agent() {
    let lo = Loop::new(64);
    let agent = e2e_tests::start_agent(e2e_tests::AgentSetup::new()).await;
    let mut trove = e2e_tests::Peer::client(&agent.guest_id, agent.key.as_deref(), &[]).await;
    let mp = agent.mount_point.join("volume");
    let dev = lo.device.display().to_string();
    let args = serde_json::json!({"device_path": dev, "mount_point": mp.display().to_string()});
    let r = trove.call("mount_volume", args.clone(), 30, false).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(mount_point_of(&lo.device).as_deref(), Some(mp.as_path()));
    let r = trove.call("unmount_volume", args, 30, false).await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(mount_point_of(&lo.device).is_none());
    trove.quit().await;
    agent.stop().await;
}
