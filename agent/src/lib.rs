//! `trove-guestagent` in Rust: serves Trove's guest API over RabbitMQ for
//! one datastore driver.
//!
//! [`run`] is the whole agent; `main` only parses flags, loads the
//! configuration and calls it with a shutdown future (SIGTERM/SIGINT), so
//! tests run the real agent in-process with a oneshot instead.

pub mod conductor;
pub mod config;
pub mod docker;
pub mod guest_log;
pub mod host;
pub mod journal;
pub mod logging;
pub mod manager;
pub mod metrics;
pub mod registry;
pub mod rpc;
pub mod swift;
pub mod volume;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use driver_api::secure::SecureCodec;
use driver_api::Datastore;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use conductor::{Conductor, ConductorTarget};
use config::Config;
use journal::Journal;
use manager::Manager;
use rpc::publisher::Publisher;
use rpc::server::{Dispatcher, LinkControl, Target};

/// The single-threaded runtime both binaries run on (the agent's work is
/// I/O bound; one thread keeps its memory small).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// How long casts (the last heartbeat, notifications) may take to flush at
/// shutdown.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub use registry::{check_datastore, datastore_for, StartError};

/// Things a caller of [`run`] can watch.
#[derive(Clone)]
pub struct Handles {
    /// `true` while the RPC consumers are up (READY for systemd).
    pub ready: watch::Receiver<bool>,
}

/// The manager over the datastore, with the guest's data volume, journal
/// and bounds from the configuration.
fn new_manager(
    config: &Config,
    datastore: Arc<dyn Datastore>,
    conductor: conductor::Conductor,
    metrics: Arc<metrics::Metrics>,
) -> Arc<Manager> {
    Arc::new(
        Manager::new(
            datastore,
            conductor,
            manager::DataVolume {
                device: config.datastore.device_path.clone(),
                mount_point: config.datastore.mount_point.clone(),
                uid: config.datastore.database_service_uid,
                gid: config.datastore.database_service_gid,
                options: config.volume.clone(),
            },
            Journal::new(config.state_dir.join(&config.guest_id)),
            config.state_change_wait_time,
            config.backup.clone(),
        )
        .with_guest_logs(
            &config.guest_log,
            &config.guest_id,
            config.backup.swift_api_insecure,
        )
        .with_metrics(metrics),
    )
}

/// The periodic status report (upstream's update_status), the first one
/// after one interval as upstream does.
fn spawn_reporter(manager: Arc<Manager>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            manager.report_status().await;
        }
    })
}

/// The Prometheus endpoint, when `metrics_listen` is set. An address
/// that cannot be bound is logged and the agent serves Trove without it.
async fn spawn_metrics(
    config: &Config,
    manager: &Arc<Manager>,
) -> Option<tokio::task::JoinHandle<()>> {
    let addr = config.datastore.metrics_listen?;
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!(address = %addr, "metrics at /metrics");
            let sampler: Arc<dyn metrics::Sampler> = manager.clone();
            Some(tokio::spawn(metrics::serve(
                listener,
                manager.metrics(),
                sampler,
            )))
        }
        Err(e) => {
            tracing::error!(address = %addr, error = %e, "cannot listen for metrics (metrics_listen); serving without them");
            None
        }
    }
}

/// Runs the agent until `shutdown` completes, then drains: stop taking
/// requests, let in-flight ones finish (bounded by
/// `graceful_shutdown_timeout`), flush casts, close the connection.
pub async fn run(
    config: Config,
    datastore: Arc<dyn Datastore>,
    shutdown: impl Future<Output = ()>,
    on_start: impl FnOnce(Handles),
) {
    let config = Arc::new(config);
    let codec = SecureCodec::new(config.instance_rpc_encr_key.as_ref().map(|k| k.expose()));
    if !codec.is_secure() {
        tracing::warn!("instance_rpc_encr_key is not set: RPC messages are not encrypted");
    }
    for ignored in &config.ignored {
        tracing::debug!(option = %ignored, "upstream option not used by this agent");
    }
    let target = Target {
        exchange: config.control_exchange.clone(),
        topic: format!("guestagent.{}", config.guest_id),
        server: config.guest_id.clone(),
    };

    let (channel_tx, channel_rx) = watch::channel(None);
    let (ready_tx, ready_rx) = watch::channel(false);
    let (delivery_tx, delivery_rx) = mpsc::channel(rpc::server::HANDOFF_DEPTH);
    let control = LinkControl {
        stop_consuming: CancellationToken::new(),
        close: CancellationToken::new(),
    };
    let (stop_consuming, close) = (control.stop_consuming.clone(), control.close.clone());
    let metrics = Arc::new(metrics::Metrics::new());
    let link = tokio::spawn(rpc::server::link_task(
        config.clone(),
        target,
        channel_tx,
        ready_tx,
        delivery_tx,
        control,
        metrics.clone(),
    ));

    let publisher = Publisher::new(channel_rx);
    let (conductor, conductor_task) = Conductor::start(
        ConductorTarget {
            exchange: config.control_exchange.clone(),
            topic: config.conductor_queue.clone(),
            guest_id: config.guest_id.clone(),
            tenant_id: config.tenant_id.clone(),
        },
        codec.clone(),
        publisher.clone(),
    );
    let manager = new_manager(&config, datastore, conductor, metrics);
    {
        let manager = manager.clone();
        tokio::spawn(async move { manager.start().await });
    }
    let reporter = spawn_reporter(manager.clone(), config.report_interval);
    let metrics_server = spawn_metrics(&config, &manager).await;

    on_start(Handles { ready: ready_rx });
    tracing::info!(
        guest_id = %config.guest_id,
        datastore = manager.datastore_name(),
        broker = %config.transport_url.masked(),
        secure_rpc = codec.is_secure(),
        "trove-guestagent started"
    );

    let dispatcher_stop = CancellationToken::new();
    let dispatcher = tokio::spawn(Dispatcher::new(manager.clone(), codec, publisher).run(
        delivery_rx,
        dispatcher_stop.clone(),
        config.graceful_shutdown_timeout,
    ));

    shutdown.await;
    tracing::info!("shutting down: no new requests");
    stop_consuming.cancel();
    dispatcher_stop.cancel();
    let _ = dispatcher.await;
    manager.end_abandoned_backup();
    reporter.abort();
    let _ = reporter.await;
    if let Some(server) = metrics_server {
        server.abort();
    }
    // The manager holds the last conductor handle: dropping it lets the
    // sender drain what is queued and end.
    drop(manager);
    if tokio::time::timeout(FLUSH_TIMEOUT, conductor_task)
        .await
        .is_err()
    {
        tracing::warn!("casts to the conductor not flushed within {FLUSH_TIMEOUT:?}");
    }
    close.cancel();
    if tokio::time::timeout(FLUSH_TIMEOUT, link).await.is_err() {
        tracing::warn!("broker connection not closed within {FLUSH_TIMEOUT:?}");
    }
    tracing::info!("stopped");
}
