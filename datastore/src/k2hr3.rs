//! The K2HR3 REST API, the subset a node uses with a role token
//! (yahoojapan/k2hr3 `api_role.md`, `api_resource.md`, `api_extdata.md`):
//! read the EXTDATA text for the role and its token, register this node
//! in the role, fetch the k2hdkc.ini the role's RESOURCE renders, leave.
//!
//! Calls are bounded; transient failures (connection, 5xx, timeout) are
//! retried a few times with backoff, refusals (4xx) are not. The role
//! token never appears in errors or logs.

use std::time::Duration;

use serde_json::Value;

/// User-Agent the EXTDATA endpoint expects from a Trove node (the old
/// system's value).
pub const EXTDATA_USER_AGENT: &str = "extdata_k2hr3_trove";
/// One HTTP request's bound.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts for a transient failure.
pub const ATTEMPTS: u32 = 4;

/// Why a K2HR3 call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum K2hr3Error {
    /// Unreachable, timed out or 5xx after every attempt.
    #[error("K2HR3 {what}: unavailable after {attempts} attempts: {cause}")]
    Unavailable {
        /// The call.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// The last cause.
        cause: String,
    },
    /// K2HR3 refused (4xx, or `result: false`).
    #[error("K2HR3 {what}: refused ({status}): {message}")]
    Refused {
        /// The call.
        what: String,
        /// HTTP status.
        status: u16,
        /// K2HR3's message.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("K2HR3 {what}: unexpected answer: {cause}")]
    BadAnswer {
        /// The call.
        what: String,
        /// What is wrong.
        cause: String,
    },
}

/// What a node needs to talk to K2HR3 for its role.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleAccess {
    /// API base URL, e.g. `http://k2hr3-api:18080`.
    pub api_url: String,
    /// The role's YRN (`yrn:yahoo:::tenant:role:name`).
    pub role_yrn: String,
    /// The role token (secret).
    pub role_token: String,
}

impl std::fmt::Debug for RoleAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleAccess")
            .field("api_url", &self.api_url)
            .field("role_yrn", &self.role_yrn)
            .field("role_token", &"***")
            .finish()
    }
}

impl RoleAccess {
    /// The resource YRN the role renders the ini into: `:role:` becomes
    /// `:resource:`.
    pub fn resource_yrn(&self) -> String {
        self.role_yrn.replacen(":role:", ":resource:", 1)
    }
}

/// Why an EXTDATA text gives no role access.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtdataError {
    /// K2HR3 says it could not expand its template (`K2HR3_ERROR_MSG`).
    #[error("K2HR3 could not expand the EXTDATA template: {0}")]
    NotExpanded(String),
    /// Names the text should set and does not.
    #[error("EXTDATA text lacks {0}")]
    Lacks(String),
}

/// Reads role, token and API URL from the EXTDATA text: `NAME="value"`
/// lines of k2hr3_api's `config/k2hr3-init.sh.templ` (the old image ran
/// it as a script; this only reads it). K2HR3 puts a failure to expand
/// the template in `K2HR3_ERROR_MSG`.
pub fn parse_extdata(text: &str, names: &ExtdataNames) -> Result<RoleAccess, ExtdataError> {
    let mut api = None;
    let mut role = None;
    let mut token = None;
    let mut error = None;
    for line in text.lines() {
        let line = line.trim().trim_start_matches("export ").trim();
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
        match k.trim() {
            k if k == names.api_url => api = Some(v),
            k if k == names.role => role = Some(v),
            k if k == names.role_token => token = Some(v),
            "K2HR3_ERROR_MSG" => error = Some(v),
            _ => {}
        }
    }
    if let Some(e) = error.filter(|e| !e.is_empty() && e != "null") {
        return Err(ExtdataError::NotExpanded(e));
    }
    let missing: Vec<&str> = [
        (&api, names.api_url),
        (&role, names.role),
        (&token, names.role_token),
    ]
    .iter()
    .filter(|(v, _)| v.as_ref().is_none_or(|s| s.is_empty()))
    .map(|(_, n)| *n)
    .collect();
    if !missing.is_empty() {
        return Err(ExtdataError::Lacks(missing.join(", ")));
    }
    Ok(RoleAccess {
        api_url: api.unwrap_or_default().trim_end_matches('/').to_owned(),
        role_yrn: role.unwrap_or_default(),
        role_token: token.unwrap_or_default(),
    })
}

