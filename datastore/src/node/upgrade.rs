//! `upgrade`: the node on another datastore version (another server
//! image), on the same data volume and ini.

use driver_api::{DatastoreError, ServiceStatus};

use super::lifecycle::log_rejoin;
use super::saved::{load_saved, store_saved};
use super::{failed, Node, Running};
use crate::ring::rejoin;
use crate::version::{self, Step};

impl Node {
    /// `upgrade` to datastore version `to` (the image `docker_image`
    /// tagged `to`).
    ///
    /// Checked before anything stops: a downgrade, a major version
    /// change and a pinned image are refused, and the new image is
    /// pulled first, so a pull that fails leaves the node serving on its
    /// version. Then as `restart`: a lone node leaves the ring (a member
    /// does not: its replicas serve meanwhile), both containers are
    /// replaced, and the node joins again (a member merges in what it
    /// missed). The new version is saved before the containers change, so
    /// an agent killed in between resumes on it (and the agent, which
    /// keeps the request, calls this again: the same version on a node
    /// not serving starts again, with no ring step). A new version that does
    /// not come up is rolled back: the node joins again on the old one,
    /// and the upgrade fails naming both outcomes.
    pub async fn upgrade(&self, to: &str) -> Result<(), DatastoreError> {
        let old = self.running.read().unwrap().clone();
        let Some(from) = old.version.clone() else {
            return Err(DatastoreError::BadRequest(format!(
                "this guest was created without a datastore version (image {}): nothing to upgrade from",
                old.image
            )));
        };
        if version::check_upgrade(&from, to).map_err(DatastoreError::BadRequest)? == Step::Same {
            // An upgrade an agent restart cut short can end here, on the
            // new version but out of the ring: it must end serving.
            if self.status(true).await == ServiceStatus::Healthy {
                tracing::info!(version = to, "upgrade: already on this datastore version");
                return Ok(());
            }
            tracing::info!(
                version = to,
                "upgrade: on this datastore version but not serving; starting it again"
            );
            return self.start_again().await;
        }
        let image = self.settings.image_for(to).ok_or_else(|| {
            DatastoreError::BadRequest(format!(
                "[k2hdkc] docker_image pins the image {}: an upgrade cannot choose another tag",
                self.settings.image
            ))
        })?;
        let client = self.prepared_client().await?;
        tracing::info!(from = %from, to, image = %image, "upgrade: getting the new image before anything stops");
        self.containers.ensure_image(&image).await.map_err(|e| {
            failed(
                &format!("get the image {image} (nothing was stopped: the node serves on {from})"),
                e,
            )
        })?;

        let _changing = self.changing();
        self.stop_watcher().await;
        let params = self.live.lock().await.params.clone();
        if !self.is_member() {
            if let Err(e) = self.leave_ring(&params).await {
                self.start_watcher().await;
                return Err(e);
            }
        }
        self.stop_containers("stop for the upgrade").await?;
        tracing::info!(from = %from, to, "upgrade: the old version stopped; starting the new one");
        self.switch_to(Running {
            version: Some(to.to_owned()),
            image,
        })?;
        if let Err(e) = self.join(&client, &params, None, None).await {
            tracing::error!(error = %e, from = %from, to, "upgrade: the new version did not come up; back to the old one");
            let back = self.roll_back(&client, &params, old).await;
            self.start_watcher().await;
            let outcome = match back {
                Ok(()) => format!("{e}; the node serves on {from} again"),
                Err(back) => format!("{e}; and on {from} again: {back}"),
            };
            return Err(failed(&format!("upgrade to {to}"), outcome));
        }
        self.start_watcher().await;
        if self.is_member() {
            log_rejoin(rejoin::rejoin(&self.ring_view().await?, rejoin::REJOIN_WAIT).await)?;
        }
        tracing::info!(from = %from, to, "upgraded");
        Ok(())
    }

    /// The old version's containers again after a failed upgrade.
    async fn roll_back(
        &self,
        client: &crate::k2hr3::K2hr3,
        params: &crate::overrides::Parameters,
        old: Running,
    ) -> Result<(), DatastoreError> {
        self.stop_containers("stop the new version").await?;
        self.switch_to(old)?;
        self.join(client, params, None, None).await
    }

