//! What a driver asks of object storage (Swift in a Trove cloud): store a
//! backup stream as segments plus a manifest, and read one back, checked.
//! The agent implements [`ObjectStore`] with the caller's token; a driver
//! only produces and consumes bytes, in bounded chunks, so no backup is
//! ever held whole in memory.

use async_trait::async_trait;

/// Where a backup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveRequest {
    /// Container (made if missing).
    pub container: String,
    /// The object's name (the manifest, e.g. `<backup id>.gz.enc`).
    pub object: String,
    /// The segments' prefix: segment `n` is `<prefix>_0000000n`.
    pub segment_prefix: String,
    /// The largest segment, in bytes.
    pub segment_size: u64,
    /// `X-Object-Meta-<name>` values for the manifest.
    pub metadata: Vec<(String, String)>,
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `<storage url>/<container>/<object>`, as Trove records it.
    pub location: String,
    /// The object's ETag, unquoted, as `HEAD` gives it (for a segmented
    /// object: the MD5 of its segments' MD5s, Swift's SLO ETag).
    pub checksum: String,
    /// Bytes stored.
    pub bytes: u64,
    /// Segments written.
    pub segments: u32,
}

/// An object storage failure. `context` says what was being done, `cause`
/// why (never a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{context}: {cause}")]
pub struct StoreError {
    /// What was being done ("upload segment 3 of backup b1").
    pub context: String,
    /// Why it failed.
    pub cause: String,
}

impl StoreError {
    /// A storage error.
    pub fn new(context: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        Self {
            context: context.into(),
            cause: cause.to_string(),
        }
    }
}

/// Why a backup stream between a driver and the store ended before its
/// end. The two sides run on different threads (the archive on a blocking
/// one), so the cause crosses as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The side making the bytes failed (archive, compression, cipher, or
    /// the store's read of a segment): why.
    #[error("{0}")]
    Failed(String),
    /// The other side went away before the end (what went, in words).
    #[error("{0}")]
    Stopped(&'static str),
}

/// The bytes of a backup as the driver produces them.
#[async_trait]
pub trait ChunkSource: Send {
    /// The next chunk; `Ok(None)` at the end. An error ends the upload
    /// (the store then removes what it wrote).
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StreamError>;
}

/// Where the bytes of a backup being read go.
#[async_trait]
pub trait ChunkSink: Send {
    /// Takes the next chunk (waits while the consumer is behind).
    async fn put_chunk(&mut self, chunk: Vec<u8>) -> Result<(), StreamError>;
}

/// Object storage, with the caller's credentials.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores `body` as segments of at most `segment_size` and a manifest
    /// over them, each segment's ETag checked against its MD5. On any
    /// failure nothing of it is left behind.
    async fn save(
        &self,
        request: &SaveRequest,
        body: &mut dyn ChunkSource,
    ) -> Result<Stored, StoreError>;

    /// Streams the object at `location` into `sink`, after checking that
    /// its ETag is `checksum` (when given); every segment is checked
    /// against the MD5 the manifest records for it. Returns the bytes read.
    async fn load(
        &self,
        location: &str,
        checksum: Option<&str>,
        sink: &mut dyn ChunkSink,
    ) -> Result<u64, StoreError>;
}

/// What a driver needs for backups besides the request: the store, with
/// the caller's token, and the agent's backup options.
#[derive(Clone, Copy)]
pub struct BackupAccess<'a> {
    /// Object storage with the caller's credentials.
    pub store: &'a dyn ObjectStore,
    /// `backup_swift_container`, when the request names none.
    pub container: &'a str,
    /// `backup_segment_max_size`.
    pub segment_size: u64,
    /// `backup_aes_cbc_key`: encrypt with it (and decrypt restores).
    pub encryption_key: Option<&'a str>,
}

impl std::fmt::Debug for BackupAccess<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupAccess")
            .field("container", &self.container)
            .field("segment_size", &self.segment_size)
            .field("encrypted", &self.encryption_key.is_some())
            .finish()
    }
}
