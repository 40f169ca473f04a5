//! The configuration-group parameters of a K2HDKC instance, as Trove sends
//! them in `prepare`'s `config_contents`/`overrides` and in
//! `update_overrides`/`apply_overrides`. Rules follow the datastore's
//! `validation-rules.json` (packaging/trove): every problem is reported,
//! and nothing is applied unless all values are valid.

use serde_json::{Map, Value};

/// Parameter names, as in validation-rules.json.
pub const PARAMETERS: &[&str] = &[
    "cluster-name",
    "extdata-url",
    "chmpx-server-port",
    "chmpx-server-ctlport",
    "chmpx-slave-ctlport",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The lowest port the rules allow.
pub const MIN_PORT: u16 = 1000;
/// The highest: chmpx keeps ports in a C `short`, so 32768 and up become
/// negative and chmpx exits (`Could not listen port(-25516)`, seen on the
/// real chmpx 1.0.111 with 40020).
pub const MAX_PORT: u16 = 32767;

/// The effective parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameters {
    /// `cluster-name`: the chmpx GROUP.
    pub cluster_name: Option<String>,
    /// `extdata-url`: K2HR3 EXTDATA URL carrying role, token and API URL.
    pub extdata_url: Option<String>,
    /// `chmpx-server-port`.
    pub server_port: u16,
    /// `chmpx-server-ctlport`.
    pub server_ctlport: u16,
    /// `chmpx-slave-ctlport`.
    pub slave_ctlport: u16,
    /// `http_proxy` for K2HR3 calls.
    pub http_proxy: Option<String>,
    /// `https_proxy` for K2HR3 calls.
    pub https_proxy: Option<String>,
    /// `no_proxy` for K2HR3 calls.
    pub no_proxy: Option<String>,
}

impl Default for Parameters {
    fn default() -> Self {
        Self {
            cluster_name: None,
            extdata_url: None,
            server_port: 8020,
            server_ctlport: 8021,
            slave_ctlport: 8031,
            http_proxy: None,
            https_proxy: None,
            no_proxy: None,
        }
    }
}

/// The value as text, `None` for null, empty or the literal `None`.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() || s == "None" => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

fn port(name: &str, value: &Value, problems: &mut Vec<String>) -> Option<u16> {
    let n = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if (i64::from(MIN_PORT)..=i64::from(MAX_PORT)).contains(&n) => Some(n as u16),
        Some(n) => {
            problems.push(format!("{name}: {n} is outside {MIN_PORT}..{MAX_PORT} (chmpx cannot use ports above {MAX_PORT})"));
            None
        }
        None => {
            problems.push(format!("{name}: not an integer"));
            None
        }
    }
}

fn url(name: &str, value: &str, problems: &mut Vec<String>) -> bool {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => true,
        _ => {
            problems.push(format!("{name}: not an http(s) URL"));
            false
        }
    }
}

impl Parameters {
    /// These parameters with `changes` applied (or removed, when `remove`).
    /// Fails with every problem found; `self` is untouched either way.
    pub fn with(
        &self,
        changes: &Map<String, Value>,
        remove: bool,
    ) -> Result<Parameters, Vec<String>> {
        let mut next = self.clone();
        let mut problems = Vec::new();
        let defaults = Parameters::default();
        for (name, value) in changes {
            match name.as_str() {
                "cluster-name" => next.cluster_name = if remove { None } else { text(value) },
                "extdata-url" => {
                    next.extdata_url = match (remove, text(value)) {
                        (false, Some(v)) if url(name, &v, &mut problems) => Some(v),
                        _ => None,
                    }
                }
                "chmpx-server-port" | "chmpx-server-ctlport" | "chmpx-slave-ctlport" => {
                    let (slot, default) = match name.as_str() {
                        "chmpx-server-port" => (&mut next.server_port, defaults.server_port),
                        "chmpx-server-ctlport" => {
                            (&mut next.server_ctlport, defaults.server_ctlport)
                        }
                        _ => (&mut next.slave_ctlport, defaults.slave_ctlport),
                    };
                    *slot = if remove || text(value).is_none() {
                        default
                    } else {
                        port(name, value, &mut problems).unwrap_or(*slot)
                    };
                }
                "http_proxy" | "https_proxy" => {
                    let v = if remove { None } else { text(value) };
                    if let Some(v) = &v {
                        url(name, v, &mut problems);
                    }
                    if name == "http_proxy" {
                        next.http_proxy = v;
                    } else {
                        next.https_proxy = v;
                    }
                }
                "no_proxy" => next.no_proxy = if remove { None } else { text(value) },
                other => problems.push(format!(
                    "{other}: not a K2HDKC configuration parameter (known: {})",
                    PARAMETERS.join(", ")
                )),
            }
        }
        let ports = [next.server_port, next.server_ctlport, next.slave_ctlport];
        if ports[0] == ports[1] || ports[0] == ports[2] || ports[1] == ports[2] {
            problems.push(
                "chmpx-server-port, chmpx-server-ctlport and chmpx-slave-ctlport must differ"
                    .into(),
            );
        }
        if problems.is_empty() {
            Ok(next)
        } else {
            Err(problems)
        }
    }

