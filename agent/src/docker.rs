//! [`Containers`] on the Docker Engine API (bollard). Containers carry a
//! label with a digest of their spec, so `run` can tell a container it
//! made from the same spec (start it) from a stale one (replace it).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, ExecConfig, HostConfig, HostConfigLogConfig,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
    KillContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions, StopContainerOptionsBuilder,
};
use bollard::Docker;
use driver_api::host::{
    ContainerSpec, ContainerState, Containers, ExecOutput, HostError, Ipc, Network,
};
use futures_util::StreamExt;
use md5::{Digest, Md5};

use crate::config::Secret;

/// The label holding the spec digest.
pub const SPEC_LABEL: &str = "org.openstack.trove.k2hdkc.spec";
/// How long one image pull may take.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long any other single Docker API call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// A container's output as Docker keeps it: files of this size, this many
/// (so a copy of it is at most their product).
const OUTPUT_FILE_SIZE: &str = "10m";
const OUTPUT_FILES: &str = "3";
/// The most of a container's output copied out (the files above, and
/// the timestamps Docker adds).
const OUTPUT_COPY_MAX: u64 = 40 * 1024 * 1024;

/// Registry credentials for pulls.
#[derive(Debug, Clone)]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: Secret,
}

/// The Docker engine on this host. Connects on first use, so the agent
/// serves RPC (and reports a clear error) even while dockerd is down.
pub struct DockerHost {
    unversioned: Docker,
    docker: tokio::sync::OnceCell<Docker>,
    auth: Option<RegistryAuth>,
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

async fn bounded<T>(
    what: impl Fn() -> String,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, DockerError>>,
) -> Result<T, HostError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(HostError::new(what(), e)),
        Err(_) => Err(HostError::new(
            what(),
            format!("Docker did not answer within {limit:?}"),
        )),
    }
}

