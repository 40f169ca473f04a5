//! Trove's service statuses (`trove/instance/service_status.py`) as the
//! guest reports them in a heartbeat's `service_status` description.

/// A datastore service status. [`ServiceStatus::description`] is the text
/// the conductor maps back with `ServiceStatus.from_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceStatus {
    /// The service answers.
    Running,
    /// The service answers and reports itself healthy.
    Healthy,
    /// Prepare is under way.
    Building,
    /// Nothing is known yet.
    New,
    /// Stopped on purpose.
    Shutdown,
    /// Stopped unexpectedly.
    Crashed,
    /// Paused.
    Paused,
    /// Cannot tell.
    Unknown,
    /// Prepare or an operation failed.
    Failed,
    /// Configuration changed and a restart is pending.
    RestartRequired,
    /// A cluster member finished prepare and waits for `cluster_complete`.
    InstanceReady,
    /// The datastore refuses work (Trove's `BLOCKED`).
    Blocked,
    /// Upgrading.
    Upgrading,
    /// Restarting.
    Restarting,
}

impl ServiceStatus {
    /// Every status, for lookups and tests.
    pub const ALL: [ServiceStatus; 14] = [
        Self::Running,
        Self::Healthy,
        Self::Building,
        Self::New,
        Self::Shutdown,
        Self::Crashed,
        Self::Paused,
        Self::Unknown,
        Self::Failed,
        Self::RestartRequired,
        Self::InstanceReady,
        Self::Blocked,
        Self::Upgrading,
        Self::Restarting,
    ];

    /// The description string Trove uses on the wire and in its database.
    pub fn description(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Healthy => "healthy",
            Self::Building => "building",
            Self::New => "new",
            Self::Shutdown => "shutdown",
            Self::Crashed => "crashed",
            Self::Paused => "paused",
            Self::Unknown => "unknown",
            // Trove's FAILED is 'failed to spawn', not 'failed'.
            Self::Failed => "failed to spawn",
            Self::RestartRequired => "restart required",
            Self::InstanceReady => "instance ready",
            Self::Blocked => "blocked",
            Self::Upgrading => "upgrading",
            Self::Restarting => "restarting",
        }
    }

    /// The inverse of [`ServiceStatus::description`].
    pub fn from_description(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.description() == text)
    }
}

impl std::fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip_and_are_unique() {
        for s in ServiceStatus::ALL {
            assert_eq!(ServiceStatus::from_description(s.description()), Some(s));
        }
        assert_eq!(ServiceStatus::from_description("bogus"), None);
    }
}
