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

use driver_api::ring::RingRequest;
use driver_api::DatastoreError;
use serde_json::Value;

use crate::node::Node;
use crate::ring::{converge, join, leave, merge, view};

/// The longest wait a caller may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The wait when the caller names none.
const DEFAULT_WAIT: Duration = Duration::from_secs(120);

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

/// Runs one ring step on `node`.
pub async fn handle(node: &Node, request: RingRequest) -> Result<Value, DatastoreError> {
    let method = request.method();
    if !node.is_member() && !matches!(request, RingRequest::Status { .. }) {
        return Err(DatastoreError::Conflict(format!(
            "{method}: this instance was not prepared as a cluster member"
        )));
    }
    let within = bound(request.timeout())?;
    let started = Instant::now();
    let out = match request {
        RingRequest::Status { .. } => {
            Ok(view::status_report(node.cuk(), node.ring_view().await).await)
        }
        RingRequest::Converge { cuks, .. } => {
            converge::converge(|| node.ring_view(), || node.restart(), &cuks, within).await
        }
        RingRequest::ServiceIn { .. } => {
            join::service_in(&node.ring_view().await?, || node.reattach(), within).await
        }
        RingRequest::ServiceOut { cuk, .. } => {
            leave::service_out(&node.ring_view().await?, &cuk, within).await
        }
        RingRequest::Reattach { .. } => {
            node.reattach().await?;
            join::wait_attached_again(&node.ring_view().await?, within).await
        }
        RingRequest::Merge { rearm_after, .. } => {
            let mut bounds = merge::MergeBounds::within(within);
            if let Some(secs) = rearm_after {
                bounds = bounds.with_rearm_after(bound(Some(secs))?.min(within));
            }
            merge::ring_merge(&node.ring_view().await?, bounds).await
        }
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

    #[test]
    fn bounds_are_checked() {
        assert!(bound(Some(0)).is_err());
        assert!(bound(Some(7200)).is_err());
        assert_eq!(bound(None).unwrap(), DEFAULT_WAIT);
    }
}
