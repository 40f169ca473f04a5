//! Swift, as Trove's backups use it: the storage URL the control plane
//! found in the caller's catalog (`backup_info.swift_url`) and the caller's
//! token from the RPC context. Backups are Static Large Objects: segments
//! `<id>_00000001`... in the backup's container, each streamed with chunked
//! transfer encoding and its ETag checked against its MD5, then a manifest
//! over them; Trove's own `backup delete` removes them all with
//! `?multipart-manifest=delete`.

use std::time::Duration;

use async_trait::async_trait;
use driver_api::storage::{ChunkSink, ChunkSource, ObjectStore, SaveRequest, StoreError, Stored};
use futures_util::StreamExt;
use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::Secret;

mod cleanup;
mod objects;

/// Bound on one request that moves no body (HEAD, container PUT, DELETE,
/// the manifest).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on Swift taking the next chunk of a segment, or giving the next
/// chunk of a download: a stalled transfer fails, it does not hang.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on Swift answering once a segment's body is sent (it fsyncs).
const SEGMENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// Chunks queued towards one segment PUT.
const SEGMENT_DEPTH: usize = 4;

/// Swift with one caller's token.
pub struct SwiftStore {
    http: reqwest::Client,
    /// The account's storage URL (`.../v1/AUTH_<project>`).
    url: String,
    token: Secret,
}

impl SwiftStore {
    /// A store at `url` (`backup_info.swift_url`) with `token`;
    /// `insecure` skips TLS verification (`swift_api_insecure`).
    pub fn new(url: &str, token: Secret, insecure: bool) -> Result<Self, StoreError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .danger_accept_invalid_certs(insecure)
            .build()
            .map_err(|e| StoreError::new("make the Swift client", e))?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn object_url(&self, container: &str, object: &str) -> String {
        format!("{}/{}/{}", self.url, enc(container), enc(object))
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header("X-Auth-Token", self.token.expose())
    }

