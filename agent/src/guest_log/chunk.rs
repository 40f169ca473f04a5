//! Cutting a log into the objects a publish stores, and naming them.

use std::io::{BufRead, Read};

use super::mask;

/// `log-<UTC time>` as upstream names the objects (`str(utcnow())` with
/// `T`), made unique within one publish by a sequence number: two objects
/// of one publish can share the microsecond.
pub(super) fn object_name(seq: usize) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "log-{}-{seq:04}",
        utc_text(now.as_secs(), now.subsec_micros())
    )
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` of a Unix time (days to a civil date as
/// in H. Hinnant's `civil_from_days`).
pub(super) fn utc_text(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One object's worth of a log.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Chunk {
    /// The text to store, masked.
    pub(super) text: Vec<u8>,
    /// Its lines.
    pub(super) lines: usize,
    /// Bytes of the file it covers (before masking).
    pub(super) consumed: u64,
}

/// Cuts a log into objects of at most `limit` bytes on line boundaries
/// (a longer line alone is cut at `limit`); a last line without its
/// newline is left unread. Reads one line at a time: memory is bounded by
/// `limit` and the longest line read, which is cut at `limit`.
pub(super) struct Chunker<R> {
    reader: R,
    limit: usize,
    /// A line read but not yet placed: it did not fit the last chunk.
    carry: Option<(Vec<u8>, u64)>,
}

impl<R: BufRead> Chunker<R> {
    pub(super) fn new(reader: R, limit: usize) -> Self {
        Self {
            reader,
            limit: limit.max(2),
            carry: None,
        }
    }

    /// The next complete line, masked, with the bytes it took of the
    /// file; `None` at the end or before an unfinished last line. A line
    /// that does not fit an object comes in pieces of `limit - 1` bytes,
    /// each given a newline.
    fn next_line(&mut self) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        if let Some(line) = self.carry.take() {
            return Ok(Some(line));
        }
        let piece = (self.limit - 1).max(1);
        let mut raw = Vec::new();
        let n = (&mut self.reader)
            .take(piece as u64)
            .read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Ok(None);
        }
        let mut consumed = raw.len() as u64;
        if raw.last() != Some(&b'\n') {
            if raw.len() < piece {
                // Still being written.
                return Ok(None);
            }
            // A piece of a long line; its newline, if next, goes with it.
            if self.reader.fill_buf()?.first() == Some(&b'\n') {
                self.reader.consume(1);
                consumed += 1;
            }
            raw.push(b'\n');
        }
        let mut text = mask::line(&raw);
        if text.len() > self.limit {
            text.truncate(self.limit - 1);
            text.push(b'\n');
        }
        Ok(Some((text, consumed)))
    }

    pub(super) fn next_chunk(&mut self) -> std::io::Result<Option<Chunk>> {
        let mut chunk = Chunk {
            text: Vec::new(),
            lines: 0,
            consumed: 0,
        };
        while let Some((line, consumed)) = self.next_line()? {
            if chunk.lines > 0 && chunk.text.len() + line.len() > self.limit {
                self.carry = Some((line, consumed));
                break;
            }
            chunk.text.extend_from_slice(&line);
            chunk.lines += 1;
            chunk.consumed += consumed;
        }
        Ok((chunk.lines > 0).then_some(chunk))
    }
}
