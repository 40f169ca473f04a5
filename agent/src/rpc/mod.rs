//! Trove RPC over RabbitMQ, as oslo.messaging's rabbit driver does it.
//!
//! - [`topology`]: what to declare, from `[oslo_messaging_rabbit]` (pure);
//! - [`link`]: connecting (failover, TLS) and declaring with lapin;
//! - [`publisher`]: publishing replies and casts on the current channel;
//! - [`server`]: the link supervisor (reconnects with bounded backoff) and
//!   the dispatcher (decode, decrypt, run, reply).
//!
//! Delivery semantics: like oslo, a request is acknowledged when the
//! dispatcher takes it, before it runs (at most once). A request the agent
//! never took (it was still in the prefetch window at a crash or shutdown)
//! is redelivered by the broker. Handlers are written to be safe to re-run:
//! prepare checks its markers, and duplicates by `_unique_id` are dropped.

pub mod link;
pub mod publisher;
pub mod server;
pub mod topology;

/// Deliveries the broker may push ahead of the dispatcher when
/// `rabbit_qos_prefetch_count` is 0 (oslo's "unlimited" is not a bound).
pub const PREFETCH: u16 = 64;
/// Requests handled at once.
pub const MAX_IN_FLIGHT: usize = 64;
