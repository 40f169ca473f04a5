//! The raw ini reader, as chmpx's `CHMIniConf::LoadConfigurationRaw` reads
//! (yahoojapan/chmpx lib/chmconf.cc, lib/chmconfutil.cc):
//!
//! - every line is trimmed; a line whose first character is `#` is a
//!   comment; blank lines are skipped;
//! - a section header is the whole line, exactly (`[GLOBAL]`, `[SVRNODE]`,
//!   `[SLVNODE]`, `[K2HDKC]`, ...); `[SVRNODE]`/`[SLVNODE]` repeat, one
//!   node each; repeated other sections merge;
//! - `KEY = VALUE`; keys are case-sensitive; a line without `=` is a key
//!   with an empty value; the last of a repeated key wins;
//! - values may be quoted with `"` or `'`; unquoted, `#` after a blank
//!   starts a comment; `\` escapes the next character;
//! - lines before the first section are ignored.
//!
//! Not supported: `INCLUDE` (chmpx's own handling of it is broken), YAML
//! and JSON configurations.

/// One section occurrence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    /// The name without brackets, as written.
    pub name: String,
    /// Keys and values in order; a later duplicate replaces the earlier.
    pub entries: Vec<(String, String)>,
}

impl Section {
    /// The value of `key` (case-sensitive, as chmpx).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A parsed ini: the section occurrences in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ini {
    /// Sections in order.
    pub sections: Vec<Section>,
    /// What the reader skipped, for `-d wan` output.
    pub warnings: Vec<String>,
}

impl Ini {
    /// All occurrences of a section.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.sections.iter().filter(move |s| s.name == name)
    }

    /// A non-repeating section, its occurrences merged (later keys win).
    pub fn merged(&self, name: &str) -> Option<Section> {
        let mut out: Option<Section> = None;
        for s in self.all(name) {
            out.get_or_insert_with(|| Section {
                name: name.into(),
                entries: vec![],
            })
            .entries
            .extend(s.entries.iter().cloned());
        }
        out
    }
}

/// chmpx's `extract_conf_value`: quotes, escapes and trailing comments.
pub fn extract_value(raw: &str) -> String {
    let mut out = String::new();
    let (mut single, mut double, mut escape, mut before_space) = (false, false, false, false);
    for c in raw.trim().chars() {
        if single {
            if c == '\'' {
                single = false;
            } else {
                out.push(c);
            }
        } else if double {
            match c {
                '"' if !escape => double = false,
                '\\' if !escape => escape = true,
                '"' | '\\' => {
                    out.push(c);
                    escape = false;
                }
                _ => {
                    if escape {
                        out.push('\\');
                        escape = false;
                    }
                    out.push(c);
                }
            }
        } else if escape {
            out.push(c);
            escape = false;
        } else {
            match c {
                '"' => double = true,
                '\'' => single = true,
                '\\' => escape = true,
                '#' if before_space => break,
                _ => out.push(c),
            }
        }
        before_space = c.is_whitespace();
    }
    out.trim().to_owned()
}

/// Reads an ini text. Never fails: like chmpx, what it cannot use is
/// skipped (and listed in `warnings`); missing content is the caller's
/// error.
pub fn parse(text: &str) -> Ini {
    let mut ini = Ini::default();
    let mut current: Option<Section> = None;
    for (no, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            if let Some(s) = current.take() {
                ini.sections.push(s);
            }
            current = Some(Section {
                name: line[1..line.len() - 1].to_owned(),
                entries: vec![],
            });
            continue;
        }
        let Some(section) = current.as_mut() else {
            ini.warnings.push(format!("line {}: outside any section, skipped", no + 1));
            continue;
        };
        let (k, v) = match line.split_once('=') {
            Some((k, v)) => (extract_value(k), extract_value(v)),
            None => (extract_value(line), String::new()),
        };
        if k.is_empty() {
            ini.warnings.push(format!("line {}: no key, skipped", no + 1));
            continue;
        }
        if let Some(old) = section.entries.iter_mut().find(|(ok, _)| *ok == k) {
            ini.warnings.push(format!("line {}: {k} repeated in [{}], overwritten", no + 1, section.name));
            old.1 = v;
        } else {
            section.entries.push((k, v));
        }
    }
    if let Some(s) = current.take() {
        ini.sections.push(s);
    }
    ini
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_comments_quotes() {
        let ini = parse(
            "ORPHAN = 1\n# comment\n[GLOBAL]\nGROUP = g1 # trailing\nDATE = \"Thu, 28 May # 2020\"\nNAME='a b'\nFLAG\n\
             GROUP = g2\n[SVRNODE]\nNAME = 10.0.0.1\n[SVRNODE]\nNAME=10.0.0.2\n[ GLOBAL ]\nX=1\n[GLOBAL]\nMODE=SERVER\n",
        );
        let g = ini.merged("GLOBAL").unwrap();
        assert_eq!(g.get("GROUP"), Some("g2"), "last wins");
        assert_eq!(g.get("DATE"), Some("Thu, 28 May # 2020"));
        assert_eq!(g.get("NAME"), Some("a b"));
        assert_eq!(g.get("FLAG"), Some(""));
        assert_eq!(g.get("MODE"), Some("SERVER"), "repeated [GLOBAL] merges");
        assert_eq!(g.get("group"), None, "keys are case-sensitive");
        assert_eq!(ini.all("SVRNODE").count(), 2);
        assert_eq!(ini.all(" GLOBAL ").count(), 1, "header matched exactly, unknown section kept apart");
        assert!(ini.warnings.iter().any(|w| w.contains("outside")));
    }

    #[test]
    fn value_extraction() {
        assert_eq!(extract_value("  abc#def "), "abc#def", "# needs a blank before it");
        assert_eq!(extract_value("abc # def"), "abc");
        assert_eq!(extract_value(r#""a\"b""#), "a\"b");
        assert_eq!(extract_value(r"a\ b"), "a b");
    }
}
