//! RLIMIT_MSGQUEUE for chmpx and k2hdkc: deep message queues need more than
//! the kernel's default 819,200 bytes per user, and only a container engine
//! whose root holds CAP_SYS_RESOURCE may raise it. Where it may not, Docker
//! refuses to start the container (`error setting rlimit type 12:
//! operation not permitted`); the node then runs with the host's limit and
//! says what that costs, instead of failing its prepare.

use driver_api::host::{ContainerSpec, Containers, HostError, Ulimit};

/// Linux's number for RLIMIT_MSGQUEUE, as runc names it in its error.
const RLIMIT_MSGQUEUE: &str = "rlimit type 12";

/// The `--ulimit msgqueue=N:N` a container gets; none for 0.
pub(crate) fn msgqueue(bytes: i64) -> Vec<Ulimit> {
    (bytes > 0)
        .then(|| Ulimit {
            name: "msgqueue".into(),
            soft: bytes,
            hard: bytes,
        })
        .into_iter()
        .collect()
}

/// Whether the engine refused a container because it may not raise
/// RLIMIT_MSGQUEUE.
fn msgqueue_refused(e: &HostError) -> bool {
    e.cause.contains(RLIMIT_MSGQUEUE)
}

/// Runs `spec`; where the engine refuses its queue limit, runs it again
/// without it, with one warning that says what that costs and which
/// setting to change. `Ok(true)` then: the caller leaves the limit off
/// its later containers.
pub(crate) async fn run(
    containers: &dyn Containers,
    spec: &ContainerSpec,
    bytes: i64,
) -> Result<bool, HostError> {
    match containers.run(spec).await {
        Err(e) if !spec.ulimits.is_empty() && msgqueue_refused(&e) => {
            tracing::warn!(
                container = %spec.name,
                msgqueue_bytes = bytes,
                "the container engine may not raise RLIMIT_MSGQUEUE (its root lacks CAP_SYS_RESOURCE): \
                 chmpx and k2hdkc run with the host's limit (819,200 bytes per user by default), \
                 which holds about 60 queues of 128, so fewer clients can attach and a busy merge \
                 can fill them; give the engine CAP_SYS_RESOURCE, or set [k2hdkc] msgqueue_bytes = 0 \
                 to run this way without this warning"
            );
            let spec = ContainerSpec {
                ulimits: Vec::new(),
                ..spec.clone()
            };
            containers.run(&spec).await.map(|()| true)
        }
        r => r.map(|()| false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_s_refusal_is_told_from_other_start_errors() {
        // As dockerd 20-27 words it (runc's message inside).
        let refused = HostError::new(
            "start container k2hdkc-chmpx-1",
            "Docker responded with status code 500: failed to create task for container: \
             failed to create shim task: OCI runtime create failed: runc create failed: \
             unable to start container process: error during container init: \
             error setting rlimit type 12: operation not permitted: unknown",
        );
        assert!(msgqueue_refused(&refused));
        let other = HostError::new(
            "start container k2hdkc-chmpx-1",
            "Docker responded with status code 500: driver failed programming external connectivity",
        );
        assert!(!msgqueue_refused(&other));
    }

    #[test]
    fn zero_bytes_means_no_limit_given() {
        assert!(msgqueue(0).is_empty());
        assert_eq!(msgqueue(64 << 20)[0].soft, 64 << 20);
    }
}
