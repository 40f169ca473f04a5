//! The ring steps Trove's k2hdkc cluster taskmanager asks a member for
//! (`packaging/trove/src/trove_k2hdkc/cluster/guestagent.py`): custom
//! guest methods, each a typed request with a bounded wait, each answering
//! a JSON object. This module is their contract (arguments, bounds,
//! dispatch); the steps themselves are [`crate::ring`]'s.
//!
//! | method                     | does                                               |
//! |----------------------------|----------------------------------------------------|
//! | `k2hdkc_ring_status`       | this node's CUK and ring name, `ALLSTATUS`, ini CUKs (`error` if no ring) |
//! | `k2hdkc_ring_converge`     | waits until the ini lists exactly the given CUKs, and chmpx sees them all UP |
//! | `k2hdkc_ring_service_in`   | `SERVICEIN` of this node, until the ring shows it  |
//! | `k2hdkc_ring_service_out`  | `SERVICEOUT` of a member, in the ini's grammar     |
//! | `k2hdkc_ring_reattach`     | restarts k2hdkc so chmpx marks this node pending   |
//! | `k2hdkc_ring_merge`        | merges the whole ring and waits ([`crate::ring::merge`]) |
//!
//! The order that keeps every key (CONTRACTS.md §7) is the taskmanager's:
//! these steps do one thing each and say what they saw.

use std::time::{Duration, Instant};

use driver_api::DatastoreError;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::node::Node;
use crate::ring::{join, leave, merge, view};

/// The longest wait a caller may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The wait when the caller names none.
const DEFAULT_WAIT: Duration = Duration::from_secs(120);

/// Every method's bound: `timeout` in seconds.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Bound {
    timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Converge {
    cuks: Vec<String>,
    timeout: Option<u64>,
}

/// `k2hdkc_ring_merge`: `rearm_after` (seconds) is how long after a MERGE
/// that left a server stuck the next MERGE may go (`ring/merge.rs`: chmpx's
/// lost-answer poll must have ended); default 120, at most the timeout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Merge {
    timeout: Option<u64>,
    rearm_after: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceOut {
    cuk: String,
    timeout: Option<u64>,
}

fn parse<T: for<'de> Deserialize<'de>>(
    method: &str,
    args: &Map<String, Value>,
) -> Result<T, DatastoreError> {
    serde_json::from_value(Value::Object(args.clone()))
        .map_err(|e| DatastoreError::BadRequest(format!("{method}: {e}")))
}

fn bound(timeout: Option<u64>) -> Result<Duration, DatastoreError> {
    let d = timeout.map(Duration::from_secs).unwrap_or(DEFAULT_WAIT);
    if d.is_zero() || d > MAX_WAIT {
        return Err(DatastoreError::BadRequest(format!(
            "timeout must be between 1 and {} seconds",
            MAX_WAIT.as_secs()
        )));
    }
    Ok(d)
}

/// Whether `name` is one of this module's methods.
pub fn is_ring_method(name: &str) -> bool {
    name.starts_with("k2hdkc_ring_")
}

/// Runs one ring step on `node`.
pub async fn handle(
    node: &Node,
    method: &str,
    args: &Map<String, Value>,
) -> Result<Value, DatastoreError> {
    if !node.is_member() && method != "k2hdkc_ring_status" {
        return Err(DatastoreError::Conflict(format!(
            "{method}: this instance was not prepared as a cluster member"
        )));
    }
    let started = Instant::now();
    let out = match method {
        "k2hdkc_ring_status" => {
            parse::<Bound>(method, args)?;
            Ok(view::status_report(node.cuk(), node.ring_view().await).await)
        }
        "k2hdkc_ring_converge" => {
            let req: Converge = parse(method, args)?;
            join::converge(|| node.ring_view(), &req.cuks, bound(req.timeout)?).await
        }
        "k2hdkc_ring_service_in" => {
            let req: Bound = parse(method, args)?;
            join::service_in(&node.ring_view().await?, bound(req.timeout)?).await
        }
        "k2hdkc_ring_service_out" => {
            let req: ServiceOut = parse(method, args)?;
            leave::service_out(&node.ring_view().await?, &req.cuk, bound(req.timeout)?).await
        }
        "k2hdkc_ring_reattach" => {
            let req: Bound = parse(method, args)?;
            let within = bound(req.timeout)?;
            node.reattach().await?;
            join::wait_attached_again(&node.ring_view().await?, within).await
        }
        "k2hdkc_ring_merge" => {
            let req: Merge = parse(method, args)?;
            let within = bound(req.timeout)?;
            let mut bounds = merge::MergeBounds::within(within);
            if let Some(secs) = req.rearm_after {
                bounds.rearm_after = bound(Some(secs))?.min(within);
            }
            merge::ring_merge(&node.ring_view().await?, bounds).await
        }
        other => return Err(DatastoreError::NoSuchMethod(other.to_owned())),
    };
    match &out {
        Ok(v) => {
            tracing::info!(method, seconds = started.elapsed().as_secs_f64(), result = %v, "ring step done")
        }
        Err(e) => {
            tracing::error!(method, seconds = started.elapsed().as_secs_f64(), error = %e, "ring step failed")
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_typed_and_bounded() {
        let args = |v: Value| v.as_object().unwrap().clone();
        assert!(parse::<Converge>("m", &args(json!({"cuks": ["a"], "timeout": 5}))).is_ok());
        let e = parse::<Converge>("m", &args(json!({"cuks": "a"}))).unwrap_err();
        assert!(e.to_string().contains("m: invalid type"), "{e}");
        assert!(
            parse::<Bound>("m", &args(json!({"timeout": 5, "extra": 1}))).is_err(),
            "unknown fields refused"
        );
        assert!(parse::<Merge>("m", &args(json!({"timeout": 600, "rearm_after": 25}))).is_ok());
        assert!(bound(Some(0)).is_err());
        assert!(bound(Some(7200)).is_err());
        assert_eq!(bound(None).unwrap(), DEFAULT_WAIT);
        assert!(is_ring_method("k2hdkc_ring_merge") && !is_ring_method("prepare"));
    }
}
