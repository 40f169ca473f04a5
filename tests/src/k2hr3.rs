//! The K2HR3 stand-in (tests/standins/k2hr3) and the small HTTP client the
//! tests reach it with.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{peer_python, repo_root};

/// The K2HR3 stand-in (tests/standins/k2hr3/k2hr3_standin.py), one per test.
pub struct K2hr3StandIn {
    child: Child,
    /// What it printed at start: url, role_yrn, resource_yrn, role_token, extdata_url.
    pub info: Value,
}

impl K2hr3StandIn {
    /// Starts one for a cluster on these ports (template AUTOMERGE on).
    pub async fn start(cluster: &str, ports: (u16, u16, u16)) -> K2hr3StandIn {
        Self::start_with(cluster, ports, true).await
    }

    /// Starts one whose template has AUTOMERGE `automerge`.
    pub async fn start_with(
        cluster: &str,
        ports: (u16, u16, u16),
        automerge: bool,
    ) -> K2hr3StandIn {
        let mut child = Command::new(peer_python())
            .arg(repo_root().join("tests/standins/k2hr3/k2hr3_standin.py"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--tenant",
                "trove",
                "--role",
                cluster,
            ])
            .args([
                "--server-port",
                &ports.0.to_string(),
                "--server-ctlport",
                &ports.1.to_string(),
                "--slave-ctlport",
                &ports.2.to_string(),
                "--automerge",
                if automerge { "on" } else { "off" },
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("K2HR3 stand-in starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("stand-in ready")
            .unwrap()
            .unwrap();
        K2hr3StandIn {
            child,
            info: serde_json::from_str(&line).unwrap(),
        }
    }

    /// GET on the stand-in (its K2HR3 API or its test controls).
    pub async fn get(&self, path: &str) -> Value {
        http_json(
            "GET",
            &format!("{}{}", self.info["url"].as_str().unwrap(), path),
            None,
        )
        .await
    }

    /// The k2hdkc.ini K2HR3 renders now for the role (members included).
    pub async fn rendered_ini(&self) -> String {
        let url = format!(
            "{}/v1/resource/{}",
            self.info["url"].as_str().unwrap(),
            self.info["resource_yrn"].as_str().unwrap()
        );
        let token = format!("R={}", self.info["role_token"].as_str().unwrap());
        let v = http_json_auth("GET", &url, None, Some(&token)).await;
        v["resource"].as_str().unwrap_or_default().to_owned()
    }

    /// Sets a fault mode (`ok`, `down`, `error500`, `slow`).
    pub async fn fault(&self, mode: &str) {
        http_json(
            "POST",
            &format!("{}/_standin/fault", self.info["url"].as_str().unwrap()),
            Some(serde_json::json!({"mode": mode})),
        )
        .await;
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A tiny HTTP/1.1 JSON client for the stand-in (test code only).
pub async fn http_json(method: &str, url: &str, body: Option<Value>) -> Value {
    http_json_auth(method, url, body, None).await
}

/// Same, with an `x-auth-token` header.
pub async fn http_json_auth(
    method: &str,
    url: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Value {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("stand-in reachable");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("x-auth-token: {t}\r\n"))
        .unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    tokio::io::AsyncWriteExt::write_all(&mut stream, req.as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body.trim()).unwrap_or(Value::String(body.to_owned()))
}

impl K2hr3StandIn {
    /// Adds another member as if a node at `ip` had registered (`cuk` is
    /// its host name, the chmpx id seed of the K2HDKC template, too). For
    /// a member that does not run, use an [`AbsentHost`]'s address:
    /// chmpx refuses an ini with two servers on one address and port, and
    /// nothing may be reached outside this machine.
    pub async fn add_member(&self, ip: &str, port: u16, cuk: &str) {
        let v = http_json(
            "POST",
            &format!("{}/_standin/member", self.info["url"].as_str().unwrap()),
            Some(serde_json::json!({"ip": ip, "port": port, "cuk": cuk, "tag": cuk})),
        )
        .await;
        assert_eq!(v["result"], true, "{v}");
    }

    /// Removes a member [`K2hr3StandIn::add_member`] added.
    pub async fn remove_member(&self, cuk: &str) {
        let v = http_json(
            "DELETE",
            &format!(
                "{}/_standin/member?cuk={cuk}",
                self.info["url"].as_str().unwrap()
            ),
            None,
        )
        .await;
        assert_eq!(v["result"], true, "{v}");
    }

    /// The calls the stand-in recorded.
    pub async fn calls(&self) -> Vec<Value> {
        self.get("/_standin/calls").await["calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
