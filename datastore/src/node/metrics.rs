//! The node's gauges for the agent's Prometheus endpoint, read at scrape
//! time from its chmpx (each question bounded): whether this node serves,
//! the ring as it sees it ([`crate::metrics`]), and the size of the
//! k2hash file.

use driver_api::MetricSample;

use super::Node;
use crate::ini;
use crate::metrics::{chmpx_samples, sample};
use crate::paths::CONTAINER_DATA_DIR;

impl Node {
    /// The node's gauges as of now.
    pub async fn metric_samples(&self) -> Vec<MetricSample> {
        let params = self.live.lock().await.params.clone();
        let ctl = self.ctl_addr(&params);
        let (mut out, status) = chmpx_samples(&ctl).await;
        if let Some(st) = status {
            out.push(sample(
                "k2hdkc_node_serving",
                "Whether this node serves: in the ring, up, k2hdkc attached",
                &[],
                f64::from(u8::from(st.is_serving())),
            ));
        }
        if let Some(bytes) = self.k2hash_file_bytes() {
            out.push(sample(
                "k2hdkc_k2hash_file_bytes",
                "The size of this node's k2hash file on the data volume",
                &[],
                bytes as f64,
            ));
        }
        out
    }

    fn k2hash_file_bytes(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.ini_path()).ok()?;
        let file = ini::facts(&text).k2hfile?;
        let host = ini::host_path(
            std::path::Path::new(&file),
            std::path::Path::new(CONTAINER_DATA_DIR),
            &self.settings.data_dir,
        )?;
        std::fs::metadata(host).ok().map(|m| m.len())
    }
}
