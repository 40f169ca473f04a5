//! The AMQP connection: connect to one of the brokers of `transport_url`
//! (in order, as oslo's round-robin failover does), with TLS when
//! configured, and declare what [`super::topology`] computed.

use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use super::topology::{ArgValue, ConsumerSpec, ExchangeType, PublishExchange};
use crate::config::{BrokerHost, Config};

/// The AMQP frame size we offer. lapin keeps send and receive buffers of
/// 32 frames each; at RabbitMQ's default (128 KiB) that is 8 MiB resident
/// for messages that are rarely over 20 KiB. Larger bodies span frames.
pub const FRAME_MAX: u32 = 16 * 1024;

/// How long one TCP + AMQP handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the link failed, naming the broker (never its password).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Could not read TLS material.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Connecting failed.
    #[error("connect to {broker}: {reason}")]
    Connect {
        /// `host:port`.
        broker: String,
        /// Why.
        reason: String,
    },
    /// A declaration was refused (e.g. PRECONDITION_FAILED: our flags
    /// differ from what the control plane declared).
    #[error("declare {what}: {reason}")]
    Declare {
        /// The queue or exchange.
        what: String,
        /// The broker's answer.
        reason: String,
    },
    /// Any other AMQP failure.
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
}

/// Builds the TLS settings from `[oslo_messaging_rabbit]`.
pub fn tls_config(config: &Config) -> Result<OwnedTLSConfig, LinkError> {
    let r = &config.rabbit;
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| LinkError::Tls(format!("read {}: {e}", p.display())))
    };
    let cert_chain = match &r.ssl_ca_file {
        Some(p) => Some(
            String::from_utf8(read(p)?)
                .map_err(|_| LinkError::Tls(format!("{} is not PEM text", p.display())))?,
        ),
        None => None,
    };
    let identity = match (&r.ssl_cert_file, &r.ssl_key_file) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read(cert)?,
            key: read(key)?,
        }),
        _ => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

fn uri_for(config: &Config, host: &BrokerHost) -> AMQPUri {
    AMQPUri {
        scheme: if config.rabbit.ssl {
            AMQPScheme::AMQPS
        } else {
            AMQPScheme::AMQP
        },
        authority: AMQPAuthority {
            userinfo: AMQPUserInfo {
                username: host.username.clone(),
                password: host.password.expose().to_owned(),
            },
            host: host.host.clone(),
            port: host.port,
        },
        vhost: if config.transport_url.vhost.is_empty() {
            "/".into()
        } else {
            config.transport_url.vhost.clone()
        },
        query: AMQPQueryString {
            heartbeat: Some(config.rabbit.heartbeat_timeout_threshold),
            frame_max: Some(FRAME_MAX),
            connection_timeout: Some(CONNECT_TIMEOUT.as_millis() as u64),
            ..Default::default()
        },
    }
}

/// Connects to the first broker that answers, starting at `start` (so a
/// reconnect moves on to the next broker). Returns the connection and the
/// index of the broker that answered.
pub async fn connect(config: &Config, start: usize) -> Result<(Connection, usize), LinkError> {
    let hosts = &config.transport_url.hosts;
    let tls = tls_config(config)?;
    let mut last = None;
    for offset in 0..hosts.len() {
        let index = (start + offset) % hosts.len();
        let host = &hosts[index];
        let broker = format!("{}:{}", host.host, host.port);
        let props = ConnectionProperties::default().with_connection_name(LongString::from(
            format!("trove-guestagent:{}", config.guest_id),
        ));
        let attempt = Connection::connect_uri_with_config(
            uri_for(config, host),
            props,
            tls.clone(),
            lapin::runtime::default_runtime().map_err(|e| LinkError::Connect {
                broker: broker.clone(),
                reason: e.to_string(),
            })?,
        );
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => return Ok((conn, index)),
            Ok(Err(e)) => {
                last = Some(LinkError::Connect {
                    broker,
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                last = Some(LinkError::Connect {
                    broker,
                    reason: format!("no answer within {CONNECT_TIMEOUT:?}"),
                })
            }
        }
    }
    Err(last.unwrap_or(LinkError::Connect {
        broker: "-".into(),
        reason: "transport_url lists no broker".into(),
    }))
}

pub(crate) fn field_table(args: &std::collections::BTreeMap<String, ArgValue>) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in args {
        let value = match v {
            ArgValue::Str(s) => AMQPValue::LongString(LongString::from(s.clone())),
            ArgValue::Int(i) => AMQPValue::LongLongInt(*i),
            ArgValue::Bool(b) => AMQPValue::Boolean(*b),
        };
        table.insert(ShortString::from(k.clone()), value);
    }
    table
}

/// Declares one consumer's exchange, queue and binding, and starts
/// consuming. Refusals name the queue and the broker's reason.
pub async fn declare_and_consume(
    channel: &Channel,
    spec: &ConsumerSpec,
    tag: &str,
) -> Result<Consumer, LinkError> {
    let kind = match spec.exchange_type {
        ExchangeType::Topic => ExchangeKind::Topic,
        ExchangeType::Fanout => ExchangeKind::Fanout,
    };
    channel
        .exchange_declare(
            spec.exchange.clone().into(),
            kind,
            ExchangeDeclareOptions {
                durable: spec.exchange_durable,
                auto_delete: spec.exchange_auto_delete,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| LinkError::Declare {
            what: format!("exchange {}", spec.exchange),
            reason: e.to_string(),
        })?;
    channel
        .queue_declare(
            spec.queue.clone().into(),
            QueueDeclareOptions {
                durable: spec.durable,
                auto_delete: spec.auto_delete,
                ..Default::default()
            },
            field_table(&spec.arguments),
        )
        .await
        .map_err(|e| LinkError::Declare {
            what: format!("queue {}", spec.queue),
            reason: e.to_string(),
        })?;
    channel
        .queue_bind(
            spec.queue.clone().into(),
            spec.exchange.clone().into(),
            spec.routing_key.clone().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| LinkError::Declare {
            what: format!("binding of {}", spec.queue),
            reason: e.to_string(),
        })?;
    let consumer = channel
        .basic_consume(
            spec.queue.clone().into(),
            tag.to_owned().into(),
            BasicConsumeOptions::default(),
            field_table(&spec.consume_arguments),
        )
        .await
        .map_err(|e| LinkError::Declare {
            what: format!("consumer on {}", spec.queue),
            reason: e.to_string(),
        })?;
    Ok(consumer)
}

/// Declares the exchange casts go to (oslo declares it before publishing).
pub async fn declare_publish_exchange(
    channel: &Channel,
    exchange: &PublishExchange,
) -> Result<(), LinkError> {
    channel
        .exchange_declare(
            exchange.name.clone().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: exchange.durable,
                auto_delete: exchange.auto_delete,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| LinkError::Declare {
            what: format!("exchange {}", exchange.name),
            reason: e.to_string(),
        })
}

/// Sets the channel's prefetch.
pub async fn set_prefetch(channel: &Channel, prefetch: u16) -> Result<(), LinkError> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    Ok(())
}