/// The variable names of the EXTDATA text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtdataNames {
    /// The API URL's name.
    pub api_url: &'static str,
    /// The role YRN's name.
    pub role: &'static str,
    /// The role token's name.
    pub role_token: &'static str,
}

/// This host's entry in a K2HR3 role, as k2hr3-init sends it: K2HR3
/// records the request's source address with the port, the container's
/// unique key (CUK), the extra data and the tag (the host name or seed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub port: u16,
    pub cuk: String,
    pub extra: String,
    pub tag: String,
}

/// A K2HR3 client for one role.
#[derive(Clone, Debug)]
pub struct K2hr3 {
    http: reqwest::Client,
    access: RoleAccess,
}

fn transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// Sends a request built by `make`, retrying transient failures. Returns
/// the status and body of the final answer.
async fn send(
    what: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(u16, String), K2hr3Error> {
    let mut cause = String::new();
    for attempt in 1..=ATTEMPTS {
        match make().timeout(REQUEST_TIMEOUT).send().await {
            Ok(resp) if !transient(resp.status()) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                return Ok((status, body));
            }
            Ok(resp) => cause = format!("HTTP {}", resp.status()),
            // reqwest's error text names the URL without credentials; the
            // token travels in a header, never in a URL.
            Err(e) => cause = e.without_url().to_string(),
        }
        if attempt < ATTEMPTS {
            tracing::warn!(call = what, attempt, cause = %cause, "K2HR3 call failed; retrying");
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
        }
    }
    Err(K2hr3Error::Unavailable {
        what: what.to_owned(),
        attempts: ATTEMPTS,
        cause,
    })
}

fn checked(what: &str, status: u16, body: &str) -> Result<Value, K2hr3Error> {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let ok =
        (200..300).contains(&status) && json.get("result").and_then(Value::as_bool).unwrap_or(true);
    if ok {
        Ok(json)
    } else {
        let message = json
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_owned();
        Err(K2hr3Error::Refused {
            what: what.to_owned(),
            status,
            message,
        })
    }
}

/// Fetches the EXTDATA text (never executed) and reads the role access.
pub async fn fetch_extdata(
    http: &reqwest::Client,
    url: &str,
    names: &ExtdataNames,
) -> Result<RoleAccess, K2hr3Error> {
    let what = "EXTDATA";
    let (status, body) = send(what, || {
        http.get(url)
            .header(reqwest::header::USER_AGENT, EXTDATA_USER_AGENT)
    })
    .await?;
    if !(200..300).contains(&status) {
        return Err(K2hr3Error::Refused {
            what: what.into(),
            status,
            message: "EXTDATA not served for this URL".into(),
        });
    }
    parse_extdata(&body, names).map_err(|e| K2hr3Error::BadAnswer {
        what: what.into(),
        cause: e.to_string(),
    })
}

impl K2hr3 {
    /// A client for `access`.
    pub fn new(http: reqwest::Client, access: RoleAccess) -> Self {
        Self { http, access }
    }

    /// The role access this client uses.
    pub fn access(&self) -> &RoleAccess {
        &self.access
    }

    fn role_url(&self) -> String {
        format!("{}/v1/role/{}", self.access.api_url, self.access.role_yrn)
    }

    fn auth(&self) -> String {
        format!("R={}", self.access.role_token)
    }

