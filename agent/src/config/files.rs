//! Reading the files as oslo.config does: sections and keys, `-` and `_`
//! alike, one pair of quotes stripped, a later file's value winning, every
//! value remembered with the file it came from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{ConfigError, ConfigProblem, Source};

/// A value and the file it came from.
#[derive(Debug, Clone)]
pub(super) struct Setting {
    pub(super) value: String,
    pub(super) file: String,
}

/// The merged key/value view of all files, before typing.
#[derive(Debug, Default)]
pub(super) struct Merged {
    pub(super) groups: BTreeMap<String, BTreeMap<String, Setting>>,
}

impl Merged {
    pub(super) fn add_text(&mut self, file: &str, text: &str, problems: &mut Vec<ConfigProblem>) {
        let options = ini::ParseOption {
            // oslo.config takes backslashes literally, and strips one pair
            // of surrounding quotes itself (done below).
            enabled_quote: false,
            enabled_escape: false,
            enabled_indented_mutiline_value: true,
            enabled_preserve_key_leading_whitespace: false,
        };
        let parsed = match ini::Ini::load_from_str_opt(text, options) {
            Ok(parsed) => parsed,
            Err(e) => {
                problems.push(ConfigProblem {
                    file: file.to_owned(),
                    key: format!("line {}", e.line + 1),
                    reason: format!("not an INI line ({})", e.msg),
                });
                return;
            }
        };
        for (section, props) in parsed.iter() {
            // Keys before any section header: oslo.config refuses them too.
            let Some(section) = section else {
                for (key, _) in props.iter() {
                    problems.push(ConfigProblem {
                        file: file.to_owned(),
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
            let entries = self.groups.entry(group.to_owned()).or_default();
            for (key, value) in props.iter() {
                entries.insert(
                    normalize_key(key),
                    Setting {
                        value: unquote(value.trim()).to_owned(),
                        file: file.to_owned(),
                    },
                );
            }
        }
    }
}

pub(super) fn normalize_key(key: &str) -> String {
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
