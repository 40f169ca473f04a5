//! `trove-guestagent`: parse flags, load configuration, run the agent until
//! SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use agent::config::{self, Config, Source};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

/// Trove guest agent for K2HDKC, a drop-in for the Python trove-guestagent.
#[derive(Parser, Debug)]
#[command(name = "trove-guestagent", version, about)]
struct Cli {
    /// Read every *.conf file of DIR, sorted by name (repeatable; order
    /// among --config-dir and --config-file is kept, later values win).
    #[arg(long = "config-dir", value_name = "DIR", action = ArgAction::Append)]
    config_dir: Vec<PathBuf>,

    /// Read FILE (repeatable).
    #[arg(long = "config-file", value_name = "FILE", action = ArgAction::Append)]
    config_file: Vec<PathBuf>,

    /// Validate the configuration, print the effective settings with
    /// secrets masked, and exit (0 when valid, 2 when not).
    #[arg(long)]
    show_config: bool,

    /// Log at debug level (also `[DEFAULT] debug = true`).
    #[arg(long)]
    debug: bool,
}

/// The sources in the order they were given, as oslo.config reads them.
fn sources(matches: &clap::ArgMatches, cli: &Cli) -> Vec<Source> {
    let mut indexed: Vec<(usize, Source)> = Vec::new();
    if let Some(idx) = matches.indices_of("config_dir") {
        indexed.extend(
            idx.zip(cli.config_dir.iter())
                .map(|(i, p)| (i, Source::Dir(p.clone()))),
        );
    }
    if let Some(idx) = matches.indices_of("config_file") {
        indexed.extend(
            idx.zip(cli.config_file.iter())
                .map(|(i, p)| (i, Source::File(p.clone()))),
        );
    }
    indexed.sort_by_key(|(i, _)| *i);
    let list: Vec<Source> = indexed.into_iter().map(|(_, s)| s).collect();
    if list.is_empty() {
        config::default_sources()
    } else {
        list
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let config = match Config::load(&sources(&matches, &cli)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if cli.show_config {
        print!("{}", config.render());
        // The start's verdict: what the driver would refuse, refused here.
        return match agent::check_datastore(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ agent::StartError::UnknownDatastore(..)) => {
                eprintln!("config error: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    let level = if cli.debug || config.debug {
        "debug"
    } else {
        "info"
    };
    agent::logging::init_with_file(
        "TROVE_GUESTAGENT_LOG",
        &format!("{level},lapin=warn,amq_protocol=warn"),
        config.guest_log.log_file.as_deref(),
    );

    let datastore = match agent::datastore_for(&config) {
        Ok(d) => d,
        Err(e @ agent::StartError::UnknownDatastore(..)) => {
            eprintln!("config error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match agent::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(agent::run(
        config,
        datastore,
        shutdown_signal(),
        |handles| {
            tokio::spawn(systemd(handles));
        },
    ));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    ExitCode::SUCCESS
}

/// systemd `Type=notify`: READY once the RPC consumers are up, and the
/// watchdog kept while this runtime runs. No-ops outside systemd.
async fn systemd(mut handles: agent::Handles) {
    if let Some(period) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period / 2);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
    let mut notified = false;
    loop {
        let ready = *handles.ready.borrow_and_update();
        if ready && !notified {
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status("serving Trove RPC"),
            ]);
            notified = true;
        } else if !ready && notified {
            let _ =
                sd_notify::notify(&[sd_notify::NotifyState::Status("reconnecting to RabbitMQ")]);
        } else if ready {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status("serving Trove RPC")]);
        }
        if handles.ready.changed().await.is_err() {
            return;
        }
    }
}

/// Completes on SIGTERM (systemd stop) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
