//! The ring methods of the K2HDKC cluster strategy: custom guest methods
//! (`packaging/trove/src/trove_k2hdkc/cluster/guestagent.py`) the cluster
//! taskmanager calls on a member, each with typed arguments. Decoded once,
//! where the driver takes the custom method; `tests/tests/ring_contract.rs`
//! holds these types against what the Python side sends.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::request::RequestError;

/// One ring step and its arguments. Every `timeout` is in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingRequest {
    /// `k2hdkc_ring_status`: this node's CUK, ring and `ALLSTATUS`.
    Status {
        /// The step's bound.
        timeout: Option<u64>,
    },
    /// `k2hdkc_ring_converge`: until the ini lists exactly `cuks` and
    /// chmpx sees them all UP.
    Converge {
        /// The members' CUKs.
        cuks: Vec<String>,
        /// The step's bound.
        timeout: Option<u64>,
    },
    /// `k2hdkc_ring_service_in`: `SERVICEIN` of this node.
    ServiceIn {
        /// The step's bound.
        timeout: Option<u64>,
    },
    /// `k2hdkc_ring_service_out`: `SERVICEOUT` of the member `cuk`.
    ServiceOut {
        /// The leaving member's CUK.
        cuk: String,
        /// The step's bound.
        timeout: Option<u64>,
    },
    /// `k2hdkc_ring_reattach`: k2hdkc restarted so chmpx marks it pending.
    Reattach {
        /// The step's bound.
        timeout: Option<u64>,
    },
    /// `k2hdkc_ring_merge`: the whole ring merged.
    Merge {
        /// The step's bound.
        timeout: Option<u64>,
        /// How long after a MERGE that left a server stuck the next MERGE
        /// may go (chmpx's lost-answer poll must have ended).
        rearm_after: Option<u64>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bound {
    timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Converge {
    cuks: Vec<String>,
    timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceOut {
    cuk: String,
    timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Merge {
    timeout: Option<u64>,
    rearm_after: Option<u64>,
}

/// The ring methods' names, as the wire has them.
pub const RING_METHODS: &[&str] = &[
    "k2hdkc_ring_status",
    "k2hdkc_ring_converge",
    "k2hdkc_ring_service_in",
    "k2hdkc_ring_service_out",
    "k2hdkc_ring_reattach",
    "k2hdkc_ring_merge",
];

fn args_of<T: for<'de> Deserialize<'de>>(
    method: &'static str,
    args: &Map<String, Value>,
) -> Result<T, RequestError> {
    serde_json::from_value(Value::Object(args.clone())).map_err(|e| RequestError::BadArguments {
        method,
        reason: crate::request::scrub_serde_message(&e.to_string()),
    })
}

impl RingRequest {
    /// Decodes a custom method: `None` when `method` is not a ring method.
    pub fn decode(method: &str, args: &Map<String, Value>) -> Option<Result<Self, RequestError>> {
        let decoded = match method {
            "k2hdkc_ring_status" => args_of::<Bound>("k2hdkc_ring_status", args)
                .map(|b| Self::Status { timeout: b.timeout }),
            "k2hdkc_ring_converge" => {
                args_of::<Converge>("k2hdkc_ring_converge", args).map(|c| Self::Converge {
                    cuks: c.cuks,
                    timeout: c.timeout,
                })
            }
            "k2hdkc_ring_service_in" => args_of::<Bound>("k2hdkc_ring_service_in", args)
                .map(|b| Self::ServiceIn { timeout: b.timeout }),
            "k2hdkc_ring_service_out" => args_of::<ServiceOut>("k2hdkc_ring_service_out", args)
                .map(|s| Self::ServiceOut {
                    cuk: s.cuk,
                    timeout: s.timeout,
                }),
            "k2hdkc_ring_reattach" => args_of::<Bound>("k2hdkc_ring_reattach", args)
                .map(|b| Self::Reattach { timeout: b.timeout }),
            "k2hdkc_ring_merge" => {
                args_of::<Merge>("k2hdkc_ring_merge", args).map(|m| Self::Merge {
                    timeout: m.timeout,
                    rearm_after: m.rearm_after,
                })
            }
            _ => return None,
        };
        Some(decoded)
    }

    /// The wire name.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Status { .. } => "k2hdkc_ring_status",
            Self::Converge { .. } => "k2hdkc_ring_converge",
            Self::ServiceIn { .. } => "k2hdkc_ring_service_in",
            Self::ServiceOut { .. } => "k2hdkc_ring_service_out",
            Self::Reattach { .. } => "k2hdkc_ring_reattach",
            Self::Merge { .. } => "k2hdkc_ring_merge",
        }
    }

    /// The bound the caller asked for.
    pub fn timeout(&self) -> Option<u64> {
        match self {
            Self::Status { timeout }
            | Self::Converge { timeout, .. }
            | Self::ServiceIn { timeout }
            | Self::ServiceOut { timeout, .. }
            | Self::Reattach { timeout }
            | Self::Merge { timeout, .. } => *timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(method: &str, v: Value) -> Option<Result<RingRequest, RequestError>> {
        RingRequest::decode(method, v.as_object().unwrap())
    }

    #[test]
    fn ring_requests_are_typed_and_named() {
        assert_eq!(
            decode("k2hdkc_ring_converge", json!({"cuks": ["a"], "timeout": 5})),
            Some(Ok(RingRequest::Converge {
                cuks: vec!["a".into()],
                timeout: Some(5)
            }))
        );
        let e = decode("k2hdkc_ring_converge", json!({"cuks": "a"}))
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("k2hdkc_ring_converge"), "{e}");
        assert!(
            decode("k2hdkc_ring_status", json!({"timeout": 5, "extra": 1}))
                .unwrap()
                .is_err(),
            "unknown fields refused"
        );
        let m = decode(
            "k2hdkc_ring_merge",
            json!({"timeout": 600, "rearm_after": 25}),
        )
        .unwrap()
        .unwrap();
        assert_eq!((m.method(), m.timeout()), ("k2hdkc_ring_merge", Some(600)));
        assert!(decode("prepare", json!({})).is_none());
        for name in RING_METHODS {
            let r = decode(name, json!({"cuks": [], "cuk": "c"}));
            assert!(r.is_some(), "{name} is a ring method");
        }
    }
}
