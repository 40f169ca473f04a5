//! Command-line options the way chmpx's `ChmOpts` reads them: `-name`,
//! case-insensitive, followed by its value unless the next word is an
//! option itself. Unknown options are kept (and ignored by the caller).

use std::collections::BTreeMap;

/// Parsed options: upper-cased name → value (`None` for a bare flag).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opts {
    map: BTreeMap<String, Option<String>>,
    /// Words that are not options.
    pub rest: Vec<String>,
}

impl Opts {
    /// Parses `args` (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Opts {
        let args: Vec<String> = args.into_iter().collect();
        let mut o = Opts::default();
        let mut i = 0;
        while i < args.len() {
            match args[i].strip_prefix('-').filter(|n| !n.is_empty()) {
                Some(name) => {
                    let value = args.get(i + 1).filter(|v| !v.starts_with('-') || v.parse::<i64>().is_ok()).cloned();
                    i += 1 + usize::from(value.is_some());
                    o.map.insert(name.to_ascii_uppercase(), value);
                }
                None => {
                    o.rest.push(args[i].clone());
                    i += 1;
                }
            }
        }
        o
    }

    /// Whether any of these options is present.
    pub fn has(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.map.contains_key(&n.to_ascii_uppercase()))
    }

    /// The value of the first of these options present (`Some("")` for a
    /// bare flag).
    pub fn get(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .find_map(|n| self.map.get(&n.to_ascii_uppercase()))
            .map(|v| v.clone().unwrap_or_default())
    }
}

/// The options chmpx and k2hdkc share: `-conf`, `-ctlport`, `-cuk`, `-d`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    /// `-conf` (or `-f`).
    pub conf: String,
    /// `-ctlport`.
    pub ctlport: Option<u16>,
    /// `-cuk`.
    pub cuk: Option<String>,
    /// `-d` level.
    pub level: Option<u8>,
}

/// Reads the shared options; `Err` is the message chmpx prints before
/// exiting 1.
pub fn common(o: &Opts) -> Result<Common, String> {
    let conf = o
        .get(&["conf", "f"])
        .filter(|c| !c.is_empty())
        .or_else(|| std::env::var("CHMCONFFILE").ok())
        .ok_or("ERROR: Must specify option \"-conf\" or \"-json\"")?;
    let ctlport = match o.get(&["ctlport", "cntlport", "cntrlport"]) {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or("ERROR: option \"-ctlport\" is specified with invalid value.")?,
        ),
    };
    let level = match o.get(&["d", "g"]) {
        None => std::env::var("CHMDBGMODE").ok().and_then(|v| crate::log::parse_level(&v)),
        Some(v) if v.is_empty() => return Err("ERROR: \"-d\" option must be specified with parameter.".into()),
        Some(v) => {
            Some(crate::log::parse_level(&v).ok_or_else(|| format!("ERROR: Unknown \"-d\" option parameter({}) is specified.", v.to_ascii_uppercase()))?)
        }
    };
    Ok(Common {
        conf,
        ctlport,
        cuk: o.get(&["cuk"]).filter(|c| !c.is_empty()),
        level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> Opts {
        Opts::parse(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn chmpx_style() {
        let o = opts("-conf /etc/antpickax/k2hdkc.ini -CTLPORT 8021 -no_giveup_rejoin -d err -comlog off");
        let c = common(&o).unwrap();
        assert_eq!(
            (c.conf.as_str(), c.ctlport, c.level),
            ("/etc/antpickax/k2hdkc.ini", Some(8021), Some(crate::log::ERR))
        );
        assert!(o.has(&["no_giveup_rejoin"]));
        assert_eq!(o.get(&["comlog"]).as_deref(), Some("off"));
        assert!(common(&opts("-conf x -ctlport abc")).unwrap_err().contains("-ctlport"));
        assert!(common(&opts("-conf x -d loud")).unwrap_err().contains("LOUD"));
        assert!(common(&opts("-conf x -d")).unwrap_err().contains("must be specified"));
    }
}
