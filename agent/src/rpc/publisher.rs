//! Publishing replies and casts on whatever channel is current. The link
//! supervisor swaps the channel on every reconnect; a publisher waits
//! (bounded) for one while the broker is away.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel};
use tokio::sync::watch;

/// How long a publish waits for a channel while reconnecting.
pub const CHANNEL_WAIT: Duration = Duration::from_secs(10);
/// How long one publish may take.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a message was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No connection came back within [`CHANNEL_WAIT`].
    #[error("no broker connection within {0:?}")]
    NoChannel(Duration),
    /// The broker did not take the message within [`PUBLISH_TIMEOUT`].
    #[error("publish not done within {0:?}")]
    Timeout(Duration),
    /// The channel failed.
    #[error("publish failed: {0}")]
    Amqp(#[from] lapin::Error),
}

/// A handle to publish on the current channel. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    channel: watch::Receiver<Option<Channel>>,
}

impl Publisher {
    /// A publisher following the link's channel.
    pub fn new(channel: watch::Receiver<Option<Channel>>) -> Self {
        Self { channel }
    }

    async fn current(&self) -> Result<Channel, PublishError> {
        let mut rx = self.channel.clone();
        let wait = async move {
            rx.wait_for(|c| c.as_ref().is_some_and(|c| c.status().connected()))
                .await
                .ok()
                .and_then(|c| c.clone())
        };
        match tokio::time::timeout(CHANNEL_WAIT, wait).await {
            Ok(Some(channel)) => Ok(channel),
            _ => Err(PublishError::NoChannel(CHANNEL_WAIT)),
        }
    }

    /// Publishes `body` to `exchange` with `routing_key`, as kombu does
    /// (JSON content type, UTF-8, persistent).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
    ) -> Result<(), PublishError> {
        let channel = self.current().await?;
        let props = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_content_encoding(ShortString::from("utf-8"))
            .with_delivery_mode(2);
        let publish = channel.basic_publish(
            exchange.to_owned().into(),
            routing_key.to_owned().into(),
            BasicPublishOptions::default(),
            body,
            props,
        );
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(_confirm)) => Ok(()),
            Ok(Err(e)) => Err(PublishError::Amqp(e)),
            Err(_) => Err(PublishError::Timeout(PUBLISH_TIMEOUT)),
        }
    }
}
