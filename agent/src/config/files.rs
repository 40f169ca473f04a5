//! Each file as a layer of the `config` crate, read as oslo.config reads
//! it: sections and keys, `-` and `_` alike, one pair of quotes stripped,
//! every value tagged with its file (the crate's origin) so that a problem
//! found after the merge still names the file it came from.
//!
//! What the crate does for us: the layering (a later layer's value wins,
//! groups merged key by key) and the typing (serde, with oslo's boolean
//! words). What it cannot: its INI reader takes quotes and backslashes its
//! own way and has no file name for a text, so each file is parsed here;
//! and it has no `--config-dir` (a directory's `*.conf`, sorted), so
//! [`files_of`] expands those.

use std::path::PathBuf;

use config::{Map, Value, ValueKind};

use super::{ConfigError, ConfigProblem, Source};

/// One configuration file, parsed, as a `config` layer.
#[derive(Debug, Clone)]
pub(super) struct OsloFile {
    groups: Map<String, Value>,
}

impl OsloFile {
    /// Parses `text` (named `file` in every problem and value), adding what
    /// is wrong with it to `problems`.
    pub(super) fn parse(file: &str, text: &str, problems: &mut Vec<ConfigProblem>) -> OsloFile {
        let origin = file.to_owned();
        let options = ini::ParseOption {
            // oslo.config takes backslashes literally, and strips one pair
            // of surrounding quotes itself (done below).
            enabled_quote: false,
            enabled_escape: false,
            enabled_indented_mutiline_value: true,
            enabled_preserve_key_leading_whitespace: false,
        };
        let mut groups: Map<String, Map<String, Value>> = Map::new();
        match ini::Ini::load_from_str_opt(text, options) {
            Err(e) => problems.push(ConfigProblem {
                file: origin.clone(),
                key: format!("line {}", e.line + 1),
                reason: format!("not an INI line ({})", e.msg),
            }),
            Ok(parsed) => {
                for (section, props) in parsed.iter() {
                    // Keys before any section header: oslo.config refuses them too.
                    let Some(section) = section else {
                        for (key, _) in props.iter() {
                            problems.push(ConfigProblem {
                                file: origin.clone(),
                                key: key.to_owned(),
                                reason: "option outside any [section]".into(),
                            });
                        }
                        continue;
                    };
                    let group = if section.eq_ignore_ascii_case("default") {
                        "DEFAULT"
                    } else {
                        section
                    };
                    let entries = groups.entry(group.to_owned()).or_default();
                    for (key, value) in props.iter() {
                        let value = unquote(value.trim()).to_owned();
                        entries.insert(
                            normalize_key(key),
                            Value::new(Some(&origin), ValueKind::String(value)),
                        );
                    }
                }
            }
        }
        OsloFile {
            groups: groups
                .into_iter()
                .map(|(group, entries)| (group, Value::new(Some(&origin), entries)))
                .collect(),
        }
    }
}

impl config::Source for OsloFile {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.groups.clone())
    }
}

fn normalize_key(key: &str) -> String {
    key.trim().replace('-', "_")
}

fn unquote(value: &str) -> &str {
    let bytes = value.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[0] == bytes[bytes.len() - 1]
    {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// Expands sources into the ordered list of files.
pub fn files_of(sources: &[Source]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for source in sources {
        match source {
            Source::File(path) => files.push(path.clone()),
            Source::Dir(dir) => match std::fs::read_dir(dir) {
                Ok(entries) => {
                    let mut confs: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
                        .collect();
                    confs.sort();
                    files.extend(confs);
                }
                Err(e) => problems.push(ConfigProblem {
                    file: dir.display().to_string(),
                    key: "--config-dir".into(),
                    reason: format!("cannot read directory: {e}"),
                }),
            },
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(ConfigError(problems))
    }
}
