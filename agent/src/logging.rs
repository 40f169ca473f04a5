//! Logging for both binaries: to stderr (journald keeps it under systemd),
//! colours only on a terminal, the filter from an environment variable
//! when set.

/// Installs the subscriber: `env_var`'s filter if set, else `default`.
pub fn init(env_var: &str, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_var)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
