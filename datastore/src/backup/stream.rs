//! The backup stream: a tar of `backup.json` and the k2hash archive →
//! gzip → (optionally) openssl-compatible AES-256-CBC; and back. Both
//! directions are synchronous `Read`/`Write` pipelines that run on a
//! blocking thread and hand bytes to the async side through a bounded
//! channel of chunks ([`ChunkWriter`], [`ChunkReader`]), so memory stays
//! at a few chunks whatever the backup's size.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use async_trait::async_trait;
use driver_api::storage::{ChunkSink, ChunkSource, StreamError};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use tokio::sync::mpsc;

use super::crypt::{Decryptor, Encryptor};
use super::{Meta, ARCHIVE_NAME, META_NAME};

/// Bytes per chunk handed between the pipeline and the store.
pub const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the two sides.
pub const DEPTH: usize = 8;
/// Deflate level. zlib-rs's level 1 uses static Huffman codes only: on
/// k2hash archives of hex values it stored 85% of the input where
/// `gzip -1` stores 58%. Level 2 stored 54% (as `gzip -6`) at the speed of
/// `gzip -1` (67 vs 69 MiB/s on 50 MiB, this 2-core machine).
pub const GZIP_LEVEL: u32 = 2;
/// The largest `backup.json` read back.
const META_MAX: u64 = 64 * 1024;

/// What passes through the channel: bytes, or why the producer stopped.
pub type Chunk = Result<Vec<u8>, StreamError>;

/// A bounded channel for the stream.
pub fn channel() -> (mpsc::Sender<Chunk>, mpsc::Receiver<Chunk>) {
    mpsc::channel(DEPTH)
}

/// Writes the backup stream of `meta` and the archive at `archive` to
/// `out`, encrypted with `key` when given. Returns the archive's size.
pub fn pack(meta: &Meta, archive: &Path, key: Option<&[u8]>, out: impl Write) -> io::Result<u64> {
    match key {
        Some(k) => {
            let enc = Encryptor::new(k, out)?;
            let (size, enc) = tar_gz(meta, archive, enc)?;
            enc.finish()?;
            Ok(size)
        }
        None => {
            let (size, mut out) = tar_gz(meta, archive, out)?;
            out.flush()?;
            Ok(size)
        }
    }
}

fn tar_gz<W: Write>(meta: &Meta, archive: &Path, out: W) -> io::Result<(u64, W)> {
    let gz = GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
    let mut tar = tar::Builder::new(gz);
    let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    tar.append_data(&mut header(json.len() as u64), META_NAME, json.as_slice())?;
    let file = File::open(archive)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", archive.display())))?;
    let size = file.metadata()?.len();
    tar.append_data(&mut header(size), ARCHIVE_NAME, file)?;
    let gz = tar.into_inner()?;
    Ok((size, gz.finish()?))
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Why a stream could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Not what this agent writes, or damaged.
    #[error("{0}")]
    Format(String),
    /// Reading the stream or writing the archive failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads a backup stream from `input` (decrypting with `key` when given),
/// checks its `backup.json`, writes the archive to `dir/k2hdkc.ar` and
/// returns the metadata. The stream is read to its end, so gzip's CRC and
/// the cipher's padding are checked before this returns `Ok`.
pub fn unpack(input: impl Read, key: Option<&[u8]>, dir: &Path) -> Result<Meta, UnpackError> {
    match key {
        Some(k) => untar(GzDecoder::new(DecryptReader::new(input, k)), dir, true),
        None => untar(GzDecoder::new(input), dir, false),
    }
}

fn untar<R: Read>(gz: GzDecoder<R>, dir: &Path, encrypted: bool) -> Result<Meta, UnpackError> {
    let format = |e: io::Error, what: &str| -> UnpackError {
        if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::InvalidInput {
            let hint = if encrypted {
                " (wrong backup_aes_cbc_key, or not an encrypted backup?)"
            } else {
                " (an encrypted backup, and backup_aes_cbc_key is not set?)"
            };
            UnpackError::Format(format!("{what}: {e}{hint}"))
        } else {
            UnpackError::Io(e)
        }
    };
    let mut tar = tar::Archive::new(gz);
    let mut meta: Option<Meta> = None;
    let mut archive_written = false;
    {
        let entries = tar
            .entries()
            .map_err(|e| format(e, "read the backup stream"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format(e, "read the backup stream"))?;
            let name = entry
                .path()
                .map_err(|e| format(e, "read an entry's name"))?
                .to_string_lossy()
                .into_owned();
            match (name.as_str(), &meta) {
                (META_NAME, None) => {
                    let mut text = Vec::new();
                    (&mut entry)
                        .take(META_MAX)
                        .read_to_end(&mut text)
                        .map_err(|e| format(e, "read backup.json"))?;
                    let m: Meta = serde_json::from_slice(&text).map_err(|e| {
                        UnpackError::Format(format!("backup.json is not valid: {e}"))
                    })?;
                    m.check()
                        .map_err(|e| UnpackError::Format(e.to_string()))?;
                    meta = Some(m);
                }
                (ARCHIVE_NAME, Some(_)) if !archive_written => {
                    let path = dir.join(ARCHIVE_NAME);
                    let mut out = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|e| {
                            UnpackError::Io(io::Error::new(
                                e.kind(),
                                format!("create {}: {e}", path.display()),
                            ))
                        })?;
                    io::copy(&mut entry, &mut out)
                        .map_err(|e| format(e, "read the archive from the stream"))?;
                    out.sync_all()?;
                    archive_written = true;
                }
                _ => {
                    return Err(UnpackError::Format(format!(
                        "unexpected entry {name:?} in the backup (a k2hdkc backup holds {META_NAME} then {ARCHIVE_NAME})"
                    )))
                }
            }
        }
    }
    // The rest of the gzip stream (tar's zero blocks, gzip's CRC and
    // length), then the input to its end (the cipher's padding, and a
    // store's verdict on the last segment) are read, and so checked.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| format(e, "read the end of the stream"))?;
    io::copy(&mut rest.into_inner(), &mut io::sink())
        .map_err(|e| format(e, "read the end of the stream"))?;
    match (meta, archive_written) {
        (Some(m), true) => Ok(m),
        (None, _) => Err(UnpackError::Format(format!(
            "the backup has no {META_NAME}: not a k2hdkc backup"
        ))),
        (Some(_), false) => Err(UnpackError::Format(format!(
            "the backup has no {ARCHIVE_NAME}: it is incomplete"
        ))),
    }
}

