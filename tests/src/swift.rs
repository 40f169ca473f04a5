//! The real Swift and Keystone `tests/run` starts (`tests/swift/swift.sh`):
//! where they are, a tenant's token, and what a test asks of Swift
//! directly. `TEST_SWIFT_ENV` names a file of `KEY=value` lines:
//! `KEYSTONE_URL`, `PROJECT_ID` (the demo tenant), `USER`,
//! `PASSWORD_FILE` (0600), `SWIFT_URL` (the proxy).

use std::collections::HashMap;

use serde_json::{json, Value};

/// Keystone and Swift as the test run started them.
#[derive(Debug, Clone)]
pub struct SwiftEnv {
    keystone: String,
    project_id: String,
    user: String,
    password: String,
    swift: String,
    http: reqwest::Client,
}

impl SwiftEnv {
    /// Reads `TEST_SWIFT_ENV`; panics naming what is missing.
    pub fn load() -> SwiftEnv {
        let path = std::env::var("TEST_SWIFT_ENV").expect(
            "TEST_SWIFT_ENV is not set: the backup tests need the Keystone and Swift tests/run starts (run them with bash tests/run)",
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let kv: HashMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |k: &str| {
            kv.get(k)
                .unwrap_or_else(|| panic!("{path} has no {k}"))
                .to_string()
        };
        let password = std::fs::read_to_string(get("PASSWORD_FILE"))
            .expect("the demo password file")
            .trim()
            .to_owned();
        SwiftEnv {
            keystone: get("KEYSTONE_URL"),
            project_id: get("PROJECT_ID"),
            user: get("USER"),
            password,
            swift: get("SWIFT_URL"),
            http: reqwest::Client::new(),
        }
    }

    /// The tenant's account (`backup_info.swift_url`).
    pub fn account_url(&self) -> String {
        format!("{}/v1/AUTH_{}", self.swift, self.project_id)
    }

    /// A new project-scoped token of the tenant. The test Keystone runs on
    /// sqlite: logins at the same moment (tests run in parallel) can meet
    /// its lock and get a 500 "database is locked" (sqlite refuses a
    /// read-then-write transaction at once rather than wait), so a 5xx is
    /// asked again, at most 5 times.
    pub async fn token(&self) -> String {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.user, "domain": {"id": "default"}, "password": self.password}}},
            "scope": {"project": {"id": self.project_id}}}});
        let r = self
            .keystone_call(|| {
                self.http
                    .post(format!("{}/auth/tokens", self.keystone))
                    .json(&body)
            })
            .await;
        assert_eq!(r.status().as_u16(), 201, "Keystone token");
        r.headers()["x-subject-token"].to_str().unwrap().to_owned()
    }

    /// Sends the request `make` builds; a 5xx is asked again (see
    /// [`SwiftEnv::token`]), at most 5 times in all.
    async fn keystone_call(&self, make: impl Fn() -> reqwest::RequestBuilder) -> reqwest::Response {
        let mut attempt = 0;
        loop {
            let r = make().send().await.expect("Keystone answers");
            attempt += 1;
            if r.status().as_u16() < 500 || attempt == 5 {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
        }
    }

    /// Revokes `token` (as its expiry would end it); a 5xx is asked again
    /// (see [`SwiftEnv::token`]).
    pub async fn revoke(&self, token: &str) {
        let r = self
            .keystone_call(|| {
                self.http
                    .delete(format!("{}/auth/tokens", self.keystone))
                    .header("X-Auth-Token", token)
                    .header("X-Subject-Token", token)
            })
            .await;
        assert_eq!(r.status().as_u16(), 204, "revoke");
    }

    /// A request to the tenant's account (`path` after the account).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Vec<u8>>,
    ) -> reqwest::Response {
        let mut r = self
            .http
            .request(method, format!("{}/{}", self.account_url(), path))
            .header("X-Auth-Token", token);
        if let Some(b) = body {
            r = r.body(b);
        }
        r.send().await.expect("Swift answers")
    }

    /// The names in `container` (empty when it does not exist).
    pub async fn list(&self, container: &str, token: &str) -> Vec<String> {
        let r = self
            .request(reqwest::Method::GET, container, token, None)
            .await;
        if r.status().as_u16() == 404 {
            return vec![];
        }
        assert!(r.status().is_success(), "list {container}: {}", r.status());
        r.text()
            .await
            .unwrap()
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The names in `container` that start with `prefix` (a backup's
    /// manifest and segments start with its id).
    pub async fn objects_of(&self, container: &str, prefix: &str, token: &str) -> Vec<String> {
        self.list(container, token)
            .await
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    /// Headers of an object, as a map of lower-case names.
    pub async fn head(&self, path: &str, token: &str) -> (u16, HashMap<String, String>) {
        let r = self.request(reqwest::Method::HEAD, path, token, None).await;
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        (r.status().as_u16(), headers)
    }

    /// What Trove's `backup delete` does for a large object.
    pub async fn delete_manifest(&self, path: &str, token: &str) -> Value {
        let r = self
            .http
            .delete(format!(
                "{}/{}?multipart-manifest=delete",
                self.account_url(),
                path
            ))
            .header("X-Auth-Token", token)
            .header("Accept", "application/json")
            .send()
            .await
            .expect("Swift answers");
        r.json().await.unwrap_or(Value::Null)
    }
}
