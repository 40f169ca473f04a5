//! Logging for both binaries: to stderr (journald keeps it under systemd),
//! colours only on a terminal, the filter from an environment variable
//! when set; and, when the agent's configuration names a log file
//! (oslo.log's `log_dir` / `log_file`), to that file too: it is the guest
//! log `guest` that Trove's log API publishes.

use std::path::Path;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the subscriber: `env_var`'s filter if set, else `default`.
pub fn init(env_var: &str, default: &str) {
    init_with_file(env_var, default, None);
}

/// As [`init`], and appending to `file` when given (its directory made,
/// the file 0640). Opened in append mode, so that logrotate's
/// `copytruncate` works. A file that cannot be opened is named on stderr
/// and left out: the agent still starts.
pub fn init_with_file(env_var: &str, default: &str, file: Option<&Path>) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env(env_var)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(filter());
    let to_file = file.and_then(|path| match open_log(path) {
        Ok(f) => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(f))
                .with_ansi(false)
                .with_target(false)
                .with_filter(filter()),
        ),
        Err(e) => {
            eprintln!(
                "cannot open the log file {}: {e}; logging to stderr only",
                path.display()
            );
            None
        }
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(to_file)
        .init();
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}
