//! The oslo.messaging 2.0 envelope and the RPC message inside it
//! (`oslo_messaging/_drivers/common.py` `serialize_msg`/`deserialize_msg`,
//! `amqp.py` `pack_context`/`unpack_context`, `amqpdriver.py` replies).

use serde_json::{Map, Value};

/// The only envelope version oslo.messaging speaks.
pub const ENVELOPE_VERSION: &str = "2.0";
/// The largest message body the agent will parse. Trove's biggest messages
/// (prepare with a configuration and modules) are tens of KiB.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why a message body could not be read. Never echoes the body (it may
/// carry secrets).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Larger than [`MAX_BODY_BYTES`].
    #[error("message body of {0} bytes exceeds the {MAX_BODY_BYTES}-byte limit")]
    TooLarge(usize),
    /// The body or the inner message is not JSON.
    #[error("message is not JSON: {0}")]
    NotJson(String),
    /// An envelope version other than 2.0.
    #[error("unsupported oslo envelope version {0:?}")]
    UnsupportedVersion(String),
    /// A field has the wrong JSON type or is missing.
    #[error("field {field:?}: {reason}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// An RPC request as it arrives, before the secure codec runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcMessage {
    /// The method name.
    pub method: String,
    /// Keyword arguments, still serialized (encrypted when secure).
    pub args: Map<String, Value>,
    /// Requested API version, e.g. `"1.3"`.
    pub version: Option<String>,
    /// Target namespace (Trove never sets one).
    pub namespace: Option<String>,
    /// oslo's duplicate-detection id.
    pub unique_id: Option<String>,
    /// Present for a call: the reply correlation id.
    pub msg_id: Option<String>,
    /// Present for a call: the queue the reply goes to.
    pub reply_q: Option<String>,
    /// The client's call-monitor timeout, if any, in seconds.
    pub call_monitor_timeout: Option<f64>,
    /// The `_context_*` fields with their prefix removed, still serialized.
    pub context: Map<String, Value>,
}

impl RpcMessage {
    /// A call expects a reply; a cast does not.
    pub fn is_call(&self) -> bool {
        self.msg_id.is_some() && self.reply_q.is_some()
    }
}

/// What could be read of a message that failed to decode, so the caller can
/// still be answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyAddress {
    /// `_msg_id`.
    pub msg_id: String,
    /// `_reply_q`.
    pub reply_q: String,
}

/// Decodes a body into an [`RpcMessage`].
///
/// On failure also returns the reply address when the inner message was
/// readable enough to find one.
pub fn decode(body: &[u8]) -> Result<RpcMessage, (EnvelopeError, Option<ReplyAddress>)> {
    let mut inner = unwrap_envelope(body).map_err(|e| (e, None))?;
    let msg_id = take_opt_string(&mut inner, "_msg_id");
    let reply_q = take_opt_string(&mut inner, "_reply_q");
    let address = match (&msg_id, &reply_q) {
        (Ok(Some(m)), Ok(Some(q))) => Some(ReplyAddress {
            msg_id: m.clone(),
            reply_q: q.clone(),
        }),
        _ => None,
    };
    let fail = |e: EnvelopeError| (e, address.clone());

    let msg_id = msg_id.map_err(fail)?;
    let reply_q = reply_q.map_err(fail)?;
    let unique_id = take_opt_string(&mut inner, "_unique_id").map_err(fail)?;
    let call_monitor_timeout = match inner.remove("_timeout") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => {
            return Err(fail(EnvelopeError::BadField {
                field: "_timeout",
                reason: "not a number",
            }))
        }
    };
    let method = match inner.remove("method") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => {
            return Err(fail(EnvelopeError::BadField {
                field: "method",
                reason: "missing or not text",
            }))
        }
    };
    let args = match inner.remove("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(fail(EnvelopeError::BadField {
                field: "args",
                reason: "not a JSON object",
            }))
        }
    };
    let version = take_opt_string(&mut inner, "version").map_err(fail)?;
    let namespace = take_opt_string(&mut inner, "namespace").map_err(fail)?;
    let mut context = Map::new();
    for (key, value) in inner {
        if let Some(name) = key.strip_prefix("_context_") {
            context.insert(name.to_owned(), value);
        }
    }
    Ok(RpcMessage {
        method,
        args,
        version,
        namespace,
        unique_id,
        msg_id,
        reply_q,
        call_monitor_timeout,
        context,
    })
}

/// The inner message of an oslo 2.0 envelope (or an un-enveloped one) as a
/// JSON object.
fn unwrap_envelope(body: &[u8]) -> Result<Map<String, Value>, EnvelopeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(EnvelopeError::TooLarge(body.len()));
    }
    let outer: Value =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let Value::Object(mut outer) = outer else {
        return Err(EnvelopeError::BadField {
            field: "body",
            reason: "not a JSON object",
        });
    };
    // oslo accepts an un-enveloped message (pre-2.0 senders) as the message.
    let inner = match outer.remove("oslo.version") {
        None => outer,
        Some(Value::String(v)) if v == ENVELOPE_VERSION => match outer.remove("oslo.message") {
            Some(Value::String(text)) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    return Err(EnvelopeError::BadField {
                        field: "oslo.message",
                        reason: "not a JSON object",
                    })
                }
                Err(e) => return Err(EnvelopeError::NotJson(e.to_string())),
            },
            _ => {
                return Err(EnvelopeError::BadField {
                    field: "oslo.message",
                    reason: "missing or not text",
                })
            }
        },
        Some(other) => {
            let shown = match other {
                Value::String(s) => s,
                v => v.to_string(),
            };
            return Err(EnvelopeError::UnsupportedVersion(shown));
        }
    };

    Ok(inner)
}

