//! Casts to trove-conductor (`trove/conductor/api.py`, version 1.0):
//! heartbeats, backup updates and notifications.
//!
//! Casts go through one bounded queue and one sender task, so they leave in
//! the order they were made (the conductor drops a heartbeat whose `sent`
//! is older than the last one it stored). A cast that cannot be published
//! is retried a few times, then dropped with an error log; a full queue
//! drops the new cast rather than blocking the caller.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use driver_api::envelope::encode_cast;
use driver_api::secure::SecureCodec;
use driver_api::ServiceStatus;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::rpc::publisher::Publisher;

/// Pending casts the queue holds.
pub const QUEUE_DEPTH: usize = 1024;
/// Publish attempts per cast.
pub const ATTEMPTS: u32 = 5;
/// Pause between attempts.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Conductor API version.
pub const CONDUCTOR_API_VERSION: &str = "1.0";

/// One cast, before serialization.
#[derive(Debug)]
struct Cast {
    method: &'static str,
    args: Map<String, Value>,
}

/// Where and how casts are sent.
#[derive(Debug, Clone)]
pub struct ConductorTarget {
    /// `control_exchange`.
    pub exchange: String,
    /// `conductor_queue` (the topic).
    pub topic: String,
    /// `guest_id`: the instance the casts are about.
    pub guest_id: String,
    /// `tenant_id`, for the context.
    pub tenant_id: Option<String>,
}

/// The handle the agent uses to cast. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Conductor {
    tx: mpsc::Sender<Cast>,
    guest_id: String,
}

/// Seconds since the epoch, as Python's `time.time()` gives `sent`.
pub fn now_epoch() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Conductor {
    /// Starts the sender task; it ends when every handle is dropped and the
    /// queue is drained.
    pub fn start(target: ConductorTarget, codec: SecureCodec, publisher: Publisher) -> (Conductor, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let guest_id = target.guest_id.clone();
        let task = tokio::spawn(sender(rx, target, codec, publisher));
        (Conductor { tx, guest_id }, task)
    }

    fn enqueue(&self, method: &'static str, args: Map<String, Value>) {
        if let Err(e) = self.tx.try_send(Cast { method, args }) {
            tracing::error!(method, reason = %e, "conductor cast dropped: queue full or closed");
        }
    }

    /// `heartbeat(instance_id, payload={"service_status": ...}, sent)`.
    pub fn heartbeat(&self, status: ServiceStatus) {
        let mut args = Map::new();
        args.insert("instance_id".into(), json!(self.guest_id));
        args.insert("payload".into(), json!({"service_status": status.description()}));
        args.insert("sent".into(), json!(now_epoch()));
        self.enqueue("heartbeat", args);
    }

    /// `update_backup(instance_id, backup_id, sent, **fields)`.
    pub fn update_backup(&self, backup_id: &str, fields: Map<String, Value>) {
        let mut args = fields;
        args.insert("instance_id".into(), json!(self.guest_id));
        args.insert("backup_id".into(), json!(backup_id));
        args.insert("sent".into(), json!(now_epoch()));
        self.enqueue("update_backup", args);
    }

    /// `notify_end(serialized_notification, notification_args)`: the end of
    /// an operation the control plane started with a notification.
    /// `add_instance_id` for prepare, whose upstream payload names the guest.
    pub fn notify_end(&self, mut serialized_notification: Value, add_instance_id: bool) {
        if let (Value::Object(map), true) = (&mut serialized_notification, add_instance_id) {
            map.insert("instance_id".into(), json!(self.guest_id));
        }
        let mut args = Map::new();
        args.insert("serialized_notification".into(), serialized_notification);
        args.insert("notification_args".into(), json!({}));
        self.enqueue("notify_end", args);
    }

    /// `notify_exc_info(serialized_notification, message, exception)`.
    pub fn notify_exc_info(&self, mut serialized_notification: Value, message: &str, exception: Vec<String>) {
        if let Value::Object(map) = &mut serialized_notification {
            map.insert("instance_id".into(), json!(self.guest_id));
        }
        let mut args = Map::new();
        args.insert("serialized_notification".into(), serialized_notification);
        args.insert("message".into(), json!(message));
        args.insert("exception".into(), json!(exception));
        self.enqueue("notify_exc_info", args);
    }
}

fn context(target: &ConductorTarget) -> Map<String, Value> {
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    let Value::Object(map) = json!({
        "user": null, "tenant": target.tenant_id, "project_id": target.tenant_id,
        "is_admin": false, "read_only": false, "show_deleted": false,
        "auth_token": null, "request_id": request_id, "global_request_id": null,
        "roles": [], "limit": null, "marker": null, "service_catalog": null,
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

async fn sender(mut rx: mpsc::Receiver<Cast>, target: ConductorTarget, codec: SecureCodec, publisher: Publisher) {
    while let Some(cast) = rx.recv().await {
        let args: Map<String, Value> =
            cast.args.iter().map(|(k, v)| (k.clone(), codec.encode_conductor_entity(&target.guest_id, v))).collect();
        let ctx = codec.encode_conductor_context(&target.guest_id, &context(&target));
        let body = encode_cast(cast.method, args, CONDUCTOR_API_VERSION, &ctx, &uuid::Uuid::new_v4().simple().to_string());
        let mut attempt = 1;
        loop {
            match publisher.publish(&target.exchange, &target.topic, &body).await {
                Ok(()) => {
                    tracing::debug!(method = cast.method, "cast to conductor");
                    break;
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(method = cast.method, attempt, error = %e, "conductor cast failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => {
                    tracing::error!(method = cast.method, attempts = attempt, error = %e, "conductor cast dropped");
                    break;
                }
            }
        }
    }
}
