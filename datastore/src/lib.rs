//! The K2HDKC datastore driver: what the agent calls for `datastore_manager
//! = k2hdkc`. Node lifecycle (K2HR3 registration, the k2hdkc.ini, the
//! server container, chmpx health), clusters and backups arrive here in
//! later steps; until a method is implemented the trait's default answers
//! the caller with `DatastoreOperationNotSupported`.

use async_trait::async_trait;
use driver_api::{Datastore, ServiceStatus};

/// The `datastore_manager` name Trove uses for K2HDKC.
pub const MANAGER: &str = "k2hdkc";

/// The K2HDKC driver.
#[derive(Debug, Default)]
pub struct K2hdkc {}

impl K2hdkc {
    /// A driver with nothing prepared yet.
    pub fn new() -> Self {
        Self {}
    }
}

#[async_trait]
impl Datastore for K2hdkc {
    fn manager(&self) -> &'static str {
        MANAGER
    }

    async fn status(&self) -> ServiceStatus {
        // No server is managed yet, so nothing can be said about it.
        ServiceStatus::Unknown
    }
}
