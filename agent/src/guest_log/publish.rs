//! The Swift side of the guest logs: `publish` (what was not published
//! yet, complete lines only, masked), `discard`, and the metafile that
//! says how far a log was published, in upstream's layout.

use std::io::{Read, Seek};

use driver_api::TroveException;
use serde_json::{json, Value};

use super::chunk::{object_name, Chunker};
use super::{GuestLogs, LogError, LogState};
use crate::swift::SwiftStore;

impl GuestLogs {
    pub(super) fn prefix(&self, name: &str) -> String {
        format!(
            "{}/{}-{}/",
            self.options.guest_id, self.options.manager, name
        )
    }

    pub(super) fn metafile(&self, name: &str) -> String {
        format!("{}_metafile", self.prefix(name).trim_end_matches('/'))
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("X-Delete-After", self.options.expiry.to_string())]
    }

    /// The published size and digest, from the metafile the first time.
    pub(super) async fn published(
        &self,
        state: &mut LogState,
        swift: &SwiftStore,
    ) -> Result<u64, LogError> {
        if state.account.as_deref() != Some(swift.account()) {
            state.published = None;
            state.published_digest = None;
        }
        if let Some(n) = state.published {
            return Ok(n);
        }
        let meta = swift
            .get_small(&self.options.container, &self.metafile(&state.def.name))
            .await?;
        let (size, digest) = match meta.and_then(|m| serde_json::from_slice::<Value>(&m).ok()) {
            Some(m) => (
                m["log_size"].as_u64().unwrap_or(0),
                m["log_header_digest"].as_str().map(str::to_owned),
            ),
            None => (0, None),
        };
        state.published = Some(size);
        state.published_digest = digest;
        state.account = Some(swift.account().to_owned());
        Ok(size)
    }

    /// Removes every object of the log and its metafile.
    pub(super) async fn discard(
        &self,
        state: &mut LogState,
        swift: &SwiftStore,
    ) -> Result<(), LogError> {
        let container = &self.options.container;
        let name = state.def.name.clone();
        for object in swift.list(container, &self.prefix(&name)).await? {
            swift.delete(container, &object).await?;
        }
        swift.delete(container, &self.metafile(&name)).await?;
        state.published = Some(0);
        state.published_digest = None;
        state.account = Some(swift.account().to_owned());
        tracing::info!(log = %name, "guest log discarded");
        Ok(())
    }

    /// Uploads what was not published yet, complete lines only.
    pub(super) async fn publish(
        &self,
        state: &mut LogState,
        swift: &SwiftStore,
    ) -> Result<(), LogError> {
        let published = self.published(state, swift).await?;
        let Some(now) = Self::facts(&state.def)? else {
            return Err(LogError::Trove(TroveException::Error(format!(
                "Cannot publish log file '{}' as it does not exist.",
                state.def.file.display()
            ))));
        };
        let mut from = published;
        if Self::rotated(state, &now) {
            tracing::info!(log = %state.def.name, "the log was rotated: discarding what was published of it");
            self.discard(state, swift).await?;
            from = 0;
        }
        let container = &self.options.container;
        swift.put_container(container, &self.headers()).await?;
        let file_error = |cause| LogError::File {
            path: state.def.file.display().to_string(),
            cause,
        };
        let mut f = std::fs::File::open(&state.def.file).map_err(file_error)?;
        f.seek(std::io::SeekFrom::Start(from)).map_err(file_error)?;
        // Only up to the size seen now: what is written meanwhile is the
        // next publish's.
        let mut reader = Chunker::new(
            std::io::BufReader::new(f.take(now.size - from)),
            self.options.limit,
        );
        let mut objects = 0;
        while let Some(chunk) = reader.next_chunk().map_err(file_error)? {
            let name = format!("{}{}", self.prefix(&state.def.name), object_name(objects));
            let mut headers = self.headers();
            headers.push(("x-object-meta-lines", chunk.lines.to_string()));
            swift
                .put_small(container, &name, chunk.text, &headers)
                .await?;
            from += chunk.consumed;
            objects += 1;
            // After each object: a publish cut short goes on from here.
            state.published = Some(from);
            state.published_digest = Some(now.digest.clone());
            self.put_metafile(state, swift).await?;
        }
        if objects == 0 {
            state.published = Some(from);
            state.published_digest = Some(now.digest.clone());
            self.put_metafile(state, swift).await?;
        }
        tracing::info!(log = %state.def.name, objects, published = from, "guest log published");
        Ok(())
    }

    async fn put_metafile(&self, state: &LogState, swift: &SwiftStore) -> Result<(), LogError> {
        let body = json!({
            "log_name": state.def.name,
            "log_type": state.def.kind.name(),
            "log_file": state.def.file.display().to_string(),
            "log_size": state.published.unwrap_or(0),
            "log_header_digest": state.published_digest.clone().unwrap_or_default(),
        });
        swift
            .put_small(
                &self.options.container,
                &self.metafile(&state.def.name),
                body.to_string().into_bytes(),
                &self.headers(),
            )
            .await?;
        Ok(())
    }
}
