//! Datastore versions and which upgrades between them a node takes.
//! Trove names a K2HDKC datastore version after the server release its
//! image carries (`1.0.17`), and the image tag is that name.

use std::cmp::Ordering;
use std::fmt;

/// A release number: dot-separated numbers (`1.0.17`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release(Vec<u64>);

impl Release {
    /// Reads `1.0.17`; None for anything that is not dotted numbers.
    pub fn parse(text: &str) -> Option<Release> {
        let parts: Option<Vec<u64>> = text.trim().split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(Release)
    }

    fn major(&self) -> u64 {
        self.0[0]
    }
}

impl Ord for Release {
    /// Missing parts count as 0: `1.0` is `1.0.0`.
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        let part = |r: &Release, i: usize| r.0.get(i).copied().unwrap_or(0);
        (0..n)
            .map(|i| part(self, i).cmp(&part(other, i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Release {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// What an upgrade from one version to another means for the node.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Already on it: nothing to do.
    Same,
    /// A newer release of the same major version.
    Upgrade,
}

/// Whether a node on `from` may go to `to`. Refused, before anything
/// stops: a name that is no release number, a downgrade (the K2HFILE and
/// the ring protocol are only promised forward), and a major version
/// change (as Trove's own `prevent_major_version_upgrade`).
pub fn check_upgrade(from: &str, to: &str) -> Result<Step, String> {
    let parse = |v: &str, what: &str| {
        Release::parse(v).ok_or_else(|| {
            format!("the {what} datastore version `{v}` is not a release number such as 1.0.17")
        })
    };
    let (old, new) = (parse(from, "running")?, parse(to, "requested")?);
    if old.major() != new.major() {
        return Err(format!(
            "a major version upgrade is not allowed: {old} -> {new}"
        ));
    }
    match new.cmp(&old) {
        Ordering::Equal => Ok(Step::Same),
        Ordering::Greater => Ok(Step::Upgrade),
        Ordering::Less => Err(format!("a downgrade is not allowed: {old} -> {new}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_release_of_the_same_major_is_an_upgrade() {
        assert_eq!(check_upgrade("1.0.16", "1.0.17"), Ok(Step::Upgrade));
        assert_eq!(
            check_upgrade("1.0.9", "1.0.10"),
            Ok(Step::Upgrade),
            "numbers, not text"
        );
        assert_eq!(check_upgrade("1.0.17", "1.0.17"), Ok(Step::Same));
        assert_eq!(check_upgrade("1.0", "1.0.0"), Ok(Step::Same));
    }

    #[test]
    fn downgrades_major_changes_and_names_are_refused_with_the_reason() {
        let e = check_upgrade("1.0.17", "1.0.16").unwrap_err();
        assert!(
            e.contains("downgrade") && e.contains("1.0.17 -> 1.0.16"),
            "{e}"
        );
        let e = check_upgrade("1.0.17", "2.0.0").unwrap_err();
        assert!(e.contains("major"), "{e}");
        let e = check_upgrade("1.0.17", "latest").unwrap_err();
        assert!(e.contains("`latest`") && e.contains("requested"), "{e}");
        assert!(check_upgrade("1.0.17", "1..2").is_err());
        assert!(check_upgrade("", "1.0.17").is_err());
    }
}
