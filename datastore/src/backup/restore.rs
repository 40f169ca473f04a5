//! A restore in `prepare`: the backup read from the store (its checksum
//! checked first, every segment checked as it arrives), decrypted,
//! unpacked into a private directory, checked (`backup.json`), then
//! `ar load`ed into the K2HFILE with k2hlinetool in the chmpx container,
//! before k2hdkc opens the file. Any failure fails prepare with its cause.

use driver_api::host::Containers;
use driver_api::{BackupAccess, DatastoreError};

use super::stream::{self, ChannelSink, ChunkReader};
use driver_api::BackupInfo;

use super::{tool, ARCHIVE_NAME};
use crate::ini::{self, IniFacts};
use crate::paths::CONTAINER_DATA_DIR;
use crate::settings::Settings;

/// Kept in the node's state directory once a backup is loaded, so a
/// prepare run again after a restart does not load it twice.
const RESTORED: &str = "restored-backup";

/// Restores `info` into the K2HFILE of the node `s` describes, with
/// k2hlinetool in its chmpx container (running; k2hdkc not yet).
pub async fn restore(
    s: &Settings,
    containers: &dyn Containers,
    info: &BackupInfo,
    access: BackupAccess<'_>,
    facts: &IniFacts,
) -> Result<(), DatastoreError> {
    let context = format!("restore backup {}", info.id);
    let fail = |e: &dyn std::fmt::Display| DatastoreError::failed(&context, e);
    let marker = s.state_dir.join(RESTORED);
    if std::fs::read_to_string(&marker).is_ok_and(|id| id.trim() == info.id) {
        tracing::info!(backup = %info.id, "backup already restored on this node");
        return Ok(());
    }
    let location = info
        .location()
        .ok_or_else(|| fail(&"backup_info has no location"))?;
    let checksum = info
        .checksum()
        .ok_or_else(|| fail(&"backup_info has no checksum to check the backup against"))?;
    let k2hfile = facts
        .k2hfile
        .as_deref()
        .ok_or_else(|| fail(&"the ini names no [K2HDKC] K2HFILE"))?;
    if location.ends_with(".enc") && access.encryption_key.is_none() {
        return Err(fail(
            &"the backup is encrypted and backup_aes_cbc_key is not set on this guest",
        ));
    }
    let started = std::time::Instant::now();
    let work = tool::WorkDir::new(&s.data_dir, &format!(".restore-{}", info.id), s.uid, s.gid)
        .map_err(|e| fail(&format!("make the work directory: {e}")))?;

    // Read and unpack as one stream; the archive lands in `work`.
    let (tx, rx) = stream::channel();
    let key = access.encryption_key.map(|k| k.as_bytes().to_vec());
    let dir = work.host().to_path_buf();
    let consumer = tokio::task::spawn_blocking(move || {
        stream::unpack(ChunkReader::new(rx), key.as_deref(), &dir)
    });
    let mut sink = ChannelSink(tx);
    let loaded = access.store.load(location, Some(checksum), &mut sink).await;
    if let Err(e) = &loaded {
        // The reader must fail, not see a clean end.
        let _ = sink
            .0
            .send(Err(driver_api::storage::StreamError::Failed(e.to_string())))
            .await;
    }
    drop(sink);
    let unpacked = consumer
        .await
        .map_err(|e| fail(&format!("the stream's thread failed: {e}")))?;
    let bytes = loaded.map_err(|e| fail(&e))?;
    let meta = unpacked.map_err(|e| fail(&e))?;
    tracing::info!(backup = %info.id, bytes, archive_bytes = meta.archive_bytes,
        from_cuk = %meta.cuk, taken = meta.created, "backup read and checked");

    // A K2HFILE here can only be a restore that was interrupted: this is
    // a new instance. Loading onto it could double what it holds.
    if let Some(host) = ini::host_path(
        std::path::Path::new(k2hfile),
        std::path::Path::new(CONTAINER_DATA_DIR),
        &s.data_dir,
    ) {
        if host.exists() {
            tracing::warn!(k2hfile = %host.display(), "replacing the K2HFILE an interrupted restore left");
            std::fs::remove_file(&host)
                .map_err(|e| fail(&format!("remove {}: {e}", host.display())))?;
        }
    }
    tool::run(
        containers,
        &s.chmpx_container(),
        &work,
        k2hfile,
        &facts.k2h_layout,
        &format!("ar load {}", work.in_container(ARCHIVE_NAME)),
    )
    .await
    .map_err(|e| fail(&format!("load the archive: {e}")))?;
    drop(work);
    if let Err(e) = std::fs::write(&marker, &info.id) {
        tracing::warn!(error = %e, "could not record the restore; a prepare run again would load it again");
    }
    tracing::info!(backup = %info.id, elapsed_ms = started.elapsed().as_millis() as u64, "backup restored");
    Ok(())
}
