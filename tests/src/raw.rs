//! A raw AMQP connection: publishes a body to the default exchange, routed
//! to a queue, for malformed-input tests, and reads a reply queue; also
//! the connection the RPC benchmark's client is built on.

use std::time::Duration;

use crate::rabbit_host;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

/// A raw AMQP connection to the test broker.
pub struct Raw {
    _conn: Connection,
    channel: Channel,
}

impl Raw {
    /// Connects to the test broker.
    pub async fn connect() -> Raw {
        Raw::connect_to(&format!("amqp://guest:guest@{}/%2f", rabbit_host())).await
    }

    /// Connects to the broker at `url`.
    pub async fn connect_to(url: &str) -> Raw {
        let conn = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("raw AMQP connection");
        let channel = conn.create_channel().await.unwrap();
        Raw {
            _conn: conn,
            channel,
        }
    }

    /// The channel, for what this module does not wrap.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes `body` to queue `queue` through the default exchange.
    pub async fn publish(&self, queue: &str, body: &[u8]) {
        self.channel
            .basic_publish(
                "".into(),
                queue.to_owned().into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Declares an exclusive reply queue and consumes it.
    pub async fn reply_queue(&self) -> (String, Consumer) {
        let name = format!("reply_{}", uuid::Uuid::new_v4().simple());
        self.channel
            .queue_declare(
                name.clone().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let consumer = self
            .channel
            .basic_consume(
                name.clone().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        (name, consumer)
    }
}

/// The next message body on `consumer` within `within`.
pub async fn next_body(consumer: &mut Consumer, within: Duration) -> Option<Vec<u8>> {
    match tokio::time::timeout(within, consumer.next()).await {
        Ok(Some(Ok(d))) => Some(d.data),
        _ => None,
    }
}
