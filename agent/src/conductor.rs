//! Casts to trove-conductor (`trove/conductor/api.py`, version 1.0):
//! heartbeats, backup updates and notifications.
//!
//! Casts go through one bounded queue and one sender task, so they leave in
//! the order they were made, each stamped with `sent` when it leaves (the
//! conductor drops a message whose `sent` is older than the last it
//! stored). A cast that cannot be published is retried a few times, then
//! dropped with an error log; a full queue drops the new cast rather than
//! blocking the caller.
//!
//! trove-conductor runs several workers (one per CPU by default), so two
//! casts that arrive together are processed at once. Both then try to
//! create the instance's `conductor_lastseen` row and one fails (`database
//! is locked` on sqlite, a duplicate key on MySQL), or both pass the `sent`
//! check and the older status is saved last. The sender therefore spaces
//! casts [`CAST_SPACING`] apart, and sends a cast that changed what the
//! conductor knows (a new status, a backup's new state) again at each of
//! [`CONFIRM_AT`] with a fresh `sent`, unless a newer one of the same kind
//! left meanwhile: whatever the race lost, a repeat stores. There are two
//! because the conductor checks `sent` before it saves, so a worker that
//! stalls between the two (seen once in CI, on a loaded 2-core machine,
//! with the first repeat already stored) saves the older status last.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use driver_api::envelope::encode_cast;
use driver_api::secure::SecureCodec;
use driver_api::ServiceStatus;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::rpc::publisher::{PublishError, Publisher};

/// Pending casts the queue holds.
pub const QUEUE_DEPTH: usize = 1024;
/// Publish attempts per cast.
pub const ATTEMPTS: u32 = 5;
/// Pause between attempts.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Conductor API version.
pub const CONDUCTOR_API_VERSION: &str = "1.0";
/// The least time between two casts (see the module comment). A
/// heartbeat takes a conductor worker some milliseconds; this leaves
/// room for a loaded one.
pub const CAST_SPACING: Duration = Duration::from_millis(500);
/// When a cast that changed something is repeated, counted from when it
/// first left.
pub const CONFIRM_AT: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(8)];

/// One cast, before serialization. `sent` is added when it leaves.
#[derive(Debug, Clone)]
struct Cast {
    method: &'static str,
    args: Map<String, Value>,
    /// Casts with the same kind supersede each other (a heartbeat, one
    /// backup's updates) and carry `sent`; `None`: notifications, which
    /// take no `sent` and are never repeated.
    kind: Option<String>,
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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Conductor {
    /// Starts the sender task; it ends when every handle is dropped and the
    /// queue is drained.
    pub fn start(
        target: ConductorTarget,
        codec: SecureCodec,
        sink: impl Sink,
    ) -> (Conductor, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let guest_id = target.guest_id.clone();
        let task = tokio::spawn(sender(rx, target, codec, sink));
        (Conductor { tx, guest_id }, task)
    }

    /// Casts waiting to be sent.
    pub fn queued(&self) -> usize {
        QUEUE_DEPTH - self.tx.capacity()
    }

    fn enqueue(&self, method: &'static str, args: Map<String, Value>, kind: Option<String>) {
        if let Err(e) = self.tx.try_send(Cast { method, args, kind }) {
            tracing::error!(method, reason = %e, "conductor cast dropped: queue full or closed");
        }
    }

    /// `heartbeat(instance_id, payload={"service_status": ...}, sent)`.
    pub fn heartbeat(&self, status: ServiceStatus) {
        let mut args = Map::new();
        args.insert("instance_id".into(), json!(self.guest_id));
        args.insert(
            "payload".into(),
            json!({"service_status": status.description()}),
        );
        self.enqueue("heartbeat", args, Some("heartbeat".into()));
    }

    /// `update_backup(instance_id, backup_id, sent, **fields)`.
    pub fn update_backup(&self, backup_id: &str, fields: Map<String, Value>) {
        let mut args = fields;
        args.insert("instance_id".into(), json!(self.guest_id));
        args.insert("backup_id".into(), json!(backup_id));
        self.enqueue(
            "update_backup",
            args,
            Some(format!("update_backup {backup_id}")),
        );
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
        self.enqueue("notify_end", args, None);
    }

    /// `notify_exc_info(serialized_notification, message, exception)`.
    pub fn notify_exc_info(
        &self,
        mut serialized_notification: Value,
        message: &str,
        exception: Vec<String>,
    ) {
        if let Value::Object(map) = &mut serialized_notification {
            map.insert("instance_id".into(), json!(self.guest_id));
        }
        let mut args = Map::new();
        args.insert("serialized_notification".into(), serialized_notification);
        args.insert("message".into(), json!(message));
        args.insert("exception".into(), json!(exception));
        self.enqueue("notify_exc_info", args, None);
    }
}

/// The request context of a cast. A notification's end or error carries
/// the notification in the context too (`trove_notification`), as the
/// upstream guest's context does: trove-conductor's `_notify` deletes
/// `context.notification` and fails without it.
fn context(target: &ConductorTarget, notification: Option<&Value>) -> Map<String, Value> {
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    let Value::Object(mut map) = json!({
        "user": null, "tenant": target.tenant_id, "project_id": target.tenant_id,
        "is_admin": false, "read_only": false, "show_deleted": false,
        "auth_token": null, "request_id": request_id, "global_request_id": null,
        "roles": [], "limit": null, "marker": null, "service_catalog": null,
    }) else {
        unreachable!("a JSON object literal")
    };
    if let Some(n) = notification {
        map.insert("trove_notification".into(), n.clone());
    }
    map
}

/// Where encoded casts go: the broker ([`Publisher`]), or a recorder in
/// tests.
#[async_trait::async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Publishes one message body.
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
    ) -> Result<(), PublishError>;
}