/// Decrypts as it is read (the [`Decryptor`] is a `Write` adapter; its
/// output is drained from a small buffer).
pub struct DecryptReader<R: Read> {
    input: R,
    dec: Option<Decryptor<Vec<u8>>>,
    out: Vec<u8>,
    at: usize,
    done: bool,
}

impl<R: Read> DecryptReader<R> {
    /// Decrypts `input` with `pass`.
    pub fn new(input: R, pass: &[u8]) -> Self {
        Self {
            input,
            dec: Some(Decryptor::new(pass, Vec::with_capacity(CHUNK + 32))),
            out: Vec::new(),
            at: 0,
            done: false,
        }
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.at < self.out.len() {
                let n = buf.len().min(self.out.len() - self.at);
                buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            self.out.clear();
            self.at = 0;
            let mut chunk = vec![0u8; CHUNK];
            let n = self.input.read(&mut chunk)?;
            let dec = self.dec.as_mut().expect("present until done");
            if n == 0 {
                let dec = self.dec.take().expect("present until done");
                self.out = dec.finish()?;
                self.done = true;
            } else {
                dec.write_all(&chunk[..n])?;
                std::mem::swap(&mut self.out, dec.get_mut());
            }
        }
    }
}

/// The blocking side of the upload: gathers writes into chunks and sends
/// them, waiting while the store is behind.
pub struct ChunkWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    /// Sends into `tx`.
    pub fn new(tx: mpsc::Sender<Chunk>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Sends what is left and the end of the stream (an empty chunk): a
    /// producer that dies without it never looks like a complete backup.
    pub fn finish(mut self) -> io::Result<()> {
        self.send()?;
        self.tx
            .blocking_send(Ok(Vec::new()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Tells the store the stream failed, so it removes what it wrote.
    pub fn fail(self, why: String) {
        let _ = self.tx.blocking_send(Err(StreamError::Failed(why)));
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The async side of the upload. The stream ends with an empty chunk
/// ([`ChunkWriter::finish`]); a channel closed before it is a failure.
pub struct ChannelSource(pub mpsc::Receiver<Chunk>);

#[async_trait]
impl ChunkSource for ChannelSource {
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        match self.0.recv().await {
            Some(Ok(c)) if c.is_empty() => Ok(None),
            Some(Ok(c)) => Ok(Some(c)),
            Some(Err(why)) => Err(why),
            None => Err(StreamError::Stopped(
                "the backup stream stopped before its end",
            )),
        }
    }
}

/// The async side of the download.
pub struct ChannelSink(pub mpsc::Sender<Chunk>);

#[async_trait]
impl ChunkSink for ChannelSink {
    async fn put_chunk(&mut self, chunk: Vec<u8>) -> Result<(), StreamError> {
        self.0
            .send(Ok(chunk))
            .await
            .map_err(|_| StreamError::Stopped("the restore stopped reading"))
    }
}

/// The blocking side of the download: a `Read` over the chunks. An `Err`
/// chunk (the store found a bad segment) is a read error; the end of the
/// channel is the end of the stream.
pub struct ChunkReader {
    rx: mpsc::Receiver<Chunk>,
    cur: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    /// Reads from `rx`.
    pub fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        Self {
            rx,
            cur: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.cur.len() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => {
                    self.cur = c;
                    self.at = 0;
                }
                Some(Err(why)) => return Err(io::Error::other(why)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.at);
        buf[..n].copy_from_slice(&self.cur[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::crypt::tests::{openssl, PASS};
    use crate::backup::FORMAT;

    fn meta(bytes: u64) -> Meta {
        Meta {
            format: FORMAT,
            datastore: "k2hdkc".into(),
            datastore_version: "1.0.17".into(),
            backup_id: "b1".into(),
            cluster_name: Some("c".into()),
            cuk: "cuk-1".into(),
            archive_bytes: bytes,
            created: 1,
        }
    }

    /// An archive of `size` bytes of mixed data, and its directory.
    fn archive(size: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.ar");
        let data: Vec<u8> = (0..size).map(|i| ((i * 31) ^ (i >> 7)) as u8).collect();
        std::fs::write(&path, data).unwrap();
        (dir, path)
    }

    fn packed(size: usize, key: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
        let (_d, path) = archive(size);
        let mut out = Vec::new();
        pack(&meta(size as u64), &path, key, &mut out).unwrap();
        (out, std::fs::read(&path).unwrap())
    }

    #[test]
    fn round_trips_plain_and_encrypted() {
        for key in [None, Some(PASS)] {
            let (stream, original) = packed(300_001, key);
            let into = tempfile::tempdir().unwrap();
            let m = unpack(stream.as_slice(), key, into.path()).unwrap();
            assert_eq!(m, meta(300_001));
            assert_eq!(
                std::fs::read(into.path().join(ARCHIVE_NAME)).unwrap(),
                original
            );
        }
    }

    #[test]
    fn openssl_then_tar_read_what_we_store() {
        let (stream, original) = packed(100_000, Some(PASS));
        assert_ne!(&stream[..2], &[0x1f, 0x8b], "encrypted bytes are not gzip");
        let out = openssl(true, &stream);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            &out.stdout[..2],
            &[0x1f, 0x8b],
            "openssl gives back the gzip"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.gz"), &out.stdout).unwrap();
        let tar = std::process::Command::new("tar")
            .args(["-xzf", "b.gz"])
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(tar.success());
        assert_eq!(
            std::fs::read(dir.path().join(ARCHIVE_NAME)).unwrap(),
            original
        );
        let m: Meta =
            serde_json::from_slice(&std::fs::read(dir.path().join(META_NAME)).unwrap()).unwrap();
        assert_eq!(m.cuk, "cuk-1");
    }

    #[test]
    fn a_wrong_key_a_missing_key_and_a_truncated_stream_are_refused() {
        let (stream, _) = packed(50_000, Some(PASS));
        let into = tempfile::tempdir().unwrap();
        let e = unpack(stream.as_slice(), Some(b"not the key"), into.path()).unwrap_err();
        assert!(e.to_string().contains("wrong backup_aes_cbc_key"), "{e}");
        let into = tempfile::tempdir().unwrap();
        let e = unpack(stream.as_slice(), None, into.path()).unwrap_err();
        assert!(
            e.to_string().contains("backup_aes_cbc_key is not set"),
            "{e}"
        );
        for cut in [stream.len() - 1, stream.len() - 16, stream.len() / 2] {
            let into = tempfile::tempdir().unwrap();
            assert!(
                unpack(&stream[..cut], Some(PASS), into.path()).is_err(),
                "cut at {cut}"
            );
        }
        let (plain, _) = packed(50_000, None);
        let into = tempfile::tempdir().unwrap();
        assert!(unpack(&plain[..plain.len() - 4], None, into.path()).is_err());
    }

    #[test]
    fn a_stream_of_another_kind_is_refused_by_name() {
        // A tar.gz without backup.json first.
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        {
            let mut t = tar::Builder::new(&mut gz);
            t.append_data(&mut header(3), "etc/passwd", &b"abc"[..])
                .unwrap();
            t.finish().unwrap();
        }
        let bytes = gz.finish().unwrap();
        let into = tempfile::tempdir().unwrap();
        let e = unpack(bytes.as_slice(), None, into.path()).unwrap_err();
        assert!(
            e.to_string().contains("unexpected entry \"etc/passwd\""),
            "{e}"
        );
        assert!(!into.path().join("etc").exists());
    }

    #[test]
    fn the_channels_carry_a_stream_and_its_end() {
        let (tx, mut rx) = channel();
        let t = std::thread::spawn(move || {
            let mut w = ChunkWriter::new(tx);
            w.write_all(&vec![7u8; CHUNK * 2 + 5]).unwrap();
            w.finish().unwrap();
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let mut src = ChannelSource(std::mem::replace(&mut rx, mpsc::channel(1).1));
            let mut all = Vec::new();
            while let Some(c) = src.next_chunk().await.unwrap() {
                all.extend(c);
            }
            all
        });
        t.join().unwrap();
        assert_eq!(got.len(), CHUNK * 2 + 5);
        // A producer that stops without finishing is not an end.
        let (tx, rx) = channel();
        drop(ChunkWriter::new(tx));
        let mut src = ChannelSource(rx);
        assert!(rt.block_on(src.next_chunk()).is_err());
    }
}
