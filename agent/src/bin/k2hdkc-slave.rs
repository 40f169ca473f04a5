//! `k2hdkc-slave`: joins this host to a K2HDKC cluster as a chmpx slave,
//! so local applications reach the cluster. Parses flags and hands over
//! to `datastore::slave`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use datastore::slave::config::{SlaveConfig, DEFAULT_PATH};
use datastore::slave::render;
use datastore::slave::status::{self, Recorded};
use std::os::unix::fs::OpenOptionsExt;

/// Joins this host to a K2HDKC cluster as a chmpx slave: registers it in
/// the cluster's slave role in K2HR3, runs chmpx (SLAVE mode) in a
/// container and keeps its ini following the cluster as it grows and
/// shrinks. On SIGTERM it stops chmpx and leaves the role.
///
/// The config file (key = value, 0600 when it holds a token):
///   extdata_url       the cluster's slave EXTDATA URL (K2HR3 gives the role,
///                     its token and the API URL), or instead:
///   k2hr3_api_url, role, role_token
///   image             k2hdkc image with chmpx [antpickax/k2hdkc:1.0.17]
///   ctlport           the slave's control port [the resource's, 8031]
///   container         the container's name [k2hdkc-slave]
///   state_dir         ini, chmpx's files, state [/var/lib/k2hdkc-slave]
///   seed              this slave's id, unique per slave [the host name]
///   network           host, or container:NAME [host]
///   poll_interval_ms  how often K2HR3 is read [2000]
///   uid, gid          the database user the container runs as [1001]
///   msgqueue_bytes    chmpx's RLIMIT_MSGQUEUE [67108864]
///   ca_file           CA bundle for K2HR3's TLS [the system's]
///   metrics_listen    ADDRESS:PORT of a Prometheus endpoint (/metrics):
///                     the slave's chmpx and its view of the ring [off]
///
/// Applications attach to the slave from a container that shares its IPC
/// and PID namespaces and mounts STATE_DIR/etc at /etc/antpickax and
/// STATE_DIR/run at /var/lib/antpickax, as the same user:
///   docker run --ipc container:k2hdkc-slave --pid container:k2hdkc-slave
///     --user 1001:1001 -v /var/lib/k2hdkc-slave/etc:/etc/antpickax:ro
///     -v /var/lib/k2hdkc-slave/run:/var/lib/antpickax
///     --entrypoint k2hdkclinetool IMAGE
///     -conf /etc/antpickax/slave.ini -ctlport 8031
#[derive(Parser, Debug)]
#[command(name = "k2hdkc-slave", version, verbatim_doc_comment)]
struct Cli {
    /// The config file.
    #[arg(long, short = 'c', value_name = "FILE", default_value = DEFAULT_PATH, global = true)]
    config: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Register, run chmpx and follow the cluster until SIGTERM (what the
    /// systemd unit runs). Exit status 1 when it cannot start, naming why.
    Run {
        /// Log at debug level.
        #[arg(long)]
        debug: bool,
    },
    /// Show registration, the ini's servers and what chmpx sees (UP or
    /// DOWN per server). Exit status 0 when the slave is up and at least
    /// one server serves, 1 otherwise.
    Status {
        /// Print the recorded state as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Check the config file and exit (0 valid, 2 not).
    Check,
    /// Make the slave ini `run` would write, from a rendered K2HR3 resource
    /// (the ini text, or K2HR3's JSON answer) on stdin, and exit; needs no
    /// config file. Writes the ini to --out (0600) and prints `ctlport P`,
    /// `msgmax M` (chmpx's fs.mqueue.msg_max) and one `server NAME` per
    /// server; without --out prints the ini.
    Ini {
        /// This slave's CUSTOM_ID_SEED (unique per slave).
        #[arg(long)]
        seed: String,
        /// The slave's control port [the resource's, 8031].
        #[arg(long)]
        ctlport: Option<u16>,
        /// Where to write the ini.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Ini { seed, ctlport, out } = &cli.command {
        return make_ini(seed, *ctlport, out.as_deref());
    }
    let cfg = match SlaveConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("k2hdkc-slave: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match agent::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("k2hdkc-slave: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Check => {
            println!("{}: valid", cli.config.display());
            ExitCode::SUCCESS
        }
        Command::Status { json } => runtime.block_on(show_status(&cfg, json)),
        Command::Ini { .. } => unreachable!("handled before the config is read"),
        Command::Run { debug } => {
            let level = if debug { "debug" } else { "info" };
            agent::logging::init("K2HDKC_SLAVE_LOG", level);
            let containers = match agent::docker::DockerHost::new(None) {
                Ok(d) => Arc::new(d),
                Err(e) => {
                    eprintln!("k2hdkc-slave: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let metrics = cfg
                .metrics_listen
                .map(|addr| runtime.spawn(serve_metrics(addr, cfg.status_path())));
            let ran = runtime.block_on(datastore::slave::run(cfg, containers, shutdown_signal()));
            if let Some(m) = metrics {
                m.abort();
            }
            match ran {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "k2hdkc-slave could not start");
                    eprintln!("k2hdkc-slave: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `k2hdkc-slave ini`: the product's slave ini for a script (the box's
/// application containers), so no copy of its rules exists elsewhere.
fn make_ini(seed: &str, ctlport: Option<u16>, out: Option<&std::path::Path>) -> ExitCode {
    use std::io::{Read, Write};
    let mut raw = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut raw) {
        eprintln!("k2hdkc-slave: read the resource from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let made = render::resource_text(&raw).and_then(|text| render::slave_ini(&text, seed, ctlport));
    let ini = match made {
        Ok(ini) => ini,
        Err(e) => {
            eprintln!("k2hdkc-slave: cannot make a slave ini: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(path) = out else {
        print!("{}", ini.text);
        return ExitCode::SUCCESS;
    };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(ini.text.as_bytes()));
    if let Err(e) = written {
        eprintln!("k2hdkc-slave: write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("ctlport {}", ini.ctlport);
    println!("msgmax {}", ini.mq_msg_max);
    for s in &ini.facts.servers {
        println!("server {}", s.name);
    }
    ExitCode::SUCCESS
}

async fn show_status(cfg: &SlaveConfig, json: bool) -> ExitCode {
    let rec = match Recorded::read(&cfg.status_path()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("k2hdkc-slave: {e}");
            return ExitCode::FAILURE;
        }
    };
    let live = status::Live::ask(&format!("127.0.0.1:{}", rec.ctlport)).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&rec).unwrap_or_default());
    } else {
        print!("{}", status::render(&rec, &live));
    }
    if live.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The slave's chmpx, at the control port its status file records.
struct SlaveSampler {
    status_path: PathBuf,
}

#[async_trait::async_trait]
impl agent::metrics::Sampler for SlaveSampler {
    async fn samples(&self) -> Vec<driver_api::MetricSample> {
        match Recorded::read(&self.status_path) {
            Ok(rec) => {
                let ctl = format!("127.0.0.1:{}", rec.ctlport);
                let (mut out, status) = datastore::metrics::chmpx_samples(&ctl).await;
                if let Some(st) = status {
                    out.push(datastore::metrics::sample(
                        "k2hdkc_slave_up",
                        "Whether this slave's chmpx is up in the ring",
                        &[],
                        f64::from(u8::from(st.is_slave_up())),
                    ));
                }
                out
            }
            Err(_) => Vec::new(),
        }
    }
}

/// The Prometheus endpoint of `metrics_listen`; one that cannot listen is
/// logged, and the slave runs without it.
async fn serve_metrics(addr: std::net::SocketAddr, status_path: PathBuf) {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!(address = %addr, "metrics at /metrics");
            let sampler = Arc::new(SlaveSampler { status_path });
            agent::metrics::serve(listener, Arc::new(agent::metrics::Metrics::new()), sampler).await
        }
        Err(e) => {
            tracing::error!(address = %addr, error = %e, "cannot listen for metrics (metrics_listen)")
        }
    }
}

/// Completes on SIGTERM (systemd stop) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
