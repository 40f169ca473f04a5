//! rpc-bench: measures a guest agent the way the control plane meets it.
//!
//! Starts the agent command given after `--`, then reports: time from exec
//! to the first answered `rpc_ping`, idle RSS, and `rpc_ping` latency
//! (p50/p99) and calls per second with 1 and with 8 concurrent callers.
//! The caller is an oslo-compatible RPC client (secure RPC, oslo 2.0
//! envelopes), the same for every agent measured, so the figures compare
//! agents, not clients.
//!
//! rpc-bench --label NAME --guest-id ID --key KEY [--seconds 5] -- CMD ARGS...

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driver_api::secure::RpcKey;
use e2e_tests::raw::Raw;
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde_json::{json, Value};
use tokio::sync::oneshot;

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

struct Client {
    channel: Channel,
    reply_q: String,
    waiters: Waiters,
    /// When the first reply of all arrived, whichever call it answers.
    first_reply: Arc<Mutex<Option<Instant>>>,
    key: RpcKey,
    topic: String,
}

impl Client {
    async fn connect(url: &str, guest_id: &str, key: &str) -> Arc<Client> {
        let raw = Raw::connect_to(url).await;
        let channel = raw.channel().clone();
        // As oslo.messaging's client does before it sends: on a broker
        // that has just started, no agent has declared the control
        // exchange yet, and a publish to a missing exchange closes the
        // channel. Same arguments as oslo's defaults (and the agent's).
        channel
            .exchange_declare(
                "trove".into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare the trove exchange");
        let (reply_q, mut consumer) = raw.reply_queue().await;
        let waiters: Waiters = Arc::default();
        let first_reply: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (w, first) = (waiters.clone(), first_reply.clone());
        tokio::spawn(async move {
            let _raw = raw;
            while let Some(Ok(d)) = consumer.next().await {
                let Ok(outer) = serde_json::from_slice::<Value>(&d.data) else {
                    continue;
                };
                let Some(inner) = outer["oslo.message"]
                    .as_str()
                    .and_then(|t| serde_json::from_str::<Value>(t).ok())
                else {
                    continue;
                };
                if inner["ending"] != true {
                    continue;
                }
                first.lock().unwrap().get_or_insert_with(Instant::now);
                let id = inner["_msg_id"].as_str().unwrap_or_default().to_owned();
                if let Some(tx) = w.lock().unwrap().remove(&id) {
                    let _ = tx.send(inner);
                }
            }
        });
        Arc::new(Client {
            channel,
            reply_q,
            waiters,
            first_reply,
            key: RpcKey::new(key),
            topic: format!("guestagent.{guest_id}"),
        })
    }

    /// One `rpc_ping` call; `Ok(latency)` when answered `true` in time.
    async fn ping(&self, timeout: Duration) -> Result<Duration, String> {
        let msg_id = uuid::Uuid::new_v4().simple().to_string();
        let inner = json!({
            "method": "rpc_ping", "args": {}, "version": "1.0", "namespace": null,
            "_unique_id": uuid::Uuid::new_v4().simple().to_string(),
            "_msg_id": msg_id, "_reply_q": self.reply_q, "_timeout": null,
            "_context_context": self.key.encrypt_json(&json!({"request_id": "req-bench", "tenant": "bench", "roles": []})),
        });
        let body = json!({"oslo.version": "2.0", "oslo.message": inner.to_string()}).to_string();
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(msg_id.clone(), tx);
        let started = Instant::now();
        self.channel
            .basic_publish(
                "trove".into(),
                self.topic.clone().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                json_props(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            _ => {
                self.waiters.lock().unwrap().remove(&msg_id);
                return Err("timeout".into());
            }
        };
        let elapsed = started.elapsed();
        let result = match &reply["result"] {
            Value::String(s) => self.key.decrypt_json(s).map_err(|e| e.to_string())?,
            other => other.clone(),
        };
        if result == json!(true) {
            Ok(elapsed)
        } else {
            Err(format!("unexpected reply {reply}"))
        }
    }
}

/// kombu decodes a body only when it is labelled JSON, as oslo sends it.
fn json_props() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn load(client: &Arc<Client>, callers: usize, seconds: f64) -> Value {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                match c.ping(Duration::from_secs(5)).await {
                    Ok(d) => lat.push(d),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    json!({"callers": callers, "calls": all.len(), "errors": errors, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "per_second": all.len() as f64 / seconds})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let split = args.iter().position(|a| a == "--").expect(
        "usage: rpc-bench --label L --guest-id ID --key K [--seconds S] [--url U] [--agent-log FILE] -- CMD...",
    );
    let (opts, cmd) = (&args[1..split], &args[split + 1..]);
    let get = |name: &str| {
        opts.iter()
            .position(|a| a == name)
            .map(|i| opts[i + 1].clone())
    };
    let label = get("--label").unwrap_or_else(|| "agent".into());
    let guest_id = get("--guest-id").expect("--guest-id");
    let key = get("--key").expect("--key");
    let seconds: f64 = get("--seconds").map(|s| s.parse().unwrap()).unwrap_or(5.0);
    let url = get("--url").unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());

    // The agent's output goes to --agent-log when given, so a start that
    // never answers can be told apart from a lost ping.
    let agent_log = get("--agent-log");
    let output = || match &agent_log {
        Some(path) => std::fs::File::create(path)
            .map(std::process::Stdio::from)
            .expect("create --agent-log"),
        None => std::process::Stdio::null(),
    };
    let log_tail = || {
        agent_log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|text| {
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "\nthe agent's last lines:\n{}",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                )
            })
            .unwrap_or_default()
    };

    let client = Client::connect(&url, &guest_id, &key).await;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdout(std::process::Stdio::null())
        .stderr(output())
        .kill_on_drop(true)
        .spawn()
        .expect("start the agent");
    let pid = child.id().unwrap();
    // Pings every 25 ms until one is answered; a late answer to an earlier
    // ping counts, so a slow machine measures its start, not a timeout.
    let first_ping = loop {
        if let Err(e) = client.ping(Duration::from_millis(25)).await {
            if e != "timeout" && !e.starts_with("unexpected reply") {
                panic!("{label}: cannot send rpc_ping: {e}");
            }
        }
        if let Some(at) = *client.first_reply.lock().unwrap() {
            break at - started;
        }
        if started.elapsed() > Duration::from_secs(120) {
            panic!("{label}: no rpc_ping answer within 120 s{}", log_tail());
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{label}: agent exited early with {status}{}", log_tail());
        }
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_kib(pid);
    let one = load(&client, 1, seconds).await;
    let eight = load(&client, 8, seconds).await;
    let loaded_rss = rss_kib(pid);
    let _ = nix_kill(pid);
    let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    let report = json!({
        "label": label, "exec_to_first_ping_ms": first_ping.as_secs_f64() * 1000.0,
        "idle_rss_mib": idle_rss as f64 / 1024.0, "rss_after_load_mib": loaded_rss as f64 / 1024.0,
        "callers_1": one, "callers_8": eight,
    });
    println!("{report}");
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    // SIGTERM through the kill(1) argv, not a shell string.
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .map(|_| ())
}
