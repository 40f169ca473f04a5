//! Trove's guest log API against the real Swift (and Keystone) `tests/run`
//! starts: what `openstack database log publish/show/discard` (and `log
//! tail`, `log save`, which read the objects and the metafile) get from a
//! guest, in upstream's layout.

use agent::config::Secret;
use agent::guest_log::{Caller, GuestLogs, LogDef, LogOptions, LogType};
use agent::swift::SwiftStore;
use driver_api::request::GuestLogActionRequest;
use driver_api::TroveException;
use e2e_tests::swift::SwiftEnv;
use serde_json::Value;
use std::io::Write;

const LIMIT: usize = 1024;

fn logs(guest_id: &str, file: &std::path::Path, container: &str) -> GuestLogs {
    GuestLogs::new(
        LogOptions {
            guest_id: guest_id.to_owned(),
            manager: "k2hdkc".into(),
            container: container.to_owned(),
            limit: LIMIT,
            expiry: 3600,
            // `guest` is not exposed: tenants do not see it, admins do.
            exposed: vec!["chmpx".into()],
        },
        vec![LogDef {
            name: "guest".into(),
            kind: LogType::Sys,
            file: file.to_owned(),
        }],
    )
}

fn action(publish: bool, discard: bool) -> GuestLogActionRequest {
    GuestLogActionRequest {
        log_name: "guest".into(),
        publish,
        discard,
        ..Default::default()
    }
}

fn append(path: &std::path::Path, lines: std::ops::Range<usize>, tag: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in lines {
        writeln!(
            f,
            "2026-12-06T00:00:00Z INFO {tag} line {i:05} GET /v1/extdata/trove/register-path-{i} token=tok{i} padding padding"
        )
        .unwrap();
    }
}

/// The objects of the log (`<guest>/k2hdkc-guest/...`) with their
/// `x-object-meta-lines`, bodies and the metafile.
async fn published(
    swift: &SwiftEnv,
    token: &str,
    container: &str,
    guest: &str,
) -> (Vec<(u64, String)>, Option<Value>) {
    let prefix = format!("{guest}/k2hdkc-guest/");
    let mut objects = Vec::new();
    for name in swift.list(container, token).await {
        if !name.starts_with(&prefix) {
            continue;
        }
        let r = swift
            .request(
                reqwest::Method::GET,
                &format!("{container}/{name}"),
                token,
                None,
            )
            .await;
        assert_eq!(r.status().as_u16(), 200, "{name}");
        let lines: u64 = r.headers()["x-object-meta-lines"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(r.headers().contains_key("x-delete-at"), "{name} expires");
        objects.push((lines, r.text().await.unwrap()));
    }
    let meta = swift
        .request(
            reqwest::Method::GET,
            &format!("{container}/{guest}/k2hdkc-guest_metafile"),
            token,
            None,
        )
        .await;
    let meta = if meta.status().as_u16() == 200 {
        Some(meta.json::<Value>().await.unwrap())
    } else {
        None
    };
    (objects, meta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_is_published_in_upstreams_layout_goes_on_after_a_restart_and_is_discarded() {
    let env = SwiftEnv::load();
    let token = env.token().await;
    let store = SwiftStore::new(&env.account_url(), Secret::new(token.clone()), false).unwrap();
    let container = format!("database_logs_test_{}", uuid::Uuid::new_v4().simple());
    let guest = uuid::Uuid::new_v4().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trove-guestagent.log");
    append(&file, 0..40, "first");
    let size = std::fs::metadata(&file).unwrap().len();
    let admin = Caller {
        swift: &store,
        is_admin: true,
    };
    let tenant = Caller {
        swift: &store,
        is_admin: false,
    };

    let gl = logs(&guest, &file, &container);
    assert_eq!(
        gl.list(&tenant).await.unwrap(),
        Value::Array(vec![]),
        "not exposed to tenants"
    );
    let e = gl.action(&action(true, false), &tenant).await.unwrap_err();
    assert!(
        matches!(e.to_trove(), TroveException::LogAccessForbidden { .. }),
        "{e}"
    );
    let listed = gl.list(&admin).await.unwrap();
    assert_eq!(listed[0]["name"], "guest");
    assert_eq!(listed[0]["type"], "SYS");
    assert_eq!(listed[0]["status"], "Ready");
    assert_eq!(listed[0]["published"], 0);
    assert_eq!(listed[0]["pending"], size);
    assert_eq!(listed[0]["container"], "None");
    assert_eq!(
        listed[0]["metafile"],
        format!("{guest}/k2hdkc-guest_metafile")
    );

    // Publish: every line, in objects of at most the limit, secrets masked.
    let shown = gl.action(&action(true, false), &admin).await.unwrap();
    assert_eq!(shown["status"], "Published", "{shown}");
    assert_eq!(shown["published"], size);
    assert_eq!(shown["pending"], 0);
    assert_eq!(shown["container"], container);
    assert_eq!(shown["prefix"], format!("{guest}/k2hdkc-guest/"));
    let (objects, meta) = published(&env, &token, &container, &guest).await;
    assert!(objects.len() >= 3, "{} objects", objects.len());
    let lines: u64 = objects.iter().map(|(n, _)| n).sum();
    assert_eq!(lines, 40);
    for (n, text) in &objects {
        assert!(text.len() <= LIMIT, "an object of {} bytes", text.len());
        assert_eq!(text.lines().count() as u64, *n);
        assert!(
            !text.contains("register-path") && !text.contains("tok1"),
            "{text}"
        );
    }
    let meta = meta.expect("the metafile");
    assert_eq!(meta["log_size"], size);
    assert_eq!(meta["log_name"], "guest");
    assert_eq!(meta["log_type"], "SYS");

    // More lines, and a restarted agent: it goes on from the metafile.
    append(&file, 40..50, "more");
    let again = logs(&guest, &file, &container);
    let shown = again.action(&action(false, false), &admin).await.unwrap();
    assert_eq!(shown["status"], "Partial", "{shown}");
    assert_eq!(shown["published"], size);
    let shown = again.action(&action(true, false), &admin).await.unwrap();
    assert_eq!(shown["status"], "Published");
    let (objects, _) = published(&env, &token, &container, &guest).await;
    let all: String = objects.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(all.lines().count(), 50, "each line once");
    assert!(all.contains("more line 00049") && all.contains("first line 00000"));

    // Rotated (a new file): shown so, and its publish replaces the old.
    std::fs::remove_file(&file).unwrap();
    append(&file, 0..5, "rotated");
    let shown = again.action(&action(false, false), &admin).await.unwrap();
    assert_eq!(shown["status"], "Rotated", "{shown}");
    again.action(&action(true, false), &admin).await.unwrap();
    let (objects, _) = published(&env, &token, &container, &guest).await;
    let all: String = objects.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(all.lines().count(), 5, "{all}");
    assert!(!all.contains("first line"));

    // Discard: nothing of it stays.
    let shown = again.action(&action(false, true), &admin).await.unwrap();
    assert_eq!(shown["published"], 0);
    let (objects, meta) = published(&env, &token, &container, &guest).await;
    assert!(objects.is_empty() && meta.is_none());

    let _ = env
        .request(reqwest::Method::DELETE, &container, &token, None)
        .await;
}
