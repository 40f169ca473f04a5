//! The node's logs for Trove's guest log API: the output of its chmpx and
//! k2hdkc containers, copied out of the container engine when a log is
//! shown or published. A container replaced (restart, upgrade) starts a
//! new output: the copy's first line changes, and the agent's guest log
//! API takes that as a rotation.
//!
//! The USER log `debug` turns both servers' debug level up (to `MSG`) and
//! back (to `ERR`, the level the node starts them at) without a restart.
//! chmpx and k2hdkc change their level only by one step per `SIGUSR1`,
//! round `SLT` → `ERR` → `WAN` → `MSG` → `DMP` → `SLT`, and each step
//! prints `bumpup the logging level to <level>.` (chmpx 1.0.111
//! `src/chmmain.cc`, k2hdkc 1.0.17 `src/k2hdkccntrl.cc`): the level a
//! server runs at is the last such line of its output, or the start level.
//! Its text is chmpx's output, where chmpx's debug lines go.

use std::time::{Duration, Instant};

use driver_api::{DatastoreError, GuestLogFile};

use super::{failed, Node};

/// The SYS logs, each the output of one container.
const LOGS: [&str; 2] = ["chmpx", "k2hdkc"];
/// The USER log that turns the debug level up.
const DEBUG_LOG: &str = "debug";
/// `SIGUSR1`'s round of levels, as both servers print them.
const LEVELS: [&str; 5] = ["SLT", "ERR", "WAN", "MSG", "DMP"];
/// The level the node starts both servers at (`-d err`).
const START_LEVEL: &str = "ERR";
/// The level `debug` turns them to.
const DEBUG_LEVEL: &str = "MSG";
/// What a server prints after each step.
const BUMPED: &str = "bumpup the logging level to ";
/// How long one step may take to show in the output.
const STEP_WITHIN: Duration = Duration::from_secs(5);

/// The level an output says its server runs at now.
pub(crate) fn level_in(output: &str) -> &str {
    output
        .lines()
        .rev()
        .find_map(|l| {
            let at = l.find(BUMPED)? + BUMPED.len();
            let level = l[at..].trim_end().trim_end_matches('.');
            LEVELS.contains(&level).then_some(level)
        })
        .unwrap_or(START_LEVEL)
}

/// How many `SIGUSR1` take a server from level `from` to `to`.
pub(crate) fn steps(from: &str, to: &str) -> usize {
    let at = |l: &str| LEVELS.iter().position(|x| *x == l).unwrap_or(1);
    (at(to) + LEVELS.len() - at(from)) % LEVELS.len()
}

impl Node {
    fn log_file(&self, name: &str) -> std::path::PathBuf {
        self.settings
            .state_dir
            .join("logs")
            .join(format!("{}-{name}.log", crate::MANAGER))
    }

    /// `chmpx` and `k2hdkc`, SYS logs: their containers' output; `debug`,
    /// a USER log: both servers' debug level.
    pub fn guest_logs(&self) -> Vec<GuestLogFile> {
        let mut logs: Vec<GuestLogFile> = LOGS
            .iter()
            .map(|name| GuestLogFile {
                name: (*name).to_owned(),
                file: self.log_file(name),
                user: false,
            })
            .collect();
        logs.push(GuestLogFile {
            name: DEBUG_LOG.into(),
            file: self.log_file("chmpx"),
            user: true,
        });
        logs
    }

    fn container_of(&self, log: &str) -> Option<String> {
        match log {
            "chmpx" | DEBUG_LOG => Some(self.settings.chmpx_container()),
            "k2hdkc" => Some(self.settings.server_container()),
            _ => None,
        }
    }

    /// Copies the container's output of log `name` out again (other names
    /// are not the node's).
    pub async fn refresh_guest_log(&self, name: &str) -> Result<(), DatastoreError> {
        let Some(container) = self.container_of(name) else {
            return Ok(());
        };
        let file = if name == DEBUG_LOG { "chmpx" } else { name };
        self.copy_output(&container, file).await.map(|_| ())
    }

