//! The two containers of a node as the host runs them: chmpx (its own
//! IPC namespace, the message queue limits) and k2hdkc (chmpx's IPC and
//! PID namespaces), the same mounts and labels.

use std::sync::atomic::Ordering;

use driver_api::host::{Bind, ContainerSpec, HostError, Ipc};

use super::Node;
use crate::limits;
use crate::overrides::Parameters;
use crate::paths::{CONTAINER_CONFIG_DIR, CONTAINER_DATA_DIR, CONTAINER_RUN_DIR, INI_NAME};

impl Node {
    pub(super) fn volumes(&self) -> Vec<Bind> {
        vec![
            Bind {
                host: self.settings.config_dir.display().to_string(),
                container: CONTAINER_CONFIG_DIR.into(),
                read_only: true,
            },
            Bind {
                host: self.settings.run_dir.display().to_string(),
                container: CONTAINER_RUN_DIR.into(),
                read_only: false,
            },
            Bind {
                host: self.settings.data_dir.display().to_string(),
                container: CONTAINER_DATA_DIR.into(),
                read_only: false,
            },
        ]
    }

    pub(super) fn labels(&self) -> std::collections::BTreeMap<String, String> {
        [
            (
                "org.openstack.trove.instance".to_owned(),
                self.settings.guest_id.clone(),
            ),
            (
                "org.openstack.trove.datastore".to_owned(),
                "k2hdkc".to_owned(),
            ),
        ]
        .into_iter()
        .collect()
    }

    pub(super) fn argv(&self, program: &str, params: &Parameters) -> Vec<String> {
        let ini = format!("{CONTAINER_CONFIG_DIR}/{INI_NAME}");
        vec![
            program.into(),
            "-conf".into(),
            ini,
            "-ctlport".into(),
            params.server_ctlport.to_string(),
            "-d".into(),
            "err".into(),
        ]
    }

    /// chmpx: its own shareable IPC namespace with room for its message
    /// queues, the guest's network (`network_mode`), SIGINT to stop (it
    /// blocks SIGTERM).
    pub(super) fn chmpx_spec(&self, params: &Parameters) -> ContainerSpec {
        let s = &self.settings;
        ContainerSpec {
            name: s.chmpx_container(),
            image: self.image(),
            cmd: self.argv("chmpx", params),
            user: format!("{}:{}", s.uid, s.gid),
            network: s.network.clone(),
            ipc: Ipc::Shareable,
            pid_of: None,
            binds: self.volumes(),
            sysctls: [("fs.mqueue.msg_max".to_owned(), s.mq_msg_max.to_string())]
                .into_iter()
                .collect(),
            // The kernel charges every POSIX queue of a uid to that uid,
            // checked against the opener's RLIMIT_MSGQUEUE (819,200 bytes
            // by default), and chmpx raises it only as root. A 128-deep
            // queue takes about 13 KB; every node, slave and client of a
            // host running as the database user shares the count.
            ulimits: if self.msgqueue_refused.load(Ordering::SeqCst) {
                Vec::new()
            } else {
                limits::msgqueue(s.msgqueue_bytes)
            },
            labels: self.labels(),
            env: vec![],
            stop_signal: Some("SIGINT".into()),
            restart_unless_stopped: true,
        }
    }

    /// Runs one of the node's containers; where the engine may not raise
    /// RLIMIT_MSGQUEUE, once more without the limit, and every later
    /// container of the node without it too.
    pub(super) async fn run_spec(&self, spec: ContainerSpec) -> Result<(), HostError> {
        let bytes = self.settings.msgqueue_bytes;
        if limits::run(self.containers.as_ref(), &spec, bytes).await? {
            self.msgqueue_refused.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// k2hdkc: chmpx's IPC and PID namespaces (they check each other in /proc).
    pub(super) fn server_spec(&self, params: &Parameters) -> ContainerSpec {
        let s = &self.settings;
        ContainerSpec {
            name: s.server_container(),
            cmd: self.argv("k2hdkc", params),
            ipc: Ipc::Container(s.chmpx_container()),
            pid_of: Some(s.chmpx_container()),
            sysctls: Default::default(),
            // The chmpx library inside k2hdkc is silent by default
            // (`CHMDBGMODE`): its errors (a lost merge request, a full
            // queue) would never reach the container's log.
            env: vec!["CHMDBGMODE=ERR".to_owned()],
            ..self.chmpx_spec(params)
        }
    }
}