#[async_trait::async_trait]
impl Sink for Publisher {
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
    ) -> Result<(), PublishError> {
        Publisher::publish(self, exchange, routing_key, body).await
    }
}

/// What the sender keeps between casts: when the last one left, what each
/// kind last said, and the repeats still due.
#[derive(Default)]
struct Pacing {
    last_sent: Option<Instant>,
    said: HashMap<String, Map<String, Value>>,
    /// Per kind: when the next repeat is due, the cast, and which of
    /// [`CONFIRM_AT`] it is.
    due: HashMap<String, (Instant, Cast, usize)>,
}

impl Pacing {
    /// A new cast supersedes the repeat due for its kind.
    fn accept(&mut self, cast: &Cast) {
        if let Some(kind) = &cast.kind {
            self.due.remove(kind);
        }
    }

    /// After `cast` left at `now` (`repeat`: which of [`CONFIRM_AT`] it
    /// was, if a repeat): schedules its next repeat, for a cast that
    /// changed what its kind says.
    fn sent(&mut self, cast: &Cast, now: Instant, repeat: Option<usize>) {
        self.last_sent = Some(now);
        let Some(kind) = &cast.kind else { return };
        let next = match repeat {
            None if self.said.get(kind) != Some(&cast.args) => Some((now + CONFIRM_AT[0], 0)),
            Some(n) if n + 1 < CONFIRM_AT.len() => {
                Some((now + (CONFIRM_AT[n + 1] - CONFIRM_AT[n]), n + 1))
            }
            _ => None,
        };
        if let Some((at, n)) = next {
            self.due.insert(kind.clone(), (at, cast.clone(), n));
        }
        self.said.insert(kind.clone(), cast.args.clone());
    }

    /// The repeat due first, if any.
    fn next_due(&self) -> Option<(String, Instant)> {
        self.due
            .iter()
            .min_by_key(|(_, (at, _, _))| *at)
            .map(|(k, (at, _, _))| (k.clone(), *at))
    }
}

async fn sender(
    mut rx: mpsc::Receiver<Cast>,
    target: ConductorTarget,
    codec: SecureCodec,
    sink: impl Sink,
) {
    let mut pacing = Pacing::default();
    let mut open = true;
    loop {
        let due = pacing.next_due();
        let (cast, repeat) = tokio::select! {
            // New casts first: one of them may supersede the repeat.
            biased;
            c = rx.recv(), if open => match c {
                Some(c) => (c, None),
                None => { open = false; continue; }
            },
            _ = async { tokio::time::sleep_until(due.as_ref().map_or_else(Instant::now, |d| d.1)).await }, if due.is_some() && open => {
                let kind = due.map(|d| d.0).unwrap_or_default();
                match pacing.due.remove(&kind) { Some((_, c, n)) => (c, Some(n)), None => continue }
            }
            else => {
                // Closed: the repeats still due leave now, once (shutdown
                // is bounded by the caller's flush timeout).
                let Some((kind, _)) = due else { break };
                match pacing.due.remove(&kind) { Some((_, c, _)) => (c, Some(CONFIRM_AT.len())), None => continue }
            }
        };
        pacing.accept(&cast);
        if let Some(last) = pacing.last_sent {
            tokio::time::sleep_until(last + CAST_SPACING).await;
        }
        publish(&cast, &target, &codec, &sink, repeat.is_some()).await;
        pacing.sent(&cast, Instant::now(), repeat);
    }
}