    async fn copy_output(&self, container: &str, log: &str) -> Result<String, DatastoreError> {
        let path = self.log_file(log);
        self.containers
            .save_output(container, &path)
            .await
            .map_err(|e| failed(&format!("copy the {log} log"), e))?;
        std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| failed(&format!("read the {log} log"), e))
    }

    /// Whether `debug` is on: chmpx runs at the debug level.
    pub async fn guest_log_enabled(&self, name: &str) -> Result<bool, DatastoreError> {
        if name != DEBUG_LOG {
            return Ok(false);
        }
        let output = self
            .copy_output(&self.settings.chmpx_container(), "chmpx")
            .await?;
        Ok(level_in(&output) == DEBUG_LEVEL)
    }

    /// Turns `debug` on (both servers to `MSG`) or off (back to `ERR`),
    /// one `SIGUSR1` at a time, each step seen in the server's output.
    pub async fn set_guest_log(&self, name: &str, enable: bool) -> Result<(), DatastoreError> {
        if name != DEBUG_LOG {
            return Err(DatastoreError::BadRequest(format!(
                "log '{name}' is a SYSTEM log: always on"
            )));
        }
        let want = if enable { DEBUG_LEVEL } else { START_LEVEL };
        for (container, log) in [
            (self.settings.chmpx_container(), "chmpx"),
            (self.settings.server_container(), "k2hdkc"),
        ] {
            let mut output = self.copy_output(&container, log).await?;
            let from = level_in(&output).to_owned();
            for _ in 0..steps(&from, want) {
                let before = output.matches(BUMPED).count();
                self.containers
                    .signal(&container, "SIGUSR1")
                    .await
                    .map_err(|e| failed(&format!("turn the {log} debug level"), e))?;
                let began = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    output = self.copy_output(&container, log).await?;
                    if output.matches(BUMPED).count() > before {
                        break;
                    }
                    if began.elapsed() > STEP_WITHIN {
                        return Err(failed(
                            &format!("turn the {log} debug level"),
                            format!(
                                "{log} did not print its new level within {}s of SIGUSR1",
                                STEP_WITHIN.as_secs()
                            ),
                        ));
                    }
                }
            }
            tracing::info!(log, from = %from, to = want, "debug level set");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::settings::{DriverContext, Settings};
    use crate::testing::Engine;

    fn node(state: &std::path::Path, engine: Arc<Engine>) -> Node {
        let ctx = DriverContext {
            guest_id: "g1".into(),
            datastore_version: Some("1.0.17".into()),
            group: Default::default(),
            mount_point: state.join("data"),
            uid: 1001,
            gid: 1001,
            state_dir: state.to_path_buf(),
        };
        Node::new(
            Settings::new(&ctx, std::path::Path::new("/nonexistent")).unwrap(),
            engine,
        )
    }

    /// `debug` on: both servers stepped ERR -> WAN -> MSG, each step seen
    /// in their output; off: MSG -> DMP -> SLT -> ERR. Asked twice, nothing
    /// more is sent. A server that does not print its step fails it,
    /// naming the server, within the bound.
    #[tokio::test]
    async fn debug_turns_both_servers_up_and_back_one_signal_at_a_time() {
        let state = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::default());
        let n = node(state.path(), engine.clone());
        assert!(!n.guest_log_enabled("debug").await.unwrap());
        n.set_guest_log("debug", true).await.unwrap();
        assert!(n.guest_log_enabled("debug").await.unwrap());
        let out = engine.output.lock().unwrap().clone();
        for c in [n.settings.chmpx_container(), n.settings.server_container()] {
            assert_eq!(out[&c].matches(BUMPED).count(), 2, "{c}: {}", out[&c]);
            assert_eq!(level_in(&out[&c]), "MSG");
        }
        n.set_guest_log("debug", true).await.unwrap();
        assert_eq!(
            engine.output.lock().unwrap()[&n.settings.chmpx_container()]
                .matches(BUMPED)
                .count(),
            2,
            "already on: no signal"
        );
        n.set_guest_log("debug", false).await.unwrap();
        assert!(!n.guest_log_enabled("debug").await.unwrap());
        let out = engine.output.lock().unwrap().clone();
        assert_eq!(level_in(&out[&n.settings.server_container()]), "ERR");
        assert_eq!(
            out[&n.settings.server_container()].matches(BUMPED).count(),
            5
        );
        let e = n.set_guest_log("chmpx", true).await.unwrap_err();
        assert!(e.to_string().contains("SYSTEM"), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_does_not_print_its_step_fails_it_in_bound() {
        let state = tempfile::tempdir().unwrap();
        let probe = node(state.path(), Arc::new(Engine::default()));
        let engine = Arc::new(Engine {
            deaf: vec![probe.settings.server_container()],
            ..Engine::default()
        });
        let n = node(state.path(), engine);
        let began = Instant::now();
        let e = n
            .set_guest_log("debug", true)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("k2hdkc did not print its new level"), "{e}");
        assert!(began.elapsed() < STEP_WITHIN + Duration::from_secs(3));
    }

    #[test]
    fn the_level_is_the_last_step_printed_or_the_start_level() {
        assert_eq!(level_in(""), "ERR");
        assert_eq!(
            level_in("CHMPX HOSTNAME = 10.0.0.5\nSTATUS = SAFE\n"),
            "ERR"
        );
        let out = "2026-12-06T00:00:01Z MESSAGE: Caught signal SIGUSR1, bumpup the logging level to WAN.\n\
                   2026-12-06T00:00:01Z [CHMPX-WAN] something\n\
                   2026-12-06T00:00:02Z MESSAGE: Caught signal SIGUSR1, bumpup the logging level to MSG.\n\
                   2026-12-06T00:00:03Z [CHMPX-MSG] more\n";
        assert_eq!(level_in(out), "MSG");
    }

    #[test]
    fn steps_go_round_the_signals_cycle() {
        assert_eq!(steps("ERR", "MSG"), 2);
        assert_eq!(steps("MSG", "ERR"), 3, "MSG -> DMP -> SLT -> ERR");
        assert_eq!(steps("DMP", "MSG"), 4);
        assert_eq!(steps("ERR", "ERR"), 0);
        assert_eq!(steps("SLT", "ERR"), 1);
    }
}
