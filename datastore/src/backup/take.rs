//! `create_backup` on a node: the k2hash archive taken inside the running
//! k2hdkc container, then streamed (tar → gzip → encryption) to the store.

use driver_api::host::ContainerState;
use driver_api::storage::SaveRequest;
use driver_api::{BackupAccess, BackupOutcome, DatastoreError};

use super::stream::{self, ChannelSource, ChunkWriter};
use driver_api::BackupInfo;

use super::{tool, Meta, ARCHIVE_NAME, FORMAT};
use crate::node::Node;

/// Trove's message for a backup with a parent.
pub const NO_INCREMENTAL: &str = "incremental backups are not supported for k2hdkc";

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Takes a full backup of `node` and stores it with `access`.
pub async fn take(
    node: &Node,
    info: &BackupInfo,
    access: BackupAccess<'_>,
) -> Result<BackupOutcome, DatastoreError> {
    if info.is_incremental() {
        return Err(DatastoreError::BadRequest(NO_INCREMENTAL.into()));
    }
    let s = node.settings();
    let server = s.server_container();
    ensure_running(node, &server).await?;
    let facts = node.ini_facts()?;
    let k2hfile = facts.k2hfile.clone().ok_or_else(|| {
        DatastoreError::failed("take the archive", "the ini names no [K2HDKC] K2HFILE")
    })?;
    let context = format!("back up to {}", info.id);
    let fail = |e: &dyn std::fmt::Display| DatastoreError::failed(&context, e);

    // The archive, in a private directory removed whatever happens.
    let work = tool::WorkDir::new(&s.data_dir, &format!(".backup-{}", info.id), s.uid, s.gid)
        .map_err(|e| fail(&format!("make the work directory: {e}")))?;
    let started = std::time::Instant::now();
    tool::run(
        node.containers().as_ref(),
        &server,
        &work,
        &k2hfile,
        &[],
        &format!("ar put {}", work.in_container(ARCHIVE_NAME)),
    )
    .await
    .map_err(|e| fail(&format!("take the archive: {e}")))?;
    let archive = work.host().join(ARCHIVE_NAME);
    let archive_bytes = std::fs::metadata(&archive)
        .map_err(|e| fail(&format!("the archive k2hlinetool should have written: {e}")))?
        .len();
    tracing::info!(backup = %info.id, archive_bytes, elapsed_ms = started.elapsed().as_millis() as u64, "archive taken");

    let meta = Meta {
        format: FORMAT,
        datastore: crate::MANAGER.into(),
        datastore_version: info.datastore_version.clone().unwrap_or_default(),
        backup_id: info.id.clone(),
        cluster_name: node.parameters().await.cluster_name,
        cuk: s.cuk.clone(),
        archive_bytes,
        created: super::now(),
    };
    let request = save_request(info, &access);

    // One stream: packed on a blocking thread, uploaded as it comes.
    let (tx, rx) = stream::channel();
    let key = access.encryption_key.map(|k| k.as_bytes().to_vec());
    let producer = tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter::new(tx);
        match stream::pack(&meta, &archive, key.as_deref(), &mut out) {
            Ok(_) => out.finish().map_err(|e| e.to_string()),
            Err(e) => {
                let why = format!("make the backup stream: {e}");
                out.fail(why.clone());
                Err(why)
            }
        }
    });
    let mut source = ChannelSource(rx);
    let saved = access.store.save(&request, &mut source).await;
    // The producer stops at its next chunk if the store gave up.
    drop(source);
    let packed = producer
        .await
        .map_err(|e| format!("the stream's thread failed: {e}"))
        .and_then(|r| r);
    drop(work);
    let stored = match (saved, packed) {
        (Ok(stored), Ok(())) => stored,
        (Err(e), _) => return Err(fail(&e)),
        (Ok(_), Err(p)) => return Err(fail(&p)),
    };
    tracing::info!(
        backup = %info.id,
        location = %stored.location,
        bytes = stored.bytes,
        segments = stored.segments,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "backup stored"
    );
    Ok(BackupOutcome {
        location: stored.location,
        checksum: Some(stored.checksum),
        size_gb: stored.bytes as f64 / GIB,
    })
}

/// A backup of a stopped k2hdkc would be empty: refused by name.
async fn ensure_running(node: &Node, server: &str) -> Result<(), DatastoreError> {
    match node.containers().state(server).await {
        Ok(ContainerState::Running { .. }) => Ok(()),
        Ok(other) => Err(DatastoreError::Conflict(format!(
            "k2hdkc is not running (its container is {other:?}): start the instance before backing it up"
        ))),
        Err(e) => Err(DatastoreError::failed("read the k2hdkc container's state", e)),
    }
}

/// Where and how the stream is stored: Trove's container (or the one the
/// backup names), the object named as Trove's strategies name it.
fn save_request(info: &BackupInfo, access: &BackupAccess<'_>) -> SaveRequest {
    SaveRequest {
        container: info
            .swift_container
            .clone()
            .unwrap_or_else(|| access.container.to_owned()),
        object: info.object_name(access.encryption_key.is_some()),
        segment_prefix: info.id.clone(),
        segment_size: access.segment_size,
        metadata: vec![
            ("datastore".into(), crate::MANAGER.into()),
            (
                "datastore-version".into(),
                info.datastore_version.clone().unwrap_or_default(),
            ),
        ],
    }
}
