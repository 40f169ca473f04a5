//! Small objects, whole in memory: what the guest log API stores (log
//! components of at most `guest_log_limit` bytes and their metafile).

use driver_api::storage::StoreError;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{enc, expect, without_url, SwiftStore, REQUEST_TIMEOUT};

/// The largest object read whole (a metafile is a few hundred bytes).
const SMALL_READ_MAX: usize = 1 << 20;

impl SwiftStore {
    /// The account's storage URL.
    pub fn account(&self) -> &str {
        &self.url
    }

    /// Creates `container` if needed, with `headers`.
    pub async fn put_container(
        &self,
        container: &str,
        headers: &[(&str, String)],
    ) -> Result<(), StoreError> {
        let what = format!("create the Swift container {container}");
        let req = self
            .request(Method::PUT, &format!("{}/{}", self.url, enc(container)))
            .timeout(REQUEST_TIMEOUT);
        let r = send_with(req, headers, &what).await?;
        expect(r, &what, &[StatusCode::CREATED, StatusCode::ACCEPTED]).await?;
        Ok(())
    }

    /// Stores `body` as `container/name`, with `headers`; its ETag is
    /// checked against the body's MD5.
    pub async fn put_small(
        &self,
        container: &str,
        name: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<(), StoreError> {
        use md5::{Digest, Md5};
        let what = format!("store {container}/{name}");
        let md5 = super::hex(&Md5::digest(&body));
        let req = self
            .request(Method::PUT, &self.object_url(container, name))
            .timeout(REQUEST_TIMEOUT)
            .header("ETag", &md5)
            .body(body);
        let r = send_with(req, headers, &what).await?;
        expect(r, &what, &[StatusCode::CREATED]).await?;
        Ok(())
    }

    /// `container/name` whole, or `None` when Swift has no such object.
    pub async fn get_small(
        &self,
        container: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let what = format!("read {container}/{name}");
        let r = self
            .simple(Method::GET, &self.object_url(container, name), &what)
            .await?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let r = expect(r, &what, &[StatusCode::OK]).await?;
        let body = tokio::time::timeout(REQUEST_TIMEOUT, r.bytes())
            .await
            .map_err(|_| StoreError::new(&what, "Swift did not send it in time"))?
            .map_err(|e| StoreError::new(&what, without_url(e)))?;
        if body.len() > SMALL_READ_MAX {
            return Err(StoreError::new(
                &what,
                format!(
                    "{} bytes, more than the {SMALL_READ_MAX} expected",
                    body.len()
                ),
            ));
        }
        Ok(Some(body.to_vec()))
    }

    /// The names in `container` that start with `prefix` (none when the
    /// container is missing), in Swift's order, every page of the listing.
    pub async fn list(&self, container: &str, prefix: &str) -> Result<Vec<String>, StoreError> {
        let what = format!("list {container}/{prefix}*");
        let mut names: Vec<String> = Vec::new();
        loop {
            let mut url = format!(
                "{}/{}?format=json&prefix={}",
                self.url,
                enc(container),
                enc(prefix)
            );
            if let Some(last) = names.last() {
                url.push_str(&format!("&marker={}", enc(last)));
            }
            let r = self.simple(Method::GET, &url, &what).await?;
            if r.status() == StatusCode::NOT_FOUND {
                return Ok(names);
            }
            let r = expect(r, &what, &[StatusCode::OK, StatusCode::NO_CONTENT]).await?;
            let body = tokio::time::timeout(REQUEST_TIMEOUT, r.bytes())
                .await
                .map_err(|_| StoreError::new(&what, "Swift did not send the listing in time"))?
                .map_err(|e| StoreError::new(&what, without_url(e)))?;
            let page: Vec<Value> = if body.is_empty() {
                Vec::new()
            } else {
                serde_json::from_slice(&body).map_err(|e| StoreError::new(&what, e))?
            };
            let before = names.len();
            names.extend(
                page.iter()
                    .filter_map(|o| o.get("name").and_then(Value::as_str))
                    .map(str::to_owned),
            );
            if names.len() == before {
                return Ok(names);
            }
        }
    }

    /// Removes `container/name`; one already gone is fine.
    pub async fn delete(&self, container: &str, name: &str) -> Result<(), StoreError> {
        let what = format!("remove {container}/{name}");
        let r = self
            .simple(Method::DELETE, &self.object_url(container, name), &what)
            .await?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        expect(r, &what, &[StatusCode::NO_CONTENT, StatusCode::OK]).await?;
        Ok(())
    }
}

/// Sends `req` with `headers` added; a failure to reach Swift names `what`.
async fn send_with(
    mut req: reqwest::RequestBuilder,
    headers: &[(&str, String)],
    what: &str,
) -> Result<reqwest::Response, StoreError> {
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send()
        .await
        .map_err(|e| StoreError::new(what, without_url(e)))
}
