//! The node's status for Trove's heartbeat: the containers first, then
//! chmpx's own view; a restart Docker's policy made between two rounds is
//! a crash.

use driver_api::host::ContainerState;
use driver_api::ServiceStatus;

use super::Node;
use crate::chmpx;

impl Node {
    /// The node's status: containers first, then chmpx's own view.
    pub async fn status(&self, prepared: bool) -> ServiceStatus {
        let s = &self.settings;
        let chmpx_state = match self.containers.state(&s.chmpx_container()).await {
            Ok(st) => st,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the chmpx container's state");
                return ServiceStatus::Unknown;
            }
        };
        let server_state = self
            .containers
            .state(&s.server_container())
            .await
            .unwrap_or(ContainerState::Missing);
        let from_container = |st: &ContainerState| match st {
            ContainerState::Missing | ContainerState::Created | ContainerState::Exited(0) => {
                Some(ServiceStatus::Shutdown)
            }
            ContainerState::Exited(_) | ContainerState::Dead | ContainerState::Restarting => {
                Some(ServiceStatus::Crashed)
            }
            ContainerState::Paused => Some(ServiceStatus::Paused),
            ContainerState::Running { .. } => None,
        };
        if let Some(st) = from_container(&chmpx_state) {
            // Stopped on purpose (stop_db): however it exited (the real
            // chmpx 1.0.111 can segfault on SIGINT after leaving a lone
            // ring), that is a shutdown, not a crash.
            if prepared && self.live.lock().await.stopped {
                return ServiceStatus::Shutdown;
            }
            return if prepared { st } else { ServiceStatus::Unknown };
        }
        let started_at = match &chmpx_state {
            ContainerState::Running { started_at } => started_at.clone(),
            _ => None,
        };
        let restarted = prepared && self.chmpx_restarted_by_policy(started_at).await;
        if let Some(st) = from_container(&server_state) {
            // k2hdkc lives in chmpx's PID namespace: when chmpx died and
            // Docker restarted it, k2hdkc went with it and cannot be
            // restarted by Docker alone. Bring it back unless stopped on
            // purpose.
            if prepared && !self.live.lock().await.stopped {
                tracing::warn!(state = ?server_state, "k2hdkc is not running beside chmpx; starting it");
                if let Err(e) = self.containers.start(&s.server_container()).await {
                    tracing::error!(error = %e, "could not start k2hdkc");
                }
                return ServiceStatus::Crashed;
            }
            return if prepared { st } else { ServiceStatus::Unknown };
        }
        if restarted {
            return ServiceStatus::Crashed;
        }
        let params = self.live.lock().await.params.clone();
        match chmpx::self_status(&self.ctl_addr(&params)).await {
            Ok(st) if st.is_serving() => ServiceStatus::Healthy,
            Ok(_) => ServiceStatus::Running,
            Err(e) => {
                tracing::warn!(error = %e, "chmpx does not answer on its control port");
                ServiceStatus::Running
            }
        }
    }

    /// Whether chmpx started a new run since the last status round that
    /// no operation of ours asked for: Docker's restart policy brought it
    /// back after a crash, maybe before any round saw it down. Reported
    /// once as `crashed` rather than hidden behind a quick recovery.
    pub(super) async fn chmpx_restarted_by_policy(&self, now: Option<String>) -> bool {
        let mut live = self.live.lock().await;
        if self.changing.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            // Ours: the operation records the run it started when done.
            return false;
        }
        let before = std::mem::replace(&mut live.chmpx_run, now.clone());
        let restarted = matches!((&before, &now), (Some(b), Some(n)) if b != n);
        if restarted {
            tracing::warn!(
                before = before.as_deref().unwrap_or(""),
                now = now.as_deref().unwrap_or(""),
                "chmpx was restarted by its restart policy: it crashed"
            );
        }
        restarted
    }

    /// Remembers the chmpx run this node just started, so that the first
    /// status round already sees a restart that happens right after.
    pub(super) async fn record_chmpx_run(&self) {
        let run = match self
            .containers
            .state(&self.settings.chmpx_container())
            .await
        {
            Ok(ContainerState::Running { started_at }) => started_at,
            _ => None,
        };
        self.live.lock().await.chmpx_run = run;
    }
}
