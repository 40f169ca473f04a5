//! The RPC server: a link supervisor that keeps a connection and three
//! consumers up, and a dispatcher that runs each request and replies.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use driver_api::envelope::{self, RpcMessage};
use driver_api::secure::SecureCodec;
use driver_api::{GuestMethod, TroveException};
use futures_util::stream::{select_all, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, QueueDeleteOptions};
use lapin::Channel;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::link::{self, LinkError};
use super::publisher::Publisher;
use super::topology::{self, ConsumerSpec};
use super::{MAX_IN_FLIGHT, PREFETCH};
use crate::config::{Config, Secret};
use crate::manager::{Call, Failure, Manager};

/// Deliveries handed from the link to the dispatcher.
pub const HANDOFF_DEPTH: usize = 16;
/// `_unique_id`s remembered to drop duplicates (oslo keeps 16).
const DEDUP_WINDOW: usize = 1024;
/// Bound on aborted requests going away (they are cancelled at their next
/// await; a task stuck in a poll would hold this).
const ABORT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Signals between `run` and the link task.
pub struct LinkControl {
    /// Stop taking new requests (cancel the consumers), keep publishing.
    pub stop_consuming: CancellationToken,
    /// Close the connection (after replies and casts are flushed).
    pub close: CancellationToken,
}

/// The oslo RPC server's target.
#[derive(Debug, Clone)]
pub struct Target {
    /// `control_exchange`.
    pub exchange: String,
    /// `guestagent.<guest_id>`.
    pub topic: String,
    /// `<guest_id>`.
    pub server: String,
}

/// Keeps the broker link up until told to close: connect, declare,
/// consume, hand deliveries over; on any failure back off (oslo's
/// `rabbit_retry_interval` + `rabbit_retry_backoff` per attempt, capped at
/// `rabbit_interval_max`) and start again on the next broker.
pub async fn link_task(
    config: Arc<Config>,
    target: Target,
    channel_tx: watch::Sender<Option<Channel>>,
    ready_tx: watch::Sender<bool>,
    deliveries: mpsc::Sender<Delivery>,
    control: LinkControl,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let fanout_unique = uuid::Uuid::new_v4().simple().to_string();
    let specs = topology::rpc_server_consumers(
        &config.rabbit,
        &target.exchange,
        &target.topic,
        &target.server,
        &fanout_unique,
    );
    let mut start = 0usize;
    let mut attempt = 0u64;
    loop {
        if control.close.is_cancelled() {
            return;
        }
        let started = Instant::now();
        match serve_once(
            &config,
            &specs,
            start,
            &channel_tx,
            &ready_tx,
            &deliveries,
            &control,
        )
        .await
        {
            Ok(()) => return,
            Err(e) => {
                channel_tx.send_replace(None);
                ready_tx.send_replace(false);
                // A link that stayed up for a while starts the backoff over.
                if started.elapsed() > Duration::from_secs(30) {
                    attempt = 0;
                }
                let r = &config.rabbit;
                let delay = (r.rabbit_retry_interval + r.rabbit_retry_backoff * attempt)
                    .min(r.rabbit_interval_max);
                tracing::error!(error = %e, retry_in_s = delay, "broker link down; reconnecting");
                metrics.reconnect();
                attempt += 1;
                start += 1;
                tokio::select! {
                    _ = control.close.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(delay)) => {}
                }
            }
        }
    }
}

