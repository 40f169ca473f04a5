//! Prometheus metrics of the agent and its datastore, served at
//! `/metrics` on `[<datastore>] metrics_listen` (off by default), in the
//! OpenMetrics text format Prometheus scrapes (the `prometheus-client`
//! crate encodes it).
//!
//! The agent's own are counted as it works: RPC requests by method and
//! outcome with their latency, heartbeats by status. The datastore's
//! (ring state, file sizes) and the data volume's use are read at scrape
//! time, each bounded, so a scrape answers within seconds even when
//! chmpx does not.

use std::sync::Arc;
use std::time::Duration;

use driver_api::{MetricKind, MetricSample};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long a scrape waits for the datastore's samples.
const SAMPLES_WITHIN: Duration = Duration::from_secs(5);
/// How long a client may take to send its request.
const REQUEST_WITHIN: Duration = Duration::from_secs(5);
/// The longest request head read.
const REQUEST_MAX: usize = 8 * 1024;
/// OpenMetrics' content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
/// A family of gauges read at scrape time.
type Gauges = Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>;
/// A family of counters read at scrape time (their source counts).
type Counts = Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>;

/// One family of samples read at scrape time.
enum ReadFamily {
    Gauges(Gauges),
    Counts(Counts),
}

/// The agent's own metrics.
pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<Labels, Counter>,
    rpc_seconds: Family<Labels, Histogram>,
    heartbeats: Family<Labels, Counter>,
    reconnects: Counter,
    backups: Family<Labels, Counter>,
    backup_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let rpc_requests = Family::<Labels, Counter>::default();
        registry.register(
            "trove_guestagent_rpc_requests",
            "Trove RPC requests handled, by method and outcome (ok, error)",
            rpc_requests.clone(),
        );
        let rpc_seconds = Family::<Labels, Histogram>::new_with_constructor(|| {
            // 1 ms to about 9 minutes: a ping to a prepare or a merge.
            Histogram::new(exponential_buckets(0.001, 4.0, 10))
        });
        registry.register(
            "trove_guestagent_rpc_request_duration_seconds",
            "Time to handle a Trove RPC request, by method",
            rpc_seconds.clone(),
        );
        let heartbeats = Family::<Labels, Counter>::default();
        registry.register(
            "trove_guestagent_heartbeats",
            "Heartbeats sent to trove-conductor, by the status reported",
            heartbeats.clone(),
        );
        let reconnects = Counter::default();
        registry.register(
            "trove_guestagent_broker_reconnects",
            "Times the link to RabbitMQ went down and the agent connected again",
            reconnects.clone(),
        );
        let backups = Family::<Labels, Counter>::default();
        registry.register(
            "trove_guestagent_backups",
            "Backups ended, by outcome (completed, failed)",
            backups.clone(),
        );
        let backup_bytes = Counter::default();
        registry.register(
            "trove_guestagent_backup_bytes",
            "Bytes of the backups completed (as reported to Trove)",
            backup_bytes.clone(),
        );
        Self {
            registry,
            rpc_requests,
            rpc_seconds,
            heartbeats,
            reconnects,
            backups,
            backup_bytes,
        }
    }

    /// A request handled.
    pub fn rpc_done(&self, method: &str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.rpc_requests
            .get_or_create(&vec![
                ("method".into(), method.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
        self.rpc_seconds
            .get_or_create(&vec![("method".into(), method.into())])
            .observe(elapsed.as_secs_f64());
    }

    /// The broker link went down; the agent connects again.
    pub fn reconnect(&self) {
        self.reconnects.inc();
    }

    /// A backup ended: completed with `bytes`, or failed.
    pub fn backup_done(&self, bytes: Option<u64>) {
        let outcome = if bytes.is_some() {
            "completed"
        } else {
            "failed"
        };
        self.backups
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
        if let Some(b) = bytes {
            self.backup_bytes.inc_by(b);
        }
    }

    /// A heartbeat sent.
    pub fn heartbeat(&self, status: &str) {
        self.heartbeats
            .get_or_create(&vec![("status".into(), status.into())])
            .inc();
    }

    /// The text of one scrape: the agent's metrics and `samples` (gauges
    /// read now), grouped by name.
    pub fn encode(&self, samples: &[MetricSample]) -> String {
        let mut out = String::new();
        let mut now = Registry::default();
        let mut families: Vec<(&str, &str, ReadFamily)> = Vec::new();
        for s in samples {
            let at = match families.iter().position(|(n, _, _)| *n == s.name) {
                Some(at) => at,
                None => {
                    let family = match s.kind {
                        MetricKind::Gauge => ReadFamily::Gauges(Family::default()),
                        MetricKind::Counter => ReadFamily::Counts(Family::default()),
                    };
                    families.push((&s.name, &s.help, family));
                    families.len() - 1
                }
            };
            match &families[at].2 {
                ReadFamily::Gauges(f) => {
                    f.get_or_create(&s.labels).set(s.value);
                }
                ReadFamily::Counts(f) => {
                    f.get_or_create(&s.labels).inc_by(s.value);
                }
            }
        }
        for (name, help, family) in families {
            match family {
                ReadFamily::Gauges(f) => now.register(name, help, f),
                ReadFamily::Counts(f) => now.register(name, help, f),
            }
        }
        // Both registries in one exposition: the first without its `# EOF`.
        let mut first = String::new();
        if encode(&mut first, &self.registry).is_ok() {
            out.push_str(first.trim_end_matches("# EOF\n"));
        }
        let mut second = String::new();
        if encode(&mut second, &now).is_ok() {
            out.push_str(&second);
        }
        out
    }
}

/// Something that has gauges to add at scrape time.
#[async_trait::async_trait]
pub trait Sampler: Send + Sync + 'static {
    /// The gauges as of now.
    async fn samples(&self) -> Vec<MetricSample>;
}

/// Scrapes served at once; more connections are closed unanswered.
const MAX_SCRAPES_AT_ONCE: usize = 8;

/// Serves `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, sampler: Arc<dyn Sampler>) {
    // A bound on scrapes at once: each may ask chmpx, and a flood of
    // connections must not become a flood of tasks.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES_AT_ONCE));
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(peer = %peer, "metrics: too many scrapes at once; connection dropped");
            continue;
        };
        let (metrics, sampler) = (metrics.clone(), sampler.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let head = match tokio::time::timeout(REQUEST_WITHIN, read_head(&mut stream)).await {
                Ok(Ok(head)) => head,
                _ => return,
            };
            let path = head
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .split('?')
                .next()
                .unwrap_or("");
            let response = if !head.starts_with("GET ") {
                plain(405, "Method Not Allowed", "only GET\n")
            } else if path != "/metrics" {
                plain(404, "Not Found", "metrics are at /metrics\n")
            } else {
                let samples = tokio::time::timeout(SAMPLES_WITHIN, sampler.samples())
                    .await
                    .unwrap_or_else(|_| {
                        tracing::warn!(
                            "metrics: the datastore's samples took too long; served without them"
                        );
                        Vec::new()
                    });
                let body = metrics.encode(&samples);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                tracing::debug!(peer = %peer, error = %e, "metrics: the scraper left");
            }
            let _ = stream.shutdown().await;
        });
    }
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < REQUEST_MAX {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn plain(code: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<MetricSample>);

    #[async_trait::async_trait]
    impl Sampler for Fixed {
        async fn samples(&self) -> Vec<MetricSample> {
            self.0.clone()
        }
    }

    fn gauge(name: &str, labels: &[(&str, &str)], value: f64) -> MetricSample {
        MetricSample {
            name: name.into(),
            kind: MetricKind::Gauge,
            help: format!("{name} help"),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            value,
        }
    }

    #[tokio::test]
    async fn a_scrape_has_the_agents_counters_and_the_datastores_gauges() {
        let metrics = Arc::new(Metrics::new());
        metrics.rpc_done("rpc_ping", true, Duration::from_millis(2));
        metrics.rpc_done("prepare", false, Duration::from_secs(3));
        metrics.heartbeat("healthy");
        metrics.heartbeat("healthy");
        metrics.reconnect();
        metrics.backup_done(Some(1024));
        metrics.backup_done(None);
        let sampler = Arc::new(Fixed(vec![
            gauge("k2hdkc_ring_servers", &[("state", "service_in")], 3.0),
            gauge("k2hdkc_ring_servers", &[("state", "service_out")], 1.0),
            gauge("k2hdkc_node_serving", &[], 1.0),
            MetricSample {
                kind: MetricKind::Counter,
                ..gauge("k2hdkc_chmpx_messages_sent", &[("peer", "server")], 120.0)
            },
        ]));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, metrics, sampler));

        let body = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert_eq!(body.status(), 200);
        assert!(body.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let text = body.text().await.unwrap();
        for want in [
            "# TYPE trove_guestagent_rpc_requests counter",
            r#"trove_guestagent_rpc_requests_total{method="prepare",outcome="error"} 1"#,
            r#"trove_guestagent_rpc_requests_total{method="rpc_ping",outcome="ok"} 1"#,
            "# TYPE trove_guestagent_rpc_request_duration_seconds histogram",
            r#"trove_guestagent_rpc_request_duration_seconds_count{method="prepare"} 1"#,
            r#"trove_guestagent_heartbeats_total{status="healthy"} 2"#,
            "trove_guestagent_broker_reconnects_total 1",
            r#"trove_guestagent_backups_total{outcome="completed"} 1"#,
            r#"trove_guestagent_backups_total{outcome="failed"} 1"#,
            "trove_guestagent_backup_bytes_total 1024",
            "# HELP k2hdkc_ring_servers k2hdkc_ring_servers help",
            "# TYPE k2hdkc_ring_servers gauge",
            r#"k2hdkc_ring_servers{state="service_in"} 3.0"#,
            r#"k2hdkc_ring_servers{state="service_out"} 1.0"#,
            "k2hdkc_node_serving 1.0",
            "# TYPE k2hdkc_chmpx_messages_sent counter",
            r#"k2hdkc_chmpx_messages_sent_total{peer="server"} 120.0"#,
        ] {
            assert!(text.contains(want), "no {want:?} in:\n{text}");
        }
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"));

        let r = reqwest::get(format!("http://{addr}/other")).await.unwrap();
        assert_eq!(r.status(), 404);
        server.abort();
    }
}
