//! The stand-in's K2HFILE and archive formats (NOT k2hash's): text, one
//! `key<TAB>value` record a line, `\\`, `\t`, `\n` escaped, under a magic
//! line. Enough for backup/restore tests to see that keys survive an
//! `ar put` / `ar load` round trip.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// First line of a stand-in K2HFILE.
pub const MAGIC: &str = "K2HASH-STANDIN 1";
/// First line of a stand-in archive.
pub const AR_MAGIC: &str = "K2HASH-ARCHIVE-STANDIN 1";

/// Keys and values.
pub type Data = BTreeMap<String, String>;

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Renders data under a magic line.
pub fn render(magic: &str, data: &Data) -> String {
    let mut s = format!("{magic}\n");
    for (k, v) in data {
        s.push_str(&format!("{}\t{}\n", escape(k), escape(v)));
    }
    s
}

/// Reads data; an empty text is empty data; another magic is an error.
pub fn read(magic: &str, text: &str) -> Result<Data, String> {
    let mut lines = text.lines();
    match lines.next() {
        None => return Ok(Data::new()),
        Some(m) if m == magic => {}
        Some(other) => return Err(format!("not a stand-in file ({magic}): starts with {other:?}")),
    }
    Ok(lines.filter_map(|l| l.split_once('\t')).map(|(k, v)| (unescape(k), unescape(v))).collect())
}

/// Loads a K2HFILE (missing or empty: no keys).
pub fn load(path: &Path) -> Result<Data, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => read(MAGIC, &t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Data::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Stores a K2HFILE.
pub fn store(path: &Path, data: &Data) -> io::Result<()> {
    std::fs::write(path, render(MAGIC, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut d = Data::new();
        d.insert("a\tb".into(), "line1\nline2 \\ x".into());
        d.insert("k".into(), String::new());
        let text = render(MAGIC, &d);
        assert_eq!(read(MAGIC, &text).unwrap(), d);
        assert!(read(AR_MAGIC, &text).is_err());
        assert!(read(MAGIC, "").unwrap().is_empty());
    }
}