async fn publish(
    cast: &Cast,
    target: &ConductorTarget,
    codec: &SecureCodec,
    sink: &impl Sink,
    repeat: bool,
) {
    let mut plain = cast.args.clone();
    if cast.kind.is_some() {
        plain.insert("sent".into(), json!(now_epoch()));
    }
    let args: Map<String, Value> = plain
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                codec.encode_conductor_entity(&target.guest_id, v),
            )
        })
        .collect();
    let ctx = codec.encode_conductor_context(
        &target.guest_id,
        &context(target, cast.args.get("serialized_notification")),
    );
    let body = encode_cast(
        cast.method,
        args,
        CONDUCTOR_API_VERSION,
        &ctx,
        &uuid::Uuid::new_v4().simple().to_string(),
    );
    let mut attempt = 1;
    loop {
        match sink.publish(&target.exchange, &target.topic, &body).await {
            Ok(()) => {
                tracing::debug!(method = cast.method, repeat, "cast to conductor");
                return;
            }
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(method = cast.method, attempt, error = %e, "conductor cast failed; retrying");
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => {
                tracing::error!(method = cast.method, attempts = attempt, error = %e, "conductor cast dropped");
                return;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what would reach the broker, with the (paused) time it left.
    #[derive(Clone, Default)]
    pub(crate) struct Recorder(Arc<Mutex<Vec<(Instant, Value)>>>);

    #[async_trait::async_trait]
    impl Sink for Recorder {
        async fn publish(
            &self,
            _exchange: &str,
            _key: &str,
            body: &[u8],
        ) -> Result<(), PublishError> {
            let outer: Value = serde_json::from_slice(body).unwrap();
            let inner: Value =
                serde_json::from_str(outer["oslo.message"].as_str().unwrap()).unwrap();
            self.0.lock().unwrap().push((Instant::now(), inner));
            Ok(())
        }
    }

    impl Recorder {
        /// The arguments of every cast of `method`, in order.
        pub(crate) fn args_of(&self, method: &str) -> Vec<Value> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, m)| m["method"] == method)
                .map(|(_, m)| m["args"].clone())
                .collect()
        }

        pub(crate) fn heartbeats(&self) -> Vec<(Instant, String, f64)> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, m)| m["method"] == "heartbeat")
                .map(|(t, m)| {
                    (
                        *t,
                        m["args"]["payload"]["service_status"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        m["args"]["sent"].as_f64().unwrap(),
                    )
                })
                .collect()
        }
    }

    pub(crate) fn start() -> (Conductor, tokio::task::JoinHandle<()>, Recorder) {
        let target = ConductorTarget {
            exchange: "trove".into(),
            topic: "trove-conductor".into(),
            guest_id: "g1".into(),
            tenant_id: None,
        };
        let rec = Recorder::default();
        let (c, task) = Conductor::start(target, SecureCodec::new(None), rec.clone());
        (c, task, rec)
    }

    /// The defect seen with a 2-worker trove-conductor: `building` and
    /// `failed to spawn` sent 1.6 ms apart raced, and `building` stayed.
    #[tokio::test(start_paused = true)]
    async fn casts_made_together_leave_spaced_and_a_change_is_repeated() {
        let (c, task, rec) = start();
        c.heartbeat(ServiceStatus::Building);
        c.heartbeat(ServiceStatus::Failed);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let hb = rec.heartbeats();
        let statuses: Vec<&str> = hb.iter().map(|(_, s, _)| s.as_str()).collect();
        // building is superseded before its repeat is due; the failure is
        // repeated at each confirm delay, then no more.
        assert_eq!(
            statuses,
            [
                "building",
                "failed to spawn",
                "failed to spawn",
                "failed to spawn"
            ]
        );
        assert!(hb[1].0 - hb[0].0 >= CAST_SPACING, "spaced");
        assert!(
            hb[2].0 - hb[1].0 >= CONFIRM_AT[0],
            "repeated after the first confirm delay"
        );
        assert!(hb[3].0 - hb[1].0 >= CONFIRM_AT[1], "and after the second");
        assert!(hb.windows(2).all(|w| w[1].2 > w[0].2), "sent grows: {hb:?}");
        drop(c);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unchanged_status_is_not_repeated_and_a_newer_one_cancels_the_repeat() {
        let (c, task, rec) = start();
        c.heartbeat(ServiceStatus::Healthy);
        tokio::time::sleep(Duration::from_secs(5)).await;
        c.heartbeat(ServiceStatus::Healthy);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            rec.heartbeats().len(),
            3,
            "the same status again cancels the second repeat, and is not repeated"
        );
        c.heartbeat(ServiceStatus::Shutdown);
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.heartbeat(ServiceStatus::Healthy);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let statuses: Vec<String> = rec.heartbeats().into_iter().map(|(_, s, _)| s).collect();
        assert_eq!(
            statuses,
            ["healthy", "healthy", "healthy", "shutdown", "healthy", "healthy", "healthy"],
            "no stale shutdown repeat after healthy"
        );
        drop(c);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_repeat_is_flushed_at_shutdown_and_notifications_are_not_repeated() {
        let (c, task, rec) = start();
        c.notify_end(json!({"event_type": "x"}), true);
        c.heartbeat(ServiceStatus::Healthy);
        drop(c);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("drains in time")
            .unwrap();
        let all = rec
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m["method"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>();
        assert_eq!(all, ["notify_end", "heartbeat", "heartbeat"]);
        // notify_end(context, serialized_notification, notification_args) takes no `sent`.
        let sent = rec.0.lock().unwrap().clone();
        assert!(sent[0].1["args"].get("sent").is_none());
        // trove-conductor needs the notification in the context as well.
        let note = &sent[0].1["args"]["serialized_notification"];
        assert_eq!(note["instance_id"], json!("g1"));
        assert_eq!(
            &sent[0].1["_context_trove_notification"], note,
            "{}",
            sent[0].1
        );
        assert!(sent[1].1.get("_context_trove_notification").is_none());
    }
}
