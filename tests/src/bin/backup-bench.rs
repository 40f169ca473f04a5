//! Backup and restore throughput and peak memory (`bash tests/bench/backup`).
//!
//! For each size (MiB) an archive of that size is made (lines of keys and
//! hex values, as k2hlinetool's archive of such keys compresses), then
//! timed, each phase with its own peak RSS (VmHWM, reset through
//! /proc/self/clear_refs before it):
//!
//! - floor: `tar -cf - k2hdkc.ar | gzip -1 >/dev/null`, and
//!   `gzip -dc | tar -x` for the restore side;
//! - the agent's stream alone: tar → gzip (→ AES) into a null store;
//! - the agent's backup to the real Swift (`TEST_SWIFT_ENV`, as tests/run
//!   writes it) and its restore from there, every segment checked.
//!
//! Usage: backup-bench SIZE_MIB... (default 100 1024).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use agent::config::Secret;
use agent::swift::SwiftStore;
use async_trait::async_trait;
use datastore::backup::stream::{self, ChannelSink, ChannelSource, ChunkReader, ChunkWriter};
use datastore::backup::{Meta, ARCHIVE_NAME, FORMAT};
use driver_api::storage::{ChunkSource, ObjectStore, SaveRequest, StoreError, Stored};
use e2e_tests::swift::SwiftEnv;

const MIB: f64 = 1024.0 * 1024.0;
const SEGMENT: u64 = 256 * 1024 * 1024;

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Writes `mib` MiB of `key-<i>\t<hex value>\n` lines (values 10 to 3,000
/// characters), streaming.
fn make_archive(path: &Path, mib: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let want = mib * 1024 * 1024;
    let mut written = 0u64;
    let mut i = 0u64;
    let hex = b"0123456789abcdef";
    let mut line = Vec::with_capacity(4096);
    while written < want {
        line.clear();
        line.extend_from_slice(format!("key-{i}\t").as_bytes());
        for _ in 0..[10, 200, 1500, 3000][(i % 4) as usize] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            line.push(hex[(x % 16) as usize]);
        }
        line.push(b'\n');
        let n = (line.len() as u64).min(want - written) as usize;
        out.write_all(&line[..n]).unwrap();
        written += n as u64;
        i += 1;
    }
    out.flush().unwrap();
}

fn meta(bytes: u64) -> Meta {
    Meta {
        format: FORMAT,
        datastore: "k2hdkc".into(),
        datastore_version: "bench".into(),
        backup_id: "bench".into(),
        cluster_name: None,
        cuk: "bench".into(),
        archive_bytes: bytes,
        created: 0,
    }
}

/// A store that counts and drops what it is given.
struct Null;

#[async_trait]
impl ObjectStore for Null {
    async fn save(
        &self,
        _req: &SaveRequest,
        body: &mut dyn ChunkSource,
    ) -> Result<Stored, StoreError> {
        let mut bytes = 0u64;
        while let Some(c) = body
            .next_chunk()
            .await
            .map_err(|e| StoreError::new("read", e))?
        {
            bytes += c.len() as u64;
        }
        Ok(Stored {
            location: String::new(),
            checksum: String::new(),
            bytes,
            segments: 0,
        })
    }
    async fn load(
        &self,
        _: &str,
        _: Option<&str>,
        _: &mut dyn driver_api::storage::ChunkSink,
    ) -> Result<u64, StoreError> {
        unreachable!()
    }
}

/// The agent's backup path: pack on a blocking thread, the store consumes.
async fn backup(
    store: &dyn ObjectStore,
    archive: &Path,
    key: Option<&str>,
    object: &str,
) -> Stored {
    let (tx, rx) = stream::channel();
    let size = std::fs::metadata(archive).unwrap().len();
    let (path, key) = (archive.to_path_buf(), key.map(|k| k.as_bytes().to_vec()));
    let producer = tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter::new(tx);
        stream::pack(&meta(size), &path, key.as_deref(), &mut w).unwrap();
        w.finish().unwrap();
    });
    let req = SaveRequest {
        container: "bench".into(),
        object: object.into(),
        segment_prefix: object.into(),
        segment_size: SEGMENT,
        metadata: vec![],
    };
    let stored = store.save(&req, &mut ChannelSource(rx)).await.unwrap();
    producer.await.unwrap();
    stored
}

/// The agent's restore path: the store feeds, unpack on a blocking thread.
async fn restore(store: &dyn ObjectStore, stored: &Stored, into: &Path) {
    let (tx, rx) = stream::channel();
    let dir = into.to_path_buf();
    let consumer =
        tokio::task::spawn_blocking(move || stream::unpack(ChunkReader::new(rx), None, &dir));
    let mut sink = ChannelSink(tx);
    store
        .load(&stored.location, Some(&stored.checksum), &mut sink)
        .await
        .unwrap();
    drop(sink);
    consumer.await.unwrap().unwrap();
}

