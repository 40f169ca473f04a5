//! Gauges of a chmpx's view of its ring, for the Prometheus endpoints of
//! the agent (a server node) and of `k2hdkc-slave` (an application host).

use std::time::Duration;

use driver_api::{MetricKind, MetricSample};

use crate::chmpx;

/// The bound on each question to chmpx during a scrape.
pub const ASK_WITHIN: Duration = Duration::from_secs(2);

/// A gauge sample.
pub fn sample(name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> MetricSample {
    MetricSample {
        name: name.into(),
        kind: MetricKind::Gauge,
        help: help.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
    }
}

fn count(name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> MetricSample {
    MetricSample {
        kind: MetricKind::Counter,
        ..sample(name, help, labels, value)
    }
}

/// What the chmpx at `ctl` says now: `k2hdkc_chmpx_up`, its traffic
/// ([`traffic_samples`]) and its view of the ring ([`ring_samples`]),
/// each question bounded; with its own status, when it answered.
pub async fn chmpx_samples(ctl: &str) -> (Vec<MetricSample>, Option<chmpx::NodeStatus>) {
    let reply = tokio::time::timeout(
        ASK_WITHIN,
        chmpx::command_within(ctl, "SELFSTATUS", ASK_WITHIN),
    )
    .await
    .ok()
    .and_then(Result::ok);
    let status = reply
        .as_deref()
        .and_then(|r| chmpx::parse_selfstatus(r).ok());
    let mut out = vec![sample(
        "k2hdkc_chmpx_up",
        "Whether this host's chmpx answers on its control port",
        &[],
        f64::from(u8::from(status.is_some())),
    )];
    if let Some(reply) = &reply {
        out.extend(traffic_samples(reply));
    }
    if status.is_some() {
        // A dropped ALLSTATUS is asked again by `command_within` (a CI
        // scrape once lost its ring samples to one).
        if let Ok(servers) = chmpx::all_status_within(ctl, ASK_WITHIN).await {
            out.extend(ring_samples(&servers));
        }
    }
    (out, status)
}

/// chmpx's connection counts and traffic counters from its `SELFSTATUS`
/// reply (chmpx 1.0.111 `CtlComSelfStatus`: `Connection Count` and the
/// `Stats` of messages to and from servers and slaves since it started).
pub fn traffic_samples(reply: &str) -> Vec<MetricSample> {
    let mut out = Vec::new();
    let mut peer = None;
    let value = |line: &str| -> Option<(String, String)> {
        let (k, v) = line.split_once('=')?;
        Some((k.trim().to_owned(), v.trim().to_owned()))
    };
    let number = |v: &str| v.split_whitespace().next()?.parse::<f64>().ok();
    for line in reply.lines() {
        if line.contains("To(From) Servers") {
            peer = Some("server");
            continue;
        }
        if line.contains("To(From) Slaves") {
            peer = Some("slave");
            continue;
        }
        let Some((key, v)) = value(line) else {
            continue;
        };
        let connections = |to: &str, out: &mut Vec<MetricSample>| {
            if let Some(n) = number(&v) {
                out.push(sample(
                    "k2hdkc_chmpx_connections",
                    "chmpx's open connections, by what they reach",
                    &[("to", to)],
                    n,
                ));
            }
        };
        match (peer, key.as_str()) {
            (None, "To Servers") => connections("servers", &mut out),
            (None, "From Slaves") => connections("slaves", &mut out),
            (None, "On Control port") => connections("control_port", &mut out),
            (Some(p), "send count") => {
                if let Some(n) = number(&v) {
                    out.push(count(
                        "k2hdkc_chmpx_messages_sent",
                        "Messages chmpx sent, by peer kind, since it started",
                        &[("peer", p)],
                        n,
                    ));
                }
            }
            (Some(p), "receive count") => {
                if let Some(n) = number(&v) {
                    out.push(count(
                        "k2hdkc_chmpx_messages_received",
                        "Messages chmpx received, by peer kind, since it started",
                        &[("peer", p)],
                        n,
                    ));
                }
            }
            (Some(p), "total") if v.ends_with("bytes") => {
                if let Some(n) = number(&v) {
                    out.push(count(
                        "k2hdkc_chmpx_message_body_bytes",
                        "Bytes of message bodies through chmpx, by peer kind, since it started",
                        &[("peer", p)],
                        n,
                    ));
                }
            }
            (Some(p), "total") if v.ends_with("ns") => {
                // `<s>s <ns>ns`
                let mut parts = v.split_whitespace();
                let secs = parts
                    .next()
                    .and_then(|t| t.trim_end_matches('s').parse::<f64>().ok());
                let nanos = parts
                    .next()
                    .and_then(|t| t.trim_end_matches("ns").parse::<f64>().ok());
                if let (Some(s), Some(ns)) = (secs, nanos) {
                    out.push(count(
                        "k2hdkc_chmpx_message_seconds",
                        "Time chmpx spent on messages, by peer kind, since it started",
                        &[("peer", p)],
                        s + ns / 1e9,
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// The ring as this node's chmpx sees it: servers by service and
/// liveness, by merge state, and those whose hash ranges still change.
pub fn ring_samples(servers: &[chmpx::ServerStatus]) -> Vec<MetricSample> {
    let mut out = Vec::new();
    for (ring, ring_label) in [("SERVICE IN", "service_in"), ("SERVICE OUT", "service_out")] {
        for (live, live_label) in [("UP", "up"), ("DOWN", "down")] {
            let n = servers
                .iter()
                .filter(|s| s.status.ring == ring && s.status.live == live)
                .count();
            out.push(sample(
                "k2hdkc_ring_servers",
                "Servers of the ring as this node's chmpx sees them, by service and liveness",
                &[("service", ring_label), ("live", live_label)],
                n as f64,
            ));
        }
    }
    for merge in ["Pending", "Doing", "Done"] {
        let n = servers.iter().filter(|s| s.status.merge == merge).count();
        out.push(sample(
            "k2hdkc_ring_merge_servers",
            "Servers in a merge, by its state (pending, doing, done)",
            &[("state", &merge.to_ascii_lowercase())],
            n as f64,
        ));
    }
    let changing = servers.iter().filter(|s| s.hashes.0 != s.hashes.1).count();
    out.push(sample(
        "k2hdkc_ring_hashes_pending_servers",
        "Servers whose pending hash range differs from their enabled one (a membership change not merged yet)",
        &[],
        changing as f64,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status: &str, hashes: (&str, &str)) -> chmpx::ServerStatus {
        chmpx::ServerStatus {
            name: "10.0.0.1".into(),
            ctlport: Some(8021),
            cuk: String::new(),
            custom_id_seed: String::new(),
            status: chmpx::parse_status_line(status).unwrap(),
            hashes: (hashes.0.into(), hashes.1.into()),
        }
    }

    fn value(samples: &[MetricSample], name: &str, labels: &[(&str, &str)]) -> f64 {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?}"))
            .value
    }

    /// The shape chmpx 1.0.111's `CtlComSelfStatus` prints.
    const SELFSTATUS: &str = "Server Name               = 10.0.0.5
Mode                      = Server
Status                    = {
    Server Status         = 0x21(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])
}
Connection Count          = {
    To Servers            = 2
    From Slaves           = 1
    On Control port       = 1
}
Stats                     = {
    To(From) Servers      = {
        send count        = 120 count
        receive count     = 118 count
        total             = 53400 bytes
        minimum           = 10 bytes
        maximum           = 4096 bytes
        total             = 1s 500000000ns
        minimum           = 0s 1000ns
        maximum           = 0s 90000000ns
    }
    To(From) Slaves       = {
        send count        = 7 count
        receive count     = 9 count
        total             = 900 bytes
        minimum           = 100 bytes
        maximum           = 100 bytes
        total             = 0s 250000000ns
        minimum           = 0s 1000ns
        maximum           = 0s 1000ns
    }
}
";

    #[test]
    fn chmpx_traffic_comes_from_its_selfstatus() {
        let s = traffic_samples(SELFSTATUS);
        assert_eq!(
            value(&s, "k2hdkc_chmpx_connections", &[("to", "servers")]),
            2.0
        );
        assert_eq!(
            value(&s, "k2hdkc_chmpx_connections", &[("to", "slaves")]),
            1.0
        );
        assert_eq!(
            value(&s, "k2hdkc_chmpx_messages_sent", &[("peer", "server")]),
            120.0
        );
        assert_eq!(
            value(&s, "k2hdkc_chmpx_messages_received", &[("peer", "slave")]),
            9.0
        );
        assert_eq!(
            value(&s, "k2hdkc_chmpx_message_body_bytes", &[("peer", "server")]),
            53400.0
        );
        assert_eq!(
            value(&s, "k2hdkc_chmpx_message_seconds", &[("peer", "server")]),
            1.5
        );
        assert_eq!(
            value(&s, "k2hdkc_chmpx_message_seconds", &[("peer", "slave")]),
            0.25
        );
        assert!(s
            .iter()
            .filter(|x| x.name.starts_with("k2hdkc_chmpx_message"))
            .all(|x| x.kind == MetricKind::Counter));
        assert!(traffic_samples("ERROR: no answer").is_empty());
    }

    #[test]
    fn a_ring_mid_grow_shows_its_new_member_and_the_merge() {
        let servers = [
            server("[SERVICE IN][UP][n/a][Doing][NoSuspend]", ("0x0", "0x0")),
            server("[SERVICE IN][UP][n/a][Done][NoSuspend]", ("0x1", "0x1")),
            server(
                "[SERVICE IN][DOWN][n/a][Nothing][NoSuspend]",
                ("0x2", "0x2"),
            ),
            server("[SERVICE OUT][UP][ADD][Pending][NoSuspend]", ("0x3", "0x2")),
        ];
        let s = ring_samples(&servers);
        let servers = |service, live| {
            value(
                &s,
                "k2hdkc_ring_servers",
                &[("service", service), ("live", live)],
            )
        };
        assert_eq!(servers("service_in", "up"), 2.0);
        assert_eq!(servers("service_in", "down"), 1.0);
        assert_eq!(servers("service_out", "up"), 1.0);
        assert_eq!(servers("service_out", "down"), 0.0);
        let merge = |state| value(&s, "k2hdkc_ring_merge_servers", &[("state", state)]);
        assert_eq!(merge("doing"), 1.0);
        assert_eq!(merge("pending"), 1.0);
        assert_eq!(merge("done"), 1.0);
        assert_eq!(value(&s, "k2hdkc_ring_hashes_pending_servers", &[]), 1.0);
    }

    #[tokio::test]
    async fn a_ring_question_chmpx_dropped_is_asked_again() {
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = asked.clone();
        let ctl = crate::testing::fake_ctlport(move |cmd| match cmd {
            "SELFSTATUS" => SELFSTATUS.to_owned(),
            // The first ALLSTATUS is dropped with nothing said.
            "ALLSTATUS" if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => String::new(),
            "ALLSTATUS" => "RING Name = c1\nNo.1\n  Server Name = 10.0.0.5\n    Control Port = 8021\n    CUK = c1\n    Custom ID Seed = s1\n    Server Status = 0x0(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])\n    Enable Hash Value = 0x0\n    Pending Hash Value = 0x0\n".to_owned(),
            _ => "ERROR\n".to_owned(),
        })
        .await;
        let (samples, status) = chmpx_samples(&ctl).await;
        assert!(status.is_some());
        assert_eq!(
            value(
                &samples,
                "k2hdkc_ring_servers",
                &[("service", "service_in"), ("live", "up")]
            ),
            1.0
        );
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