/// A digest of everything that makes a container what it is.
pub fn spec_digest(spec: &ContainerSpec) -> String {
    let text = format!("{spec:?}");
    let digest = Md5::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl DockerHost {
    /// The local engine (`DOCKER_HOST` or the Unix socket).
    pub fn new(auth: Option<RegistryAuth>) -> Result<Self, HostError> {
        let unversioned = Docker::connect_with_local_defaults()
            .map_err(|e| HostError::new("connect to the Docker engine", e))?;
        Ok(Self {
            unversioned,
            docker: tokio::sync::OnceCell::new(),
            auth,
        })
    }

    /// The client, after agreeing on an API version with the engine once.
    async fn docker(&self) -> Result<&Docker, HostError> {
        self.docker
            .get_or_try_init(|| {
                bounded(
                    || "reach the Docker engine".into(),
                    CALL_TIMEOUT,
                    self.unversioned.clone().negotiate_version(),
                )
            })
            .await
    }

    fn body(spec: &ContainerSpec) -> ContainerCreateBody {
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(SPEC_LABEL.into(), spec_digest(spec));
        let ipc = match &spec.ipc {
            Ipc::Shareable => "shareable".to_owned(),
            Ipc::Container(name) => format!("container:{name}"),
        };
        let binds = spec
            .binds
            .iter()
            .map(|b| {
                format!(
                    "{}:{}{}",
                    b.host,
                    b.container,
                    if b.read_only { ":ro" } else { "" }
                )
            })
            .collect();
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.cmd.clone()),
            user: Some(spec.user.clone()),
            labels: Some(labels),
            env: Some(spec.env.clone()),
            stop_signal: spec.stop_signal.clone(),
            host_config: Some(HostConfig {
                network_mode: Some(match &spec.network {
                    Network::Host => "host".to_owned(),
                    Network::Container(name) => format!("container:{name}"),
                }),
                ipc_mode: Some(ipc),
                pid_mode: spec.pid_of.as_ref().map(|n| format!("container:{n}")),
                binds: Some(binds),
                sysctls: (!spec.sysctls.is_empty())
                    .then(|| spec.sysctls.clone().into_iter().collect()),
                ulimits: (!spec.ulimits.is_empty()).then(|| {
                    spec.ulimits
                        .iter()
                        .map(|u| ResourcesUlimits {
                            name: Some(u.name.clone()),
                            soft: Some(u.soft),
                            hard: Some(u.hard),
                        })
                        .collect()
                }),
                restart_policy: spec.restart_unless_stopped.then_some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                // Bounded output, kept where the logs API reads it (the
                // guest log API copies it from there).
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([
                        ("max-size".to_owned(), OUTPUT_FILE_SIZE.to_owned()),
                        ("max-file".to_owned(), OUTPUT_FILES.to_owned()),
                    ])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn inspect_label(
        &self,
        name: &str,
    ) -> Result<Option<(ContainerState, Option<String>)>, HostError> {
        match tokio::time::timeout(
            CALL_TIMEOUT,
            self.docker()
                .await?
                .inspect_container(name, None::<InspectContainerOptions>),
        )
        .await
        {
            Err(_) => Err(HostError::new(
                format!("inspect container {name}"),
                "Docker did not answer in time",
            )),
            Ok(Err(e)) if is_not_found(&e) => Ok(None),
            Ok(Err(e)) => Err(HostError::new(format!("inspect container {name}"), e)),
            Ok(Ok(info)) => {
                let state = info.state.as_ref();
                let status = match state.and_then(|s| s.status) {
                    Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running {
                        started_at: state.and_then(|s| s.started_at.clone()),
                    },
                    Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
                    Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
                    Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
                    Some(ContainerStateStatusEnum::EXITED) => {
                        ContainerState::Exited(state.and_then(|s| s.exit_code).unwrap_or(-1))
                    }
                    _ => ContainerState::Dead,
                };
                let label = info
                    .config
                    .and_then(|c| c.labels)
                    .and_then(|l| l.get(SPEC_LABEL).cloned());
                Ok(Some((status, label)))
            }
        }
    }
}

#[async_trait]
impl Containers for DockerHost {
    async fn ensure_image(&self, image: &str) -> Result<(), HostError> {
        if tokio::time::timeout(CALL_TIMEOUT, self.docker().await?.inspect_image(image))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            return Ok(());
        }
        tracing::info!(image, "pulling image");
        let credentials = self.auth.as_ref().map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.expose().to_owned()),
            ..Default::default()
        });
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut stream = self
            .docker()
            .await?
            .create_image(Some(options), None, credentials);
        let pull = async {
            while let Some(item) = stream.next().await {
                item?;
            }
            Ok::<(), DockerError>(())
        };
        bounded(|| format!("pull image {image}"), PULL_TIMEOUT, pull).await
    }

    async fn run(&self, spec: &ContainerSpec) -> Result<(), HostError> {
        let want = spec_digest(spec);
        match self.inspect_label(&spec.name).await? {
            Some((ContainerState::Running { .. }, Some(label))) if label == want => return Ok(()),
            Some((_, Some(label))) if label == want => return self.start(&spec.name).await,
            Some(_) => {
                tracing::info!(container = %spec.name, "replacing a container made from another spec");
                self.remove(&spec.name).await?;
            }
            None => {}
        }
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        bounded(
            || format!("create container {}", spec.name),
            CALL_TIMEOUT,
            self.docker()
                .await?
                .create_container(Some(options), Self::body(spec)),
        )
        .await?;
        self.start(&spec.name).await
    }

    async fn state(&self, name: &str) -> Result<ContainerState, HostError> {
        Ok(self
            .inspect_label(name)
            .await?
            .map(|(s, _)| s)
            .unwrap_or(ContainerState::Missing))
    }

    async fn start(&self, name: &str) -> Result<(), HostError> {
        match tokio::time::timeout(
            CALL_TIMEOUT,
            self.docker()
                .await?
                .start_container(name, None::<StartContainerOptions>),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            // 304: already running.
            Ok(Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            })) => Ok(()),
            Ok(Err(e)) => Err(HostError::new(format!("start container {name}"), e)),
            Err(_) => Err(HostError::new(
                format!("start container {name}"),
                "Docker did not answer in time",
            )),
        }
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<(), HostError> {
        let options = StopContainerOptionsBuilder::default()
            .t(grace.as_secs() as i32)
            .build();
        match tokio::time::timeout(
            grace + CALL_TIMEOUT,
            self.docker().await?.stop_container(name, Some(options)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if is_not_found(&e) => Ok(()),
            Ok(Err(DockerError::DockerResponseServerError {
                status_code: 304, ..
            })) => Ok(()),
            Ok(Err(e)) => Err(HostError::new(format!("stop container {name}"), e)),
            Err(_) => Err(HostError::new(
                format!("stop container {name}"),
                "Docker did not answer in time",
            )),
        }
    }

    async fn remove(&self, name: &str) -> Result<(), HostError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match tokio::time::timeout(
            CALL_TIMEOUT,
            self.docker().await?.remove_container(name, Some(options)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if is_not_found(&e) => Ok(()),
            Ok(Err(e)) => Err(HostError::new(format!("remove container {name}"), e)),
            Err(_) => Err(HostError::new(
                format!("remove container {name}"),
                "Docker did not answer in time",
            )),
        }
    }

    async fn signal(&self, name: &str, signal: &str) -> Result<(), HostError> {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        bounded(
            || format!("send {signal} to container {name}"),
            CALL_TIMEOUT,
            self.docker().await?.kill_container(name, Some(options)),
        )
        .await
    }

    async fn save_output(&self, name: &str, file: &std::path::Path) -> Result<u64, HostError> {
        use tokio::io::AsyncWriteExt;
        let what = || format!("copy the output of container {name}");
        let io = |e: std::io::Error| HostError::new(what(), format!("{}: {e}", file.display()));
        if let Some(dir) = file.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        let tmp = file.with_extension("tmp");
        let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .build();
        let docker = self.docker().await?;
        let mut stream = docker.logs(name, Some(options));
        let mut n = 0u64;
        loop {
            let next = tokio::time::timeout(CALL_TIMEOUT, stream.next())
                .await
                .map_err(|_| HostError::new(what(), "Docker sent nothing in time"))?;
            let Some(item) = next else { break };
            let bytes = item.map_err(|e| HostError::new(what(), e))?.into_bytes();
            if n + bytes.len() as u64 > OUTPUT_COPY_MAX {
                tracing::warn!(
                    container = name,
                    bytes = n,
                    "the container's output is longer than a copy keeps; the copy ends here"
                );
                break;
            }
            out.write_all(&bytes).await.map_err(io)?;
            n += bytes.len() as u64;
        }
        out.flush().await.map_err(io)?;
        drop(out);
        tokio::fs::rename(&tmp, file).await.map_err(io)?;
        Ok(n)
    }

    async fn exec(
        &self,
        name: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, HostError> {
        let what = || {
            format!(
                "run {:?} in container {name}",
                argv.first().map(String::as_str).unwrap_or("")
            )
        };
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(argv.to_vec()),
            ..Default::default()
        };
        let docker = self.docker().await?;
        let run = async {
            let id = docker.create_exec(name, config).await?.id;
            let (mut stdout, mut stderr) = (String::new(), String::new());
            if let bollard::exec::StartExecResults::Attached { mut output, .. } =
                docker.start_exec(&id, None).await?
            {
                while let Some(chunk) = output.next().await {
                    match chunk? {
                        bollard::container::LogOutput::StdErr { message } => {
                            stderr.push_str(&String::from_utf8_lossy(&message))
                        }
                        other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
                    }
                }
            }
            let code = docker.inspect_exec(&id).await?.exit_code.unwrap_or(-1);
            Ok::<_, DockerError>(ExecOutput {
                code,
                stdout,
                stderr,
            })
        };
        bounded(what, timeout, run).await
    }
}