    /// Parameters from a rendered `config.template` (`[k2hdkc]` with
    /// `name=value` lines), as `prepare` sends it in `config_contents`.
    pub fn from_config_contents(text_in: &str) -> Result<Parameters, Vec<String>> {
        let mut values = Map::new();
        for line in text_in.lines().map(str::trim) {
            if line.is_empty()
                || line.starts_with('#')
                || line.starts_with(';')
                || line.starts_with('[')
            {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                values.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
            }
        }
        Parameters::default().with(&values, false)
    }

    /// The parameters as the overrides map Trove would send.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<String>| {
            m.insert(k.into(), v.map(Value::String).unwrap_or(Value::Null));
        };
        put("cluster-name", self.cluster_name.clone());
        put("extdata-url", self.extdata_url.clone());
        put("http_proxy", self.http_proxy.clone());
        put("https_proxy", self.https_proxy.clone());
        put("no_proxy", self.no_proxy.clone());
        m.insert("chmpx-server-port".into(), self.server_port.into());
        m.insert("chmpx-server-ctlport".into(), self.server_ctlport.into());
        m.insert("chmpx-slave-ctlport".into(), self.slave_ctlport.into());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn template_defaults_parse() {
        let p = Parameters::from_config_contents(
            "[k2hdkc]\ncluster-name=None\nextdata-url=None\nchmpx-server-port=8020\nchmpx-server-ctlport=8021\nchmpx-slave-ctlport=8031\nhttp_proxy=None\nhttps_proxy=None\nno_proxy=None\n",
        )
        .unwrap();
        assert_eq!(p, Parameters::default());
    }

    #[test]
    fn valid_overrides_apply() {
        let p = Parameters::default()
            .with(&map(json!({"cluster-name": "c1", "chmpx-server-port": "18020", "extdata-url": "https://k2hr3.example/v1/extdata/x"})), false)
            .unwrap();
        assert_eq!(p.cluster_name.as_deref(), Some("c1"));
        assert_eq!(p.server_port, 18020);
        let back = p
            .with(
                &map(json!({"cluster-name": null, "chmpx-server-port": 1})),
                true,
            )
            .unwrap();
        assert_eq!(back.cluster_name, None);
        assert_eq!(back.server_port, 8020);
    }

    #[test]
    fn every_problem_is_reported_and_nothing_applied() {
        let base = Parameters::default();
        let err = base
            .with(&map(json!({"chmpx-server-port": 80, "chmpx-slave-ctlport": "x", "extdata-url": "ftp://h/x", "colour": "red"})), false)
            .unwrap_err();
        assert_eq!(err.len(), 4, "{err:?}");
        assert!(err.iter().any(|e| e.contains("outside 1000..32767")));
        assert!(err.iter().any(|e| e.contains("colour")));
        assert!(err.iter().any(|e| e.contains("extdata-url")));
        assert_eq!(base, Parameters::default());
    }

    /// chmpx 1.0.111 exits on 40020 (`Could not listen port(-25516)`):
    /// a port above a C short's range is refused before anything changes.
    #[test]
    fn ports_chmpx_cannot_hold_are_refused() {
        let err = Parameters::default()
            .with(&map(json!({"chmpx-server-port": 40020})), false)
            .unwrap_err();
        assert!(
            err[0].contains("chmpx cannot use ports above 32767"),
            "{err:?}"
        );
        assert!(Parameters::default()
            .with(&map(json!({"chmpx-server-port": 32767})), false)
            .is_ok());
    }

    #[test]
    fn ports_must_differ() {
        let err = Parameters::default()
            .with(&map(json!({"chmpx-server-ctlport": 8020})), false)
            .unwrap_err();
        assert!(err[0].contains("must differ"));
    }
}
