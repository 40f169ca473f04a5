//! Failures as the control plane sees them: oslo's serialized remote
//! exception (`oslo_messaging/_drivers/common.py`
//! `serialize_remote_exception`) naming a class of
//! `trove.common.exception`, which Trove's RPC client re-raises by name.

use serde_json::{json, Map, Value};

/// The module Trove allows oslo to rebuild exceptions from.
pub const TROVE_EXCEPTION_MODULE: &str = "trove.common.exception";

/// The Trove exception classes the agent raises. Each maps to a class of
/// `trove.common.exception` with the keyword arguments its message needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TroveException {
    /// `DatastoreOperationNotSupported(operation, datastore)`.
    NotSupported {
        /// The guest API method.
        operation: String,
        /// The datastore manager.
        datastore: String,
    },
    /// `BadRequest(message)`: the request itself is wrong.
    BadRequest(String),
    /// `NotFound(message)`.
    NotFound(String),
    /// `UnprocessableEntity(message)`: valid request, state does not allow it.
    Unprocessable(String),
    /// `TroveError(message)`: anything else, with its cause.
    Error(String),
    /// `LogAccessForbidden(action, log)`: a guest log not exposed to a
    /// caller who is not admin.
    LogAccessForbidden {
        /// `show`, `publish`, `discard`.
        action: String,
        /// The log's name.
        log: String,
    },
}

impl TroveException {
    /// The class name in `trove.common.exception`.
    pub fn class_name(&self) -> &'static str {
        match self {
            Self::NotSupported { .. } => "DatastoreOperationNotSupported",
            Self::BadRequest(_) => "BadRequest",
            Self::NotFound(_) => "NotFound",
            Self::Unprocessable(_) => "UnprocessableEntity",
            Self::Error(_) => "TroveError",
            Self::LogAccessForbidden { .. } => "LogAccessForbidden",
        }
    }

    /// The message as Trove would format it.
    pub fn message(&self) -> String {
        match self {
            Self::NotSupported {
                operation,
                datastore,
            } => {
                format!(
                    "The '{operation}' operation is not supported for the '{datastore}' datastore."
                )
            }
            Self::BadRequest(m) | Self::NotFound(m) | Self::Unprocessable(m) | Self::Error(m) => {
                m.clone()
            }
            Self::LogAccessForbidden { action, log } => {
                format!("You must be admin to {action} log '{log}'.")
            }
        }
    }

    /// oslo's failure JSON text, ready for a reply's `failure` field.
    pub fn to_failure_text(&self) -> String {
        // TroveError(message=None, **kwargs): a message given positionally
        // is used as the format string, so escape '%' for the rebuild.
        let (args, kwargs) = match self {
            Self::NotSupported {
                operation,
                datastore,
            } => (
                json!([]),
                json!({"operation": operation, "datastore": datastore}),
            ),
            Self::LogAccessForbidden { action, log } => {
                (json!([]), json!({"action": action, "log": log}))
            }
            other => (
                json!([other.message().replace('%', "%%")]),
                Value::Object(Map::new()),
            ),
        };
        json!({
            "class": self.class_name(),
            "module": TROVE_EXCEPTION_MODULE,
            "message": self.message(),
            "tb": [],
            "args": args,
            "kwargs": kwargs,
        })
        .to_string()
    }
}

impl std::fmt::Display for TroveException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class_name(), self.message())
    }
}

/// oslo.messaging's own failure for an RPC version the server cannot serve
/// (`oslo_messaging.rpc.dispatcher.UnsupportedVersion`); arrives at the
/// client as a RemoteError naming the class.
pub fn unsupported_version_failure(version: &str, method: &str) -> String {
    json!({
        "class": "UnsupportedVersion",
        "module": "oslo_messaging.rpc.dispatcher",
        "message": format!("Endpoint does not support RPC version {version}. Attempted method: {method}"),
        "tb": [],
        "args": [version],
        "kwargs": {"method": method},
    })
    .to_string()
}

/// oslo.messaging's failure for a method no endpoint has
/// (`oslo_messaging.rpc.dispatcher.NoSuchMethod`).
pub fn no_such_method_failure(method: &str) -> String {
    json!({
        "class": "NoSuchMethod",
        "module": "oslo_messaging.rpc.dispatcher",
        "message": format!("Endpoint does not support RPC method {method}"),
        "tb": [],
        "args": [method],
        "kwargs": {},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_supported_carries_kwargs_for_the_rebuild() {
        let e = TroveException::NotSupported {
            operation: "create_user".into(),
            datastore: "k2hdkc".into(),
        };
        let v: Value = serde_json::from_str(&e.to_failure_text()).unwrap();
        assert_eq!(v["class"], "DatastoreOperationNotSupported");
        assert_eq!(v["module"], "trove.common.exception");
        assert_eq!(v["kwargs"]["operation"], "create_user");
        assert_eq!(
            v["message"],
            "The 'create_user' operation is not supported for the 'k2hdkc' datastore."
        );
    }

    #[test]
    fn percent_in_messages_survives_trove_formatting() {
        let v: Value =
            serde_json::from_str(&TroveException::Error("disk 100% full".into()).to_failure_text())
                .unwrap();
        assert_eq!(v["args"][0], "disk 100%% full");
        assert_eq!(v["message"], "disk 100% full");
    }
}