    /// A request that moves no body, bounded.
    async fn simple(
        &self,
        method: Method,
        url: &str,
        what: &str,
    ) -> Result<reqwest::Response, StoreError> {
        self.request(method, url)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| StoreError::new(what, without_url(e)))
    }

    async fn ensure_container(&self, container: &str) -> Result<(), StoreError> {
        let what = format!("create the Swift container {container}");
        let r = self
            .simple(
                Method::PUT,
                &format!("{}/{}", self.url, enc(container)),
                &what,
            )
            .await?;
        expect(r, &what, &[StatusCode::CREATED, StatusCode::ACCEPTED]).await?;
        Ok(())
    }

    /// Streams one segment from `body` (and the chunk left over from the
    /// previous one) until `limit` bytes or the end. `None` when the
    /// stream had nothing more.
    async fn put_segment(
        &self,
        url: &str,
        name: &str,
        limit: u64,
        carry: &mut Option<Vec<u8>>,
        body: &mut dyn ChunkSource,
        ended: &mut bool,
    ) -> Result<Option<(String, u64)>, StoreError> {
        let what = format!("upload segment {name}");
        // The first bytes first: an empty stream makes no segment.
        let first = match carry.take() {
            Some(c) => c,
            None => match body.next_chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => {
                    *ended = true;
                    return Ok(None);
                }
                Err(why) => return Err(StoreError::new(&what, why)),
            },
        };
        let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(SEGMENT_DEPTH);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let put = tokio::spawn(
            self.request(Method::PUT, url)
                .body(reqwest::Body::wrap_stream(stream))
                .send(),
        );
        let mut md5 = Md5::new();
        let mut sent = 0u64;
        let mut next = Some(first);
        let mut failure: Option<String> = None;
        while let Some(mut chunk) = next.take() {
            let room = (limit - sent) as usize;
            if chunk.len() > room {
                *carry = Some(chunk.split_off(room));
            }
            md5.update(&chunk);
            sent += chunk.len() as u64;
            match tokio::time::timeout(STALL_TIMEOUT, tx.send(Ok(chunk))).await {
                Ok(Ok(())) => {}
                // The request ended early: its result says why.
                Ok(Err(_)) => break,
                Err(_) => {
                    failure = Some(format!(
                        "Swift took no data for {}s",
                        STALL_TIMEOUT.as_secs()
                    ));
                    break;
                }
            }
            if sent >= limit || carry.is_some() {
                break;
            }
            match body.next_chunk().await {
                Ok(Some(c)) => next = Some(c),
                Ok(None) => *ended = true,
                Err(why) => failure = Some(why.to_string()),
            }
        }
        if let Some(why) = failure {
            // Abort the body: Swift keeps nothing of a segment whose
            // chunked body never ended.
            let _ = tx.try_send(Err(std::io::Error::other("aborted")));
            drop(tx);
            put.abort();
            return Err(StoreError::new(&what, why));
        }
        drop(tx);
        let answer = tokio::time::timeout(SEGMENT_ANSWER_TIMEOUT, put)
            .await
            .map_err(|_| {
                StoreError::new(
                    &what,
                    format!(
                        "Swift did not answer within {}s",
                        SEGMENT_ANSWER_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(|e| StoreError::new(&what, e))?
            .map_err(|e| StoreError::new(&what, without_url(e)))?;
        let answer = expect(answer, &what, &[StatusCode::CREATED]).await?;
        let want = hex(&md5.finalize());
        let etag = etag_of(&answer);
        if etag != want {
            return Err(StoreError::new(
                &what,
                format!("Swift's ETag {etag:?} is not the MD5 of what was sent ({want})"),
            ));
        }
        Ok(Some((want, sent)))
    }

    async fn save_inner(
        &self,
        req: &SaveRequest,
        body: &mut dyn ChunkSource,
        written: &mut Vec<String>,
    ) -> Result<Stored, StoreError> {
        self.ensure_container(&req.container).await?;
        let mut segments = Vec::new();
        let mut carry = None;
        let mut ended = false;
        let mut bytes = 0u64;
        while !ended || carry.is_some() {
            let name = format!("{}_{:08}", req.segment_prefix, segments.len() + 1);
            let url = self.object_url(&req.container, &name);
            written.push(url.clone());
            match self
                .put_segment(&url, &name, req.segment_size, &mut carry, body, &mut ended)
                .await?
            {
                Some((etag, size)) => {
                    bytes += size;
                    segments.push(json!({
                        "path": format!("/{}/{}", req.container, name),
                        "etag": etag,
                        "size_bytes": size,
                    }));
                    tracing::debug!(segment = %name, size, "segment stored");
                }
                None => {
                    written.pop();
                }
            }
        }
        if segments.is_empty() {
            return Err(StoreError::new(
                format!("store {}", req.object),
                "the backup stream was empty",
            ));
        }
        // Swift's SLO ETag: the MD5 of the segments' MD5s, in order.
        let mut all = Md5::new();
        for s in &segments {
            all.update(s["etag"].as_str().unwrap_or_default().as_bytes());
        }
        let checksum = hex(&all.finalize());
        let what = format!("store the manifest {}", req.object);
        let url = self.object_url(&req.container, &req.object);
        written.push(url.clone());
        let mut put = self
            .request(Method::PUT, &format!("{url}?multipart-manifest=put"))
            .timeout(REQUEST_TIMEOUT)
            .json(&Value::Array(segments.clone()));
        for (k, v) in &req.metadata {
            put = put.header(format!("X-Object-Meta-{k}"), v);
        }
        let r = put
            .send()
            .await
            .map_err(|e| StoreError::new(&what, without_url(e)))?;
        expect(r, &what, &[StatusCode::CREATED]).await?;
        let what = format!("check the stored backup {}", req.object);
        let head = self.simple(Method::HEAD, &url, &what).await?;
        let head = expect(head, &what, &[StatusCode::OK]).await?;
        let etag = etag_of(&head);
        if etag != checksum {
            return Err(StoreError::new(
                what,
                format!("Swift's ETag {etag:?} is not the one of the segments sent ({checksum})"),
            ));
        }
        Ok(Stored {
            location: format!("{}/{}/{}", self.url, req.container, req.object),
            checksum,
            bytes,
            segments: segments.len() as u32,
        })
    }

    /// Streams `url` into `sink`; returns the bytes and their MD5.
    async fn get_into(
        &self,
        url: &str,
        what: &str,
        sink: &mut dyn ChunkSink,
    ) -> Result<(u64, String), StoreError> {
        // The answer's headers within REQUEST_TIMEOUT; the body is bounded
        // chunk by chunk below (a whole segment may take longer).
        let r = tokio::time::timeout(REQUEST_TIMEOUT, self.request(Method::GET, url).send())
            .await
            .map_err(|_| {
                StoreError::new(
                    what,
                    format!("Swift did not answer within {}s", REQUEST_TIMEOUT.as_secs()),
                )
            })?
            .map_err(|e| StoreError::new(what, without_url(e)))?;
        let r = expect(r, what, &[StatusCode::OK]).await?;
        let mut body = r.bytes_stream();
        let mut md5 = Md5::new();
        let mut n = 0u64;
        loop {
            let next = tokio::time::timeout(STALL_TIMEOUT, body.next())
                .await
                .map_err(|_| {
                    StoreError::new(
                        what,
                        format!("Swift sent nothing for {}s", STALL_TIMEOUT.as_secs()),
                    )
                })?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| StoreError::new(what, without_url(e)))?;
            md5.update(&chunk);
            n += chunk.len() as u64;
            sink.put_chunk(chunk.to_vec())
                .await
                .map_err(|e| StoreError::new(what, e))?;
        }
        Ok((n, hex(&md5.finalize())))
    }
}

#[async_trait]
impl ObjectStore for SwiftStore {
    async fn save(
        &self,
        req: &SaveRequest,
        body: &mut dyn ChunkSource,
    ) -> Result<Stored, StoreError> {
        let mut written = Vec::new();
        let result = self.save_inner(req, body, &mut written).await;
        if result.is_err() && !written.is_empty() {
            // Nothing of a failed backup stays: the manifest first, so no
            // moment has a manifest over missing segments.
            written.reverse();
            self.remove(&written).await;
        }
        result
    }

    async fn load(
        &self,
        location: &str,
        checksum: Option<&str>,
        sink: &mut dyn ChunkSink,
    ) -> Result<u64, StoreError> {
        let (container, object) = container_object(location).ok_or_else(|| {
            StoreError::new(
                "read the backup",
                format!("{location:?} is not <storage url>/<container>/<object>"),
            )
        })?;
        let url = self.object_url(container, object);
        let what = format!("read the backup {container}/{object}");
        let head = self.simple(Method::HEAD, &url, &what).await?;
        let head = expect(head, &what, &[StatusCode::OK]).await?;
        let etag = etag_of(&head);
        if let Some(want) = checksum {
            if etag != want.trim_matches('"') {
                return Err(StoreError::new(
                    what,
                    format!("checksum mismatch: Trove recorded {want}, Swift has {etag}: the backup was changed or replaced"),
                ));
            }
        }
        let slo = head
            .headers()
            .get("x-static-large-object")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !slo {
            let (n, md5) = self.get_into(&url, &what, sink).await?;
            if md5 != etag {
                return Err(StoreError::new(
                    what,
                    format!("the data read (MD5 {md5}) is not what Swift stored (ETag {etag})"),
                ));
            }
            return Ok(n);
        }
        // The manifest, checked against the ETag, then each segment
        // against the MD5 the manifest holds for it.
        let r = self
            .simple(Method::GET, &format!("{url}?multipart-manifest=get"), &what)
            .await?;
        let r = expect(r, &what, &[StatusCode::OK]).await?;
        let manifest: Vec<Value> = r
            .json()
            .await
            .map_err(|e| StoreError::new(&what, format!("the manifest is not JSON: {e}")))?;
        let mut all = Md5::new();
        for s in &manifest {
            all.update(s["hash"].as_str().unwrap_or_default().as_bytes());
        }
        if hex(&all.finalize()) != etag {
            return Err(StoreError::new(
                what,
                "the manifest does not match the object's ETag",
            ));
        }
        let mut total = 0u64;
        for (i, s) in manifest.iter().enumerate() {
            let name = s["name"].as_str().unwrap_or_default();
            let hash = s["hash"].as_str().unwrap_or_default();
            let size = s["bytes"].as_u64().unwrap_or_default();
            let seg_what = format!("read segment {} of {} ({name})", i + 1, manifest.len());
            let seg_url = format!(
                "{}/{}",
                self.url,
                name.trim_start_matches('/')
                    .split('/')
                    .map(enc)
                    .collect::<Vec<_>>()
                    .join("/")
            );
            let (n, md5) = self.get_into(&seg_url, &seg_what, sink).await?;
            if md5 != hash || n != size {
                return Err(StoreError::new(
                    seg_what,
                    format!("the segment is damaged: {n} bytes with MD5 {md5}, the manifest says {size} bytes with MD5 {hash}"),
                ));
            }
            total += n;
        }
        Ok(total)
    }
}

/// The container and object of `<url>/<container>/<object>`.
fn container_object(location: &str) -> Option<(&str, &str)> {
    let (rest, object) = location.rsplit_once('/')?;
    let (_, container) = rest.rsplit_once('/')?;
    (!container.is_empty() && !object.is_empty()).then_some((container, object))
}

/// Checks the status; otherwise an error naming it, with Swift's words.
async fn expect(
    r: reqwest::Response,
    what: &str,
    ok: &[StatusCode],
) -> Result<reqwest::Response, StoreError> {
    let status = r.status();
    if ok.contains(&status) {
        return Ok(r);
    }
    let text = r.text().await.unwrap_or_default();
    let hint = match status {
        StatusCode::UNAUTHORIZED => " (the token was refused: expired or revoked?)",
        StatusCode::FORBIDDEN => " (the token's project may not use this account)",
        StatusCode::NOT_FOUND => " (no such object)",
        _ => "",
    };
    let text: String = text.trim().chars().take(200).collect();
    Err(StoreError::new(
        what,
        format!(
            "Swift answered {status}{hint}{}",
            if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            }
        ),
    ))
}

fn etag_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn enc(part: &str) -> String {
    percent_encoding::utf8_percent_encode(part, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
}

fn tail(url: &str) -> &str {
    url.rsplit_once("/v1/").map(|(_, t)| t).unwrap_or(url)
}

/// reqwest's errors carry the URL; keep the message, which is enough.
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect to Swift"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