    /// Runs `running` from now on; saved first, so that an agent restart
    /// starts the same.
    fn switch_to(&self, running: Running) -> Result<(), DatastoreError> {
        let mut saved = load_saved(&self.settings.state_dir).unwrap_or_default();
        saved.datastore_version = running.version.clone();
        store_saved(&self.settings.state_dir, &saved).map_err(|e| failed("save node state", e))?;
        *self.running.write().unwrap() = running;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::super::saved::Saved;
    use super::*;
    use crate::overrides::Parameters;
    use crate::settings::{DriverContext, Settings};
    use crate::testing::Engine;

    fn settings(version: &str, docker_image: &str, state: &Path) -> Settings {
        let ctx = DriverContext {
            guest_id: "g1".into(),
            datastore_version: Some(version.into()),
            // The ini in the test's directory, not /etc/antpickax.
            group: [
                ("docker_image".to_owned(), docker_image.to_owned()),
                (
                    "config_dir".to_owned(),
                    state.join("etc").display().to_string(),
                ),
            ]
            .into(),
            mount_point: state.join("data"),
            uid: 1001,
            gid: 1001,
            state_dir: state.to_path_buf(),
        };
        Settings::new(&ctx, Path::new("/nonexistent")).unwrap()
    }

    /// A node that was prepared (its role access saved) on `version`.
    fn prepared(version: &str, docker_image: &str, state: &Path, engine: Arc<Engine>) -> Node {
        let saved = Saved {
            api_url: Some("http://127.0.0.1:1".into()),
            role_yrn: Some("yrn:yahoo:::t:role:r".into()),
            role_token: Some("token".into()),
            ..Saved::default()
        };
        store_saved(state, &saved).unwrap();
        Node::new(settings(version, docker_image, state), engine)
    }

    #[tokio::test]
    async fn a_downgrade_a_major_change_and_a_pinned_image_stop_nothing() {
        let state = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::default());
        let node = prepared("1.0.17", "k2hdkc-real", state.path(), engine.clone());
        for (to, says) in [
            ("1.0.16", "downgrade"),
            ("2.0.0", "major"),
            ("next", "release number"),
        ] {
            let e = node.upgrade(to).await.unwrap_err();
            assert!(matches!(e, DatastoreError::BadRequest(_)), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        let pinned = tempfile::tempdir().unwrap();
        let node = prepared("1.0.16", "k2hdkc-real:mine", pinned.path(), engine.clone());
        let e = node.upgrade("1.0.17").await.unwrap_err();
        assert!(
            e.to_string().contains("pins the image k2hdkc-real:mine"),
            "{e}"
        );
        assert!(engine.pulled.lock().unwrap().is_empty());
        assert!(engine.stopped.lock().unwrap().is_empty());
    }

    /// The same version again (an agent restart cut the upgrade short
    /// after the switch) on a node that does not serve is a restart:
    /// refused as nothing, its containers stopped and started again (here
    /// the join then fails: no K2HR3 answers).
    #[tokio::test]
    async fn the_same_version_on_a_node_not_serving_restarts_it() {
        let state = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::default());
        let node = prepared("1.0.17", "k2hdkc-real", state.path(), engine.clone());
        let e = node.upgrade("1.0.17").await.unwrap_err();
        assert!(!matches!(e, DatastoreError::BadRequest(_)), "{e}");
        assert!(e.to_string().contains("K2HR3"), "{e}");
        assert!(engine.pulled.lock().unwrap().is_empty());
        assert!(!engine.stopped.lock().unwrap().is_empty());
    }

    /// The rerun after an agent restart sends no SERVICEOUT: the node
    /// left the ring before its containers stopped, and its just-started
    /// chmpx left SERVICEOUT unanswered for 10 s in CI, failing the
    /// upgrade.
    #[tokio::test]
    async fn the_rerun_of_a_cut_short_upgrade_sends_no_serviceout() {
        let state = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::default());
        let node = prepared("1.0.17", "k2hdkc-real", state.path(), engine.clone());
        let commands = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = commands.clone();
        let addr = crate::testing::fake_ctlport(move |cmd| {
            seen.lock().unwrap().push(cmd.to_owned());
            "    Server Status = 0x11(SAFE -> [SERVICE OUT][UP][n/a][Nothing][NoSuspend])\n"
                .to_owned()
        })
        .await;
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        node.live.lock().await.params.server_ctlport = port;
        std::fs::create_dir_all(&node.settings.config_dir).unwrap();
        std::fs::write(
            node.ini_path(),
            format!(
                "[GLOBAL]\nGROUP = r\nCTLPORT = {port}\n[SVRNODE]\nNAME = 127.0.0.1\nCUK = g1\n"
            ),
        )
        .unwrap();

        let e = node.upgrade("1.0.17").await.unwrap_err();
        assert!(e.to_string().contains("K2HR3"), "{e}");
        assert!(!engine.stopped.lock().unwrap().is_empty());
        let sent = commands.lock().unwrap().clone();
        assert!(
            !sent.iter().any(|c| c.starts_with("SERVICEOUT")),
            "{sent:?}"
        );
    }

    /// The new image is got before anything stops: a registry that
    /// refuses it leaves the node as it was, and the error names the
    /// image and that the node still serves on its version.
    #[tokio::test]
    async fn a_pull_that_fails_stops_nothing_and_says_so() {
        let state = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine {
            pull_refused: true,
            ..Engine::default()
        });
        let node = prepared("1.0.16", "k2hdkc-real", state.path(), engine.clone());
        let e = node.upgrade("1.0.17").await.unwrap_err();
        let text = e.to_string();
        assert!(text.contains("k2hdkc-real:1.0.17"), "{text}");
        assert!(text.contains("serves on 1.0.16"), "{text}");
        assert!(text.contains("manifest unknown"), "{text}");
        assert_eq!(*engine.pulled.lock().unwrap(), vec!["k2hdkc-real:1.0.17"]);
        assert!(engine.stopped.lock().unwrap().is_empty());
        assert_eq!(node.datastore_version().as_deref(), Some("1.0.16"));
        assert_eq!(node.image(), "k2hdkc-real:1.0.16");
    }

    /// The version an upgrade switched to is what a restarted agent runs,
    /// though the guest's injected config still names the old one; saving
    /// the node's state again keeps it.
    #[tokio::test]
    async fn a_restarted_agent_runs_the_version_it_was_upgraded_to() {
        let state = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::default());
        let node = prepared("1.0.16", "k2hdkc-real", state.path(), engine.clone());
        node.switch_to(Running {
            version: Some("1.0.17".into()),
            image: "k2hdkc-real:1.0.17".into(),
        })
        .unwrap();
        let again = Node::new(
            settings("1.0.16", "k2hdkc-real", state.path()),
            engine.clone(),
        );
        assert_eq!(again.datastore_version().as_deref(), Some("1.0.17"));
        let p = Parameters::default();
        assert_eq!(again.chmpx_spec(&p).image, "k2hdkc-real:1.0.17");
        assert_eq!(again.server_spec(&p).image, "k2hdkc-real:1.0.17");
        again.save(&p, None, false).unwrap();
        let third = Node::new(settings("1.0.16", "k2hdkc-real", state.path()), engine);
        assert_eq!(third.image(), "k2hdkc-real:1.0.17");
    }
}
