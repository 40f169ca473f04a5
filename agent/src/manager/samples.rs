//! What a Prometheus scrape reads now: the datastore's gauges and the
//! data volume's use.

use driver_api::{MetricKind, MetricSample};

use super::Manager;
use crate::metrics::Sampler;

#[async_trait::async_trait]
impl Sampler for Manager {
    async fn samples(&self) -> Vec<MetricSample> {
        let mut samples = self.datastore.metric_samples().await;
        samples.push(MetricSample {
            name: "trove_guestagent_conductor_queue_casts".into(),
            kind: MetricKind::Gauge,
            help: "Casts to trove-conductor waiting to be sent".into(),
            labels: Vec::new(),
            value: self.conductor.queued() as f64,
        });
        if let Ok(st) = nix::sys::statvfs::statvfs(&self.volume.mount_point) {
            let size = st.fragment_size() as f64;
            let gauge = |name: &str, help: &str, value: f64| MetricSample {
                name: name.into(),
                kind: MetricKind::Gauge,
                help: help.into(),
                labels: vec![(
                    "mount_point".into(),
                    self.volume.mount_point.display().to_string(),
                )],
                value,
            };
            samples.push(gauge(
                "trove_guestagent_data_volume_size_bytes",
                "The data volume's size",
                st.blocks() as f64 * size,
            ));
            samples.push(gauge(
                "trove_guestagent_data_volume_available_bytes",
                "What the database user can still write on the data volume",
                st.blocks_available() as f64 * size,
            ));
        }
        samples
    }
}
