//! What the agent declares on the broker, derived from
//! `[oslo_messaging_rabbit]` exactly as oslo.messaging's rabbit driver does
//! (`impl_rabbit.py`: `_get_queue_arguments`, `Consumer.declare`,
//! `declare_topic_consumer`, `declare_fanout_consumer`, `topic_send`).
//!
//! The control plane pre-declares the guest's topic queue before the guest
//! boots; RabbitMQ refuses a re-declare with other flags or arguments, so
//! these must match what the taskmanager's oslo.messaging computes from the
//! same options.

use std::collections::BTreeMap;

use crate::config::RabbitOptions;

/// A queue argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// A string (`x-queue-type`, `x-ha-policy`, `x-max-age`).
    Str(String),
    /// An integer (`x-expires`, limits).
    Int(i64),
    /// A boolean (`x-cancel-on-ha-failover`).
    Bool(bool),
}

/// Exchange types oslo uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeType {
    /// Topic exchange (the control exchange).
    Topic,
    /// Fanout exchange (`<topic>_fanout`).
    Fanout,
}

/// One consumer: its exchange, queue, binding and consume arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// Exchange name.
    pub exchange: String,
    /// Exchange type.
    pub exchange_type: ExchangeType,
    /// Exchange durable flag.
    pub exchange_durable: bool,
    /// Exchange auto-delete flag.
    pub exchange_auto_delete: bool,
    /// Queue name.
    pub queue: String,
    /// Queue durable flag.
    pub durable: bool,
    /// Queue auto-delete flag.
    pub auto_delete: bool,
    /// Queue arguments (`x-*`).
    pub arguments: BTreeMap<String, ArgValue>,
    /// Binding routing key.
    pub routing_key: String,
    /// `basic.consume` arguments.
    pub consume_arguments: BTreeMap<String, ArgValue>,
    /// Delete the queue on a clean shutdown (oslo does for random fanout queues).
    pub delete_on_close: bool,
}

/// `_get_queue_arguments(rabbit_ha_queues, ttl, quorum, quorum_config, stream)`.
fn queue_arguments(
    opts: &RabbitOptions,
    ttl_secs: u64,
    quorum: bool,
    stream: bool,
) -> BTreeMap<String, ArgValue> {
    let mut args = BTreeMap::new();
    if opts.rabbit_ha_queues {
        args.insert("x-ha-policy".into(), ArgValue::Str("all".into()));
    }
    if quorum {
        args.insert("x-queue-type".into(), ArgValue::Str("quorum".into()));
        let limits = [
            ("x-delivery-limit", opts.rabbit_quorum_delivery_limit),
            (
                "x-max-in-memory-length",
                opts.rabbit_quorum_max_memory_length,
            ),
            ("x-max-in-memory-bytes", opts.rabbit_quorum_max_memory_bytes),
        ];
        for (name, value) in limits {
            if value > 0 {
                args.insert(name.into(), ArgValue::Int(value as i64));
            }
        }
    }
    if ttl_secs > 0 {
        args.insert("x-expires".into(), ArgValue::Int((ttl_secs * 1000) as i64));
    }
    if stream {
        args = BTreeMap::new();
        args.insert("x-queue-type".into(), ArgValue::Str("stream".into()));
        if ttl_secs > 0 {
            args.insert("x-max-age".into(), ArgValue::Str(format!("{ttl_secs}s")));
        }
    }
    args
}

fn consume_arguments(opts: &RabbitOptions, stream: bool) -> BTreeMap<String, ArgValue> {
    let mut args = BTreeMap::new();
    if stream {
        args.insert("x-stream-offset".into(), ArgValue::Str("last".into()));
    } else if opts.enable_cancel_on_failover {
        args.insert("x-cancel-on-ha-failover".into(), ArgValue::Bool(true));
    }
    args
}

/// oslo's `durable` property: durable queues or quorum queues.
pub fn durable(opts: &RabbitOptions) -> bool {
    opts.amqp_durable_queues || opts.rabbit_quorum_queue
}