async fn serve_once(
    config: &Config,
    specs: &[ConsumerSpec],
    start: usize,
    channel_tx: &watch::Sender<Option<Channel>>,
    ready_tx: &watch::Sender<bool>,
    deliveries: &mpsc::Sender<Delivery>,
    control: &LinkControl,
) -> Result<(), LinkError> {
    let (conn, index) = link::connect(config, start).await?;
    let broker = &config.transport_url.hosts[index];
    tracing::info!(broker = %format!("{}:{}", broker.host, broker.port), tls = config.rabbit.ssl, "connected to RabbitMQ");

    let publish = conn.create_channel().await?;
    link::declare_publish_exchange(
        &publish,
        &topology::cast_exchange(&config.rabbit, &config.control_exchange),
    )
    .await?;
    channel_tx.send_replace(Some(publish));

    let consume = conn.create_channel().await?;
    let prefetch = if config.rabbit.rabbit_qos_prefetch_count > 0 {
        config.rabbit.rabbit_qos_prefetch_count
    } else {
        PREFETCH
    };
    link::set_prefetch(&consume, prefetch).await?;
    let mut consumers = Vec::new();
    let mut tags = Vec::new();
    if !control.stop_consuming.is_cancelled() {
        for (i, spec) in specs.iter().enumerate() {
            let tag = format!("trove-guestagent-{}-{i}", uuid::Uuid::new_v4().simple());
            consumers.push(link::declare_and_consume(&consume, spec, &tag).await?);
            tags.push(tag);
        }
        tracing::info!(queues = ?specs.iter().map(|s| s.queue.as_str()).collect::<Vec<_>>(), "consuming");
        ready_tx.send_replace(true);
    }
    let mut stream = select_all(consumers);
    let mut consuming = !tags.is_empty();
    loop {
        tokio::select! {
            _ = control.close.cancelled() => {
                for spec in specs.iter().filter(|s| s.delete_on_close) {
                    // oslo deletes its random fanout queue on close.
                    let _ = consume.queue_delete(spec.queue.clone().into(), QueueDeleteOptions::default()).await;
                }
                let _ = conn.close(200, "agent shutting down".into()).await;
                return Ok(());
            }
            _ = control.stop_consuming.cancelled(), if consuming => {
                for tag in &tags {
                    let _ = consume.basic_cancel(tag.clone().into(), BasicCancelOptions::default()).await;
                }
                consuming = false;
                ready_tx.send_replace(false);
                tracing::info!("stopped consuming");
            }
            item = stream.next(), if consuming => match item {
                Some(Ok(delivery)) => {
                    if deliveries.send(delivery).await.is_err() {
                        // Dispatcher gone: shutting down.
                        consuming = false;
                    }
                }
                Some(Err(e)) => return Err(LinkError::Amqp(e)),
                None => return Err(LinkError::Declare { what: "consumers".into(), reason: "cancelled by the broker".into() }),
            },
            // While not consuming, still notice a dead connection so casts
            // can wait for the next one.
            _ = tokio::time::sleep(Duration::from_secs(1)), if !consuming => {
                if !conn.status().connected() {
                    return Err(LinkError::Declare { what: "connection".into(), reason: "closed".into() });
                }
            }
        }
    }
}

/// Runs requests: ack on receipt, drop duplicates, decode, decrypt, call
/// the manager, reply to calls. Ends when `deliveries` closes or
/// `stop` fires; in-flight requests are then awaited up to `drain`.
pub struct Dispatcher {
    manager: Arc<Manager>,
    codec: SecureCodec,
    publisher: Publisher,
    limit: Arc<Semaphore>,
    seen: VecDeque<String>,
    seen_set: HashSet<String>,
}

impl Dispatcher {
    /// A dispatcher for `manager`.
    pub fn new(manager: Arc<Manager>, codec: SecureCodec, publisher: Publisher) -> Self {
        Self {
            manager,
            codec,
            publisher,
            limit: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            seen: VecDeque::with_capacity(DEDUP_WINDOW),
            seen_set: HashSet::with_capacity(DEDUP_WINDOW),
        }
    }

    /// Takes deliveries until `stop` fires, then waits for in-flight work
    /// (at most `drain`).
    pub async fn run(
        mut self,
        mut deliveries: mpsc::Receiver<Delivery>,
        stop: CancellationToken,
        drain: Duration,
    ) {
        let mut tasks = JoinSet::new();
        loop {
            // Take a slot before taking the message, so the prefetch window
            // and this semaphore bound the work together.
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                p = self.limit.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            let delivery = tokio::select! {
                _ = stop.cancelled() => break,
                d = deliveries.recv() => match d { Some(d) => d, None => break },
            };
            while tasks.try_join_next().is_some() {}
            let Some(msg) = self.decode(&delivery.data).await else {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                continue;
            };
            let (manager, codec, publisher) = (
                self.manager.clone(),
                self.codec.clone(),
                self.publisher.clone(),
            );
            tasks.spawn(async move {
                // Acknowledge before running, as oslo does; in the task, so
                // the dispatcher does not wait on the socket per message.
                if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                    // oslo drops a request it could not acknowledge; the
                    // broker redelivers it.
                    tracing::warn!(error = %e, "could not acknowledge a request; leaving it to redelivery");
                    return;
                }
                handle(manager, codec, publisher, msg).await;
                drop(permit);
            });
        }
        let pending = tasks.len();
        if pending > 0 {
            tracing::info!(pending, "waiting for in-flight requests");
            if tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} })
                .await
                .is_err()
            {
                tracing::warn!(
                    abandoned = tasks.len(),
                    "in-flight requests did not finish within graceful_shutdown_timeout"
                );
                tasks.abort_all();
                // Gone for sure before the agent reports what they left
                // unfinished (an abandoned backup).
                let _ = tokio::time::timeout(ABORT_WAIT, async {
                    while tasks.join_next().await.is_some() {}
                })
                .await;
            }
        }
    }

    async fn decode(&mut self, body: &[u8]) -> Option<RpcMessage> {
        match envelope::decode(body) {
            Ok(msg) => {
                if let Some(id) = &msg.unique_id {
                    if self.seen_set.contains(id) {
                        tracing::info!(method = %msg.method, unique_id = %id, "duplicate message ignored");
                        return None;
                    }
                    if self.seen.len() == DEDUP_WINDOW {
                        if let Some(old) = self.seen.pop_front() {
                            self.seen_set.remove(&old);
                        }
                    }
                    self.seen.push_back(id.clone());
                    self.seen_set.insert(id.clone());
                }
                Some(msg)
            }
            Err((e, address)) => {
                tracing::warn!(error = %e, bytes = body.len(), "malformed RPC message dropped");
                if let Some(addr) = address {
                    let failure = TroveException::BadRequest(format!("malformed RPC message: {e}"));
                    reply(
                        &self.publisher,
                        &addr.reply_q,
                        &addr.msg_id,
                        Err(Failure::Trove(failure)),
                        &self.codec,
                    )
                    .await;
                }
                None
            }
        }
    }
}