fn take_opt_string(
    map: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, EnvelopeError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EnvelopeError::BadField {
            field,
            reason: "not text",
        }),
    }
}

/// Wraps an inner message in the 2.0 envelope.
pub fn envelope(inner: &Map<String, Value>) -> Vec<u8> {
    let mut outer = Map::new();
    outer.insert(
        "oslo.version".into(),
        Value::String(ENVELOPE_VERSION.into()),
    );
    outer.insert(
        "oslo.message".into(),
        Value::String(Value::Object(inner.clone()).to_string()),
    );
    Value::Object(outer).to_string().into_bytes()
}

/// The body of a reply to a call. `failure` is the JSON text of a
/// serialized remote exception ([`crate::exception::RemoteFailure::to_json_text`]).
/// `ending = false` is a call-monitor heartbeat.
pub fn encode_reply(
    msg_id: &str,
    unique_id: &str,
    result: Option<Value>,
    failure: Option<String>,
    ending: bool,
) -> Vec<u8> {
    let mut inner = Map::new();
    inner.insert("result".into(), result.unwrap_or(Value::Null));
    inner.insert(
        "failure".into(),
        failure.map(Value::String).unwrap_or(Value::Null),
    );
    inner.insert("ending".into(), Value::Bool(ending));
    inner.insert("_msg_id".into(), Value::String(msg_id.into()));
    inner.insert("_unique_id".into(), Value::String(unique_id.into()));
    envelope(&inner)
}

/// The body of a cast: method, keyword args, version and flattened context.
pub fn encode_cast(
    method: &str,
    args: Map<String, Value>,
    version: &str,
    context: &Map<String, Value>,
    unique_id: &str,
) -> Vec<u8> {
    let mut inner = Map::new();
    inner.insert("method".into(), Value::String(method.into()));
    inner.insert("args".into(), Value::Object(args));
    inner.insert("version".into(), Value::String(version.into()));
    for (key, value) in context {
        inner.insert(format!("_context_{key}"), value.clone());
    }
    inner.insert("_unique_id".into(), Value::String(unique_id.into()));
    envelope(&inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wrap(inner: Value) -> Vec<u8> {
        json!({"oslo.version": "2.0", "oslo.message": inner.to_string()})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn decodes_a_call_with_context() {
        let body = wrap(json!({
            "method": "rpc_ping", "args": {}, "version": "1.0",
            "_unique_id": "u1", "_msg_id": "m1", "_reply_q": "reply_x", "_timeout": null,
            "_context_context": "CIPHER", "_context_user": "bob"
        }));
        let msg = decode(&body).unwrap();
        assert_eq!(msg.method, "rpc_ping");
        assert!(msg.is_call());
        assert_eq!(msg.reply_q.as_deref(), Some("reply_x"));
        assert_eq!(msg.context["context"], "CIPHER");
        assert_eq!(msg.context["user"], "bob");
        assert_eq!(msg.unique_id.as_deref(), Some("u1"));
    }

    #[test]
    fn a_cast_has_no_reply_address() {
        let msg = decode(&wrap(json!({"method": "prepare", "args": {"a": 1}}))).unwrap();
        assert!(!msg.is_call());
        assert_eq!(msg.args["a"], 1);
    }

    #[test]
    fn wrong_envelope_version_is_refused() {
        let body = json!({"oslo.version": "3.0", "oslo.message": "{}"}).to_string();
        assert_eq!(
            decode(body.as_bytes()).unwrap_err().0,
            EnvelopeError::UnsupportedVersion("3.0".into())
        );
    }

    #[test]
    fn bad_args_keep_the_reply_address() {
        let body = wrap(json!({"method": "x", "args": [1], "_msg_id": "m", "_reply_q": "q"}));
        let (err, addr) = decode(&body).unwrap_err();
        assert!(matches!(err, EnvelopeError::BadField { field: "args", .. }));
        assert_eq!(
            addr,
            Some(ReplyAddress {
                msg_id: "m".into(),
                reply_q: "q".into()
            })
        );
    }

    #[test]
    fn garbage_and_oversize_are_errors() {
        assert!(matches!(
            decode(b"not json").unwrap_err().0,
            EnvelopeError::NotJson(_)
        ));
        assert!(matches!(
            decode(b"[1]").unwrap_err().0,
            EnvelopeError::BadField { .. }
        ));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            decode(&big).unwrap_err().0,
            EnvelopeError::TooLarge(MAX_BODY_BYTES + 1)
        );
    }

    #[test]
    fn reply_round_trips_through_oslo_shape() {
        let body = encode_reply("m1", "u", Some(json!(true)), None, true);
        let outer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(outer["oslo.version"], "2.0");
        let inner: Value = serde_json::from_str(outer["oslo.message"].as_str().unwrap()).unwrap();
        assert_eq!(
            inner,
            json!({"result": true, "failure": null, "ending": true, "_msg_id": "m1", "_unique_id": "u"})
        );
    }

    #[test]
    fn cast_flattens_context() {
        let mut ctx = Map::new();
        ctx.insert("context".into(), json!("C"));
        ctx.insert("csz-instance-id".into(), json!("g"));
        let body = encode_cast("heartbeat", Map::new(), "1.0", &ctx, "u");
        let msg = decode(&body).unwrap();
        assert_eq!(msg.method, "heartbeat");
        assert_eq!(msg.version.as_deref(), Some("1.0"));
        assert_eq!(msg.context["csz-instance-id"], "g");
    }
}
