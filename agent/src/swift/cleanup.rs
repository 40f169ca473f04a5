//! Removing what a backup stored: after a failed upload, and for a backup
//! an agent restart interrupted. Swift is often still away when the
//! backup failed, so each object is retried with backoff, in order
//! (manifest first), within a bound.

use std::time::Duration;

use driver_api::storage::StoreError;
use reqwest::{Method, StatusCode};

use super::{tail, without_url, SwiftStore, REQUEST_TIMEOUT};

/// How long a failed backup's cleanup keeps trying: the failure is
/// reported once it ends.
const CLEANUP_WITHIN: Duration = Duration::from_secs(90);
/// Backoff between cleanup attempts: from the first pause, doubling.
const CLEANUP_FIRST_PAUSE: Duration = Duration::from_secs(1);
const CLEANUP_MAX_PAUSE: Duration = Duration::from_secs(16);

impl SwiftStore {
    /// Removes what a failed save wrote, in order (the manifest first, so
    /// that no moment has a manifest over missing segments). The outage
    /// that failed the backup may still be on: an object Swift did not
    /// remove is tried again, with backoff, until `CLEANUP_WITHIN` has
    /// passed; what is still there then is named in the log.
    pub(super) async fn remove(&self, urls: &[String]) {
        let deadline = tokio::time::Instant::now() + CLEANUP_WITHIN;
        let mut pause = CLEANUP_FIRST_PAUSE;
        let mut next = 0;
        while next < urls.len() {
            let url = &urls[next];
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let outcome = match tokio::time::timeout(
                left.min(REQUEST_TIMEOUT),
                self.request(Method::DELETE, url).send(),
            )
            .await
            {
                Err(_) => Err("Swift did not answer".to_owned()),
                Ok(Err(e)) => Err(without_url(e)),
                Ok(Ok(r)) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
                    Ok(())
                }
                // The token no longer opens the account: trying again
                // cannot help.
                Ok(Ok(r))
                    if r.status() == StatusCode::UNAUTHORIZED
                        || r.status() == StatusCode::FORBIDDEN =>
                {
                    tracing::warn!(status = %r.status(), objects = ?urls[next..].iter().map(|u| tail(u)).collect::<Vec<_>>(), "the objects of a failed backup stay in Swift: the token was refused");
                    return;
                }
                Ok(Ok(r)) => Err(format!("Swift answered {}", r.status())),
            };
            match outcome {
                Ok(()) => next += 1,
                Err(cause) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::info!(object = %tail(url), cause = %cause, retry_in_s = pause.as_secs(), "could not remove an object of a failed backup yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(CLEANUP_MAX_PAUSE);
                }
                Err(cause) => {
                    tracing::warn!(cause = %cause, within_s = CLEANUP_WITHIN.as_secs(), objects = ?urls[next..].iter().map(|u| tail(u)).collect::<Vec<_>>(), "the objects of a failed backup stay in Swift");
                    return;
                }
            }
        }
    }

    /// Removes every object of backup `id` in `container` (its manifest
    /// first, then its segments), as a failed save does: for a backup
    /// an agent restart interrupted, whose list of written objects died
    /// with the old process. Swift's listing says what is there.
    pub async fn remove_backup(&self, container: &str, id: &str) -> Result<usize, StoreError> {
        let listed = self.list(container, id).await?;
        let names: Vec<&str> = listed.iter().map(String::as_str).collect();
        let manifests = names
            .iter()
            .filter(|n| n.strip_prefix(id).is_some_and(|t| t.starts_with(".gz")));
        let segments = names.iter().filter(|n| {
            n.strip_prefix(id)
                .and_then(|t| t.strip_prefix('_'))
                .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        });
        let urls: Vec<String> = manifests
            .chain(segments)
            .map(|n| self.object_url(container, n))
            .collect();
        self.remove(&urls).await;
        Ok(urls.len())
    }
}