/// The three consumers of an oslo RPC server for `topic` and `server`:
/// the topic queue, the server queue and a fanout queue. `unique` makes
/// the fanout queue's name (oslo uses a random uuid hex).
pub fn rpc_server_consumers(
    opts: &RabbitOptions,
    exchange: &str,
    topic: &str,
    server: &str,
    unique: &str,
) -> Vec<ConsumerSpec> {
    let topic_consumer = |name: String| ConsumerSpec {
        exchange: exchange.to_owned(),
        exchange_type: ExchangeType::Topic,
        exchange_durable: durable(opts),
        exchange_auto_delete: opts.amqp_auto_delete,
        queue: name.clone(),
        durable: durable(opts),
        auto_delete: opts.amqp_auto_delete,
        // Topic consumers get no x-expires (oslo passes no TTL for them).
        arguments: queue_arguments(opts, 0, opts.rabbit_quorum_queue, false),
        routing_key: name,
        consume_arguments: consume_arguments(opts, false),
        delete_on_close: false,
    };
    let stream = opts.rabbit_stream_fanout;
    let fanout_queue = if stream {
        format!("{topic}_fanout")
    } else {
        format!("{topic}_fanout_{unique}")
    };
    let fanout = ConsumerSpec {
        exchange: format!("{topic}_fanout"),
        exchange_type: ExchangeType::Fanout,
        exchange_durable: opts.rabbit_transient_quorum_queue || stream,
        exchange_auto_delete: true,
        queue: fanout_queue,
        durable: opts.rabbit_transient_quorum_queue || stream,
        auto_delete: false,
        arguments: queue_arguments(
            opts,
            opts.rabbit_transient_queues_ttl,
            opts.rabbit_transient_quorum_queue,
            stream,
        ),
        routing_key: topic.to_owned(),
        consume_arguments: consume_arguments(opts, stream),
        delete_on_close: !stream,
    };
    vec![
        topic_consumer(topic.to_owned()),
        topic_consumer(format!("{topic}.{server}")),
        fanout,
    ]
}

/// How casts are published: the control exchange as `topic_send` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishExchange {
    /// Exchange name.
    pub name: String,
    /// Durable flag.
    pub durable: bool,
    /// Auto-delete flag.
    pub auto_delete: bool,
}

/// The exchange casts to the conductor go to.
pub fn cast_exchange(opts: &RabbitOptions, exchange: &str) -> PublishExchange {
    PublishExchange {
        name: exchange.to_owned(),
        durable: durable(opts),
        auto_delete: opts.amqp_auto_delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_oslo() {
        let opts = RabbitOptions::default();
        let c = rpc_server_consumers(&opts, "trove", "guestagent.g1", "g1", "abc");
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].queue, "guestagent.g1");
        assert_eq!(c[0].routing_key, "guestagent.g1");
        assert!(!c[0].durable && !c[0].auto_delete);
        assert!(c[0].arguments.is_empty(), "topic queue has no x-expires");
        assert_eq!(c[1].queue, "guestagent.g1.g1");
        assert_eq!(c[2].exchange, "guestagent.g1_fanout");
        assert_eq!(c[2].exchange_type, ExchangeType::Fanout);
        assert!(c[2].exchange_auto_delete);
        assert_eq!(c[2].queue, "guestagent.g1_fanout_abc");
        assert_eq!(
            c[2].arguments.get("x-expires"),
            Some(&ArgValue::Int(1_800_000))
        );
        assert!(c[2].delete_on_close);
    }

    #[test]
    fn quorum_topic_queues_are_durable_with_limits() {
        let opts = RabbitOptions {
            rabbit_quorum_queue: true,
            rabbit_quorum_delivery_limit: 5,
            ..Default::default()
        };
        let c = rpc_server_consumers(&opts, "trove", "t", "s", "u");
        assert!(c[0].durable && c[0].exchange_durable);
        assert_eq!(
            c[0].arguments.get("x-queue-type"),
            Some(&ArgValue::Str("quorum".into()))
        );
        assert_eq!(
            c[0].arguments.get("x-delivery-limit"),
            Some(&ArgValue::Int(5))
        );
        // Fanout queues follow rabbit_transient_quorum_queue, not rabbit_quorum_queue.
        assert!(!c[2].durable);
        assert!(!c[2].arguments.contains_key("x-queue-type"));
    }

    #[test]
    fn ha_and_stream_fanout() {
        let opts = RabbitOptions {
            rabbit_ha_queues: true,
            rabbit_stream_fanout: true,
            rabbit_qos_prefetch_count: 10,
            ..Default::default()
        };
        let c = rpc_server_consumers(&opts, "trove", "t", "s", "u");
        assert_eq!(
            c[0].arguments.get("x-ha-policy"),
            Some(&ArgValue::Str("all".into()))
        );
        assert_eq!(c[2].queue, "t_fanout");
        assert_eq!(
            c[2].arguments.get("x-queue-type"),
            Some(&ArgValue::Str("stream".into()))
        );
        assert_eq!(
            c[2].arguments.get("x-max-age"),
            Some(&ArgValue::Str("1800s".into()))
        );
        assert!(!c[2].arguments.contains_key("x-ha-policy"));
        assert!(c[2].durable);
        assert!(!c[2].delete_on_close);
        assert_eq!(
            c[2].consume_arguments.get("x-stream-offset"),
            Some(&ArgValue::Str("last".into()))
        );
    }

    #[test]
    fn ttl_zero_means_no_expiry() {
        let opts = RabbitOptions {
            rabbit_transient_queues_ttl: 0,
            ..Default::default()
        };
        let c = rpc_server_consumers(&opts, "trove", "t", "s", "u");
        assert!(c[2].arguments.is_empty());
    }
}