fn run_pipeline(left: &mut Command, right: &mut Command) -> f64 {
    let t = Instant::now();
    let mut a = left.stdout(Stdio::piped()).spawn().unwrap();
    let mut b = right
        .stdin(a.stdout.take().unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    t.elapsed().as_secs_f64()
}

/// Bytes `tar | gzip LEVEL` makes of the archive in `dir`.
fn compressed_size(dir: &Path, level: &str) -> u64 {
    let mut tar = tar_of(dir).stdout(Stdio::piped()).spawn().unwrap();
    let mut gzip = Command::new("gzip")
        .arg(level)
        .stdin(tar.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let n = std::io::copy(&mut gzip.stdout.take().unwrap(), &mut std::io::sink()).unwrap();
    assert!(gzip.wait().unwrap().success() && tar.wait().unwrap().success());
    n
}

fn row(what: &str, mib: f64, secs: f64, rss: Option<f64>, note: &str) {
    let rss = rss.map(|r| format!("{r:.1}")).unwrap_or_else(|| "-".into());
    println!(
        "| {what} | {mib:.0} | {secs:.2} | {:.1} | {rss} | {note} |",
        mib / secs
    );
}

/// `tar -cf - -C DIR k2hdkc.ar`, its output not yet wired.
fn tar_of(dir: &Path) -> Command {
    let mut tar = Command::new("tar");
    tar.args(["-cf", "-", "-C"]).arg(dir).arg(ARCHIVE_NAME);
    tar
}

/// The backup side's floors: `tar | gzip -1` and `tar | gzip -6`.
fn backup_floors(dir: &Path, m: f64) {
    let secs = run_pipeline(&mut tar_of(dir), Command::new("gzip").arg("-1"));
    let gz1 = compressed_size(dir, "-1");
    row(
        "floor: tar, gzip -1",
        m,
        secs,
        None,
        &format!("{:.0}% of the archive", gz1 as f64 / (m * MIB) * 100.0),
    );
    let secs = run_pipeline(&mut tar_of(dir), Command::new("gzip").arg("-6"));
    row("floor: tar, gzip -6", m, secs, None, "");
}

/// The restore side's floor: the same gzip stream, read back by gzip and
/// tar.
fn restore_floor(dir: &Path, m: f64) {
    let gz = dir.join("floor.tar.gz");
    let mut tar = tar_of(dir).stdout(Stdio::piped()).spawn().unwrap();
    let status = Command::new("gzip")
        .arg("-1")
        .stdin(tar.stdout.take().unwrap())
        .stdout(std::fs::File::create(&gz).unwrap())
        .status()
        .unwrap();
    assert!(status.success() && tar.wait().unwrap().success());
    let floor_into = dir.join("floor");
    std::fs::create_dir_all(&floor_into).unwrap();
    let secs = run_pipeline(
        Command::new("gzip").arg("-dc").arg(&gz),
        Command::new("tar")
            .args(["-xf", "-", "-C"])
            .arg(&floor_into),
    );
    row("floor: gzip -dc, tar -x", m, secs, None, "");
}

/// A phase timed with its own peak RSS.
async fn timed<T>(phase: impl std::future::Future<Output = T>) -> (T, f64, f64) {
    reset_peak();
    let t = Instant::now();
    let out = phase.await;
    (out, t.elapsed().as_secs_f64(), peak_mib())
}

/// The agent's rows: its stream alone (plain and encrypted), its backup
/// to Swift and its restore from there. Returns the object stored.
async fn agent_rows(store: &SwiftStore, dir: &Path, mib: u64) -> String {
    let (archive, m) = (dir.join(ARCHIVE_NAME), mib as f64);
    let (s, secs, rss) = timed(backup(&Null, &archive, None, "null")).await;
    row(
        "agent stream (no store)",
        m,
        secs,
        Some(rss),
        &format!("{:.0}% of the archive", s.bytes as f64 / (m * MIB) * 100.0),
    );
    let (_, secs, rss) = timed(backup(&Null, &archive, Some("bench key"), "null")).await;
    row("agent stream + AES (no store)", m, secs, Some(rss), "");

    let object = format!("bench-{mib}-{}.gz", std::process::id());
    let (stored, secs, rss) = timed(backup(store, &archive, None, &object)).await;
    let note = format!("{} segments", stored.segments);
    row("agent backup to Swift", m, secs, Some(rss), &note);

    let into = dir.join("restored");
    std::fs::create_dir_all(&into).unwrap();
    let (_, secs, rss) = timed(restore(store, &stored, &into)).await;
    let note = "every segment's MD5 checked";
    row("agent restore from Swift", m, secs, Some(rss), note);
    assert_eq!(
        std::fs::metadata(into.join(ARCHIVE_NAME)).unwrap().len(),
        mib * 1024 * 1024
    );
    object
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("sizes in MiB"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1024]
    } else {
        sizes
    };
    let swift = SwiftEnv::load();
    let token = swift.token().await;
    let store = SwiftStore::new(&swift.account_url(), Secret::new(token.clone()), false).unwrap();
    let work = tempfile::Builder::new()
        .prefix("backup-bench")
        .tempdir_in("/var/tmp")
        .unwrap();
    println!("| step | MiB | s | MiB/s | peak RSS MiB | note |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for mib in sizes {
        let dir = work.path().join(format!("{mib}"));
        std::fs::create_dir_all(&dir).unwrap();
        make_archive(&dir.join(ARCHIVE_NAME), mib);
        backup_floors(&dir, mib as f64);
        let object = agent_rows(&store, &dir, mib).await;
        restore_floor(&dir, mib as f64);
        let _ = swift
            .delete_manifest(&format!("bench/{object}"), &token)
            .await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
