//! Harness for the end-to-end tests: the real agent (`agent::run`,
//! in-process), a real RabbitMQ, and upstream Trove code as the peer
//! (`tests/peer/peer.py` under the venv `tests/run` creates).
//!
//! Environment: `TEST_RABBIT_HOST` (default 127.0.0.1:5672, user guest),
//! `PEER_PYTHON` (default `<repo>/.venv/bin/python`).

use std::path::PathBuf;

pub mod agent;
pub mod app;
pub mod controlplane;
pub mod k2hdkc;
pub mod k2hr3;
pub mod node;
pub mod peer;
pub mod process;
pub mod raw;
pub mod swift;

pub use agent::*;
pub use k2hdkc::*;
pub use k2hr3::*;
pub use peer::Peer;

/// The broker `host:port`.
pub fn rabbit_host() -> String {
    std::env::var("TEST_RABBIT_HOST").unwrap_or_else(|_| "127.0.0.1:5672".into())
}

/// `transport_url` for the test broker.
pub fn transport_url() -> String {
    format!("rabbit://guest:guest@{}/", rabbit_host())
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The venv's python, where trove and the plugin are.
pub fn peer_python() -> PathBuf {
    std::env::var_os("PEER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// A fresh guest id per test, so tests share the broker without meeting.
pub fn guest_id() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}