/// Decrypts arguments and context; errors name what failed (never a value).
fn open(codec: &SecureCodec, msg: &mut RpcMessage) -> Result<(Map<String, Value>, Call), Failure> {
    let undecryptable = |what: &str, e: driver_api::secure::SecureError| {
        Failure::Trove(TroveException::BadRequest(format!(
            "the guest agent could not decrypt {what} of the request: {e}; \
             the control plane and this guest disagree on instance_rpc_encr_key"
        )))
    };
    let context = codec
        .decode_context(std::mem::take(&mut msg.context))
        .map_err(|e| undecryptable("the context", e))?;
    let mut args = Map::new();
    for (name, value) in std::mem::take(&mut msg.args) {
        let value = codec
            .decode_entity(value)
            .map_err(|e| undecryptable(&format!("argument '{name}'"), e))?;
        args.insert(name, value);
    }
    let call = Call {
        notification: context.get("trove_notification").cloned(),
        auth_token: context
            .get("auth_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(Secret::new),
        service_catalog: context
            .get("service_catalog")
            .filter(|c| !c.is_null())
            .cloned(),
        project_id: context
            .get("project_id")
            .or_else(|| context.get("tenant"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        is_admin: context
            .get("is_admin")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    Ok((args, call))
}

async fn handle(
    manager: Arc<Manager>,
    codec: SecureCodec,
    publisher: Publisher,
    mut msg: RpcMessage,
) {
    let started = Instant::now();
    let method = msg.method.clone();
    let call = msg.is_call();
    // oslo's call monitor: keep the caller's timer alive for long calls.
    let monitor = match (call, msg.call_monitor_timeout) {
        (true, Some(t)) if t > 0.0 => {
            let (publisher, q, id) = (
                publisher.clone(),
                msg.reply_q.clone().unwrap_or_default(),
                msg.msg_id.clone().unwrap_or_default(),
            );
            Some(tokio::spawn(async move {
                let every = Duration::from_secs_f64((t / 2.0).max(0.5));
                loop {
                    tokio::time::sleep(every).await;
                    let body = envelope::encode_reply(
                        &id,
                        &uuid::Uuid::new_v4().simple().to_string(),
                        None,
                        None,
                        false,
                    );
                    let _ = publisher.publish("", &q, &body).await;
                }
            }))
        }
        _ => None,
    };
    let outcome = match open(&codec, &mut msg) {
        Ok((args, call)) => {
            manager
                .handle(&method, msg.version.as_deref(), args, call)
                .await
        }
        Err(f) => Err(f),
    };
    if let Some(m) = monitor {
        m.abort();
    }
    manager
        .metrics()
        .rpc_done(&method, outcome.is_ok(), started.elapsed());
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match &outcome {
        // Pings and stats arrive often and change nothing: debug level.
        Ok(_) if !GuestMethod::from_name(&method).is_some_and(GuestMethod::mutates) => {
            tracing::debug!(method = %method, call, elapsed_ms, "handled")
        }
        Ok(_) => tracing::info!(method = %method, call, elapsed_ms, "handled"),
        Err(f) => {
            tracing::warn!(method = %method, call, elapsed_ms, failure = %failure_summary(f), "failed")
        }
    }
    if let (Some(q), Some(id)) = (&msg.reply_q, &msg.msg_id) {
        reply(&publisher, q, id, outcome, &codec).await;
    }
}

fn failure_summary(f: &Failure) -> String {
    match f {
        Failure::Trove(e) => e.to_string(),
        Failure::Oslo(text) => serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("class").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "oslo failure".into()),
    }
}

async fn reply(
    publisher: &Publisher,
    reply_q: &str,
    msg_id: &str,
    outcome: Result<Value, Failure>,
    codec: &SecureCodec,
) {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let body = match outcome {
        Ok(v) => envelope::encode_reply(msg_id, &unique, Some(codec.encode_entity(&v)), None, true),
        Err(f) => envelope::encode_reply(msg_id, &unique, None, Some(f.to_failure_text()), true),
    };
    if let Err(e) = publisher.publish("", reply_q, &body).await {
        tracing::error!(msg_id, error = %e, "reply not sent; the caller will time out");
    }
}