    /// Adds this node (K2HR3 records the request's source address) to the
    /// role as `member`. Idempotent.
    pub async fn register(&self, member: &Member) -> Result<(), K2hr3Error> {
        let what = "register node in role";
        let (status, body) = self.membership(what, reqwest::Method::PUT, member).await?;
        checked(what, status, &body).map(|_| ())
    }

    /// Removes this node from the role (K2HR3 answers 204).
    pub async fn deregister(&self, member: &Member) -> Result<(), K2hr3Error> {
        let what = "remove node from role";
        let (status, body) = self
            .membership(what, reqwest::Method::DELETE, member)
            .await?;
        // Already gone is fine: leaving is idempotent.
        if status == 404 {
            return Ok(());
        }
        checked(what, status, &body).map(|_| ())
    }

    /// A PUT or DELETE of this node on the role URL, K2HR3's host query.
    async fn membership(
        &self,
        what: &str,
        method: reqwest::Method,
        member: &Member,
    ) -> Result<(u16, String), K2hr3Error> {
        let url = self.role_url();
        let port = member.port.to_string();
        send(what, || {
            self.http
                .request(method.clone(), &url)
                .header("x-auth-token", self.auth())
                .query(&[
                    ("port", port.as_str()),
                    ("cuk", member.cuk.as_str()),
                    ("extra", member.extra.as_str()),
                    ("tag", member.tag.as_str()),
                ])
        })
        .await
    }

    /// The role's RESOURCE as rendered for this role: the k2hdkc.ini text.
    pub async fn resource(&self) -> Result<String, K2hr3Error> {
        let what = "get k2hdkc.ini resource";
        let url = format!(
            "{}/v1/resource/{}",
            self.access.api_url,
            self.access.resource_yrn()
        );
        let (status, body) = send(what, || {
            self.http.get(&url).header("x-auth-token", self.auth())
        })
        .await?;
        let json = checked(what, status, &body)?;
        match json.get("resource") {
            Some(Value::String(text)) => Ok(text.clone()),
            _ => Err(K2hr3Error::BadAnswer {
                what: what.into(),
                cause: "no \"resource\" text in the answer".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: ExtdataNames = ExtdataNames {
        api_url: "K2HR3_API_HOST_URI",
        role: "K2HR3_ROLE_NAME",
        role_token: "K2HR3_ROLE_TOKEN",
    };

    #[test]
    fn extdata_is_read_not_run() {
        // The shape of k2hr3_api's k2hr3-init.sh.templ once expanded.
        let text = "#!/bin/sh\nK2HR3_ROLE_TOKEN=\"abc\"\nK2HR3_ROLE_NAME=\"yrn:yahoo:::t:role:cluster\"\nK2HR3_RESOURCE_NAME=$(echo \"${K2HR3_ROLE_NAME}\" | sed -e 's/:role:/:resource:/g')\nK2HR3_ROLE_TENANT=\"t\"\nK2HR3_API_HOST_URI=\"http://k2hr3:18080/\"\nK2HR3_ERROR_MSG=\"null\"\nrm -rf / # never executed\n";
        let a = parse_extdata(text, &NAMES).unwrap();
        assert_eq!(a.api_url, "http://k2hr3:18080");
        assert_eq!(a.role_yrn, "yrn:yahoo:::t:role:cluster");
        assert_eq!(a.resource_yrn(), "yrn:yahoo:::t:resource:cluster");
        assert!(!format!("{a:?}").contains("abc"), "token masked in Debug");
        let err = parse_extdata("K2HR3_ROLE_NAME=x\n", &NAMES)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("K2HR3_API_HOST_URI") && err.contains("K2HR3_ROLE_TOKEN"),
            "{err}"
        );
        let err = parse_extdata(&format!("{text}K2HR3_ERROR_MSG=\"no such role\"\n"), &NAMES)
            .unwrap_err();
        assert_eq!(err, ExtdataError::NotExpanded("no such role".into()));
    }
}
