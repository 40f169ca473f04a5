//! Backups and restores of a node, against the real Swift and Keystone
//! `tests/run` starts (keystonemiddleware + keystoneauth in Swift's proxy:
//! the token in the request's context is what Swift checks), a real
//! RabbitMQ, Trove's own guest API client and a recording conductor, and
//! the k2hdkc test image. Keys are written and read with k2hlinetool on
//! the node's K2HFILE (both images have it; k2hdkc's client tools only
//! the real one).

use std::time::Duration;

use e2e_tests::docker;
use e2e_tests::node::{node, restart_agent, Node};
use e2e_tests::swift::SwiftEnv;
use reqwest::Method;
use serde_json::{json, Value};

const KEY: &str = "a test backup key";
/// Small segments, so that a backup of a few MiB has several.
const SEGMENT: u64 = 1024 * 1024;

fn agent_extra(encrypted: bool) -> String {
    format!(
        "[DEFAULT]\nstate_change_wait_time = 150\nbackup_segment_max_size = {SEGMENT}\ngraceful_shutdown_timeout = 5\n{}",
        if encrypted {
            format!("backup_aes_cbc_key = {KEY}\n")
        } else {
            String::new()
        }
    )
}

/// The K2HFILE the node's ini names.
fn k2hfile(n: &Node) -> String {
    let ini = std::fs::read_to_string(n.config_dir.join("k2hdkc.ini")).unwrap();
    ini.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "K2HFILE").then(|| v.trim().to_owned())
        })
        .expect("the ini names a K2HFILE")
}

/// Runs k2hlinetool on the node's K2HFILE inside its k2hdkc container.
fn k2hlinetool(n: &Node, commands: &str) -> String {
    let name = format!("cmds-{}", uuid::Uuid::new_v4().simple());
    let host = n.agent.mount_point.join(&name);
    std::fs::write(&host, format!("{commands}\nexit\n")).unwrap();
    std::os::unix::fs::chown(&host, Some(1001), Some(1001)).unwrap();
    let out = std::process::Command::new("docker")
        .args(["exec", &format!("k2hdkc-server-{}", n.agent.guest_id)])
        .args(["k2hlinetool", "-f", &k2hfile(n), "-run"])
        .arg(format!("/var/lib/antpickax/k2hdkc/{name}"))
        .output()
        .expect("docker exec");
    std::fs::remove_file(&host).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `count` keys with values of several sizes (10 to 3,000 characters),
/// not compressible, so that the backup spans several segments.
fn dataset(count: usize) -> Vec<(String, String)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..count)
        .map(|i| {
            let len = [10, 200, 1500, 3000][i % 4];
            let value: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from_digit((x % 16) as u32, 16).unwrap()
                })
                .collect();
            (format!("key-{i}"), format!("v{i}-{value}"))
        })
        .collect()
}

fn write_keys(n: &Node, keys: &[(String, String)]) {
    let cmds: Vec<String> = keys.iter().map(|(k, v)| format!("set {k} {v}")).collect();
    let out = k2hlinetool(n, &cmds.join("\n"));
    assert!(!out.contains("[ERR]") && !out.contains("ERROR"), "{out}");
}

/// The keys of `keys` the node holds with the same value.
fn matching_keys(n: &Node, keys: &[(String, String)]) -> usize {
    let cmds: Vec<String> = keys.iter().map(|(k, _)| format!("print {k}")).collect();
    let out = k2hlinetool(n, &cmds.join("\n"));
    let mut found = std::collections::HashMap::new();
    for line in out.lines() {
        // real: `  +"k" => "v"`; stand-in: `"k" => "v"`
        let Some((k, v)) = line.trim().trim_start_matches('+').split_once(" => ") else {
            continue;
        };
        found.insert(
            k.trim_matches('"').to_owned(),
            v.trim_matches('"').to_owned(),
        );
    }
    keys.iter().filter(|(k, v)| found.get(k) == Some(v)).count()
}

/// Swift, a tenant's token, and a healthy node holding `count` keys.
async fn source(encrypted: bool, count: usize) -> (SwiftEnv, String, Node, Vec<(String, String)>) {
    let swift = SwiftEnv::load();
    let token = swift.token().await;
    let mut n = node(&agent_extra(encrypted)).await;
    n.prepare_healthy().await;
    let keys = dataset(count);
    write_keys(&n, &keys);
    (swift, token, n, keys)
}

fn backup_info(id: &str, swift: &SwiftEnv, parent: Value) -> Value {
    json!({"id": id, "name": "b", "description": null, "instance_id": "i",
        "backup_type": "full", "checksum": null, "parent": parent, "datastore": "k2hdkc",
        "datastore_version": "1.0.17", "storage_driver": "swift", "swift_container": null,
        "swift_url": swift.account_url()})
}

/// Casts create_backup as trove-taskmanager does, with the tenant's token.
async fn cast_create_backup(n: &mut Node, info: Value, token: &str) {
    let r = n
        .trove
        .send(json!({"op": "cast", "method": "create_backup",
            "kwargs": {"backup_info": info}, "auth_token": token}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
}

/// Casts create_backup (see [`cast_create_backup`]); returns the update_backup
/// with the outcome (COMPLETED or FAILED) and whether BUILDING came first.
async fn create_backup_seen(n: &mut Node, info: Value, token: &str) -> (bool, Value) {
    let id = info["id"].as_str().unwrap().to_owned();
    cast_create_backup(n, info, token).await;
    let mut building = false;
    loop {
        let v = n
            .conductor
            .next_matching(Duration::from_secs(180), |v| {
                v["method"] == "update_backup" && v["kwargs"]["backup_id"] == id.as_str()
            })
            .await
            .expect("update_backup with the outcome");
        if v["kwargs"]["state"] == "BUILDING" {
            assert!(v["kwargs"]["size"].is_number(), "{v}");
            building = true;
        } else {
            return (building, v["kwargs"].clone());
        }
    }
}

async fn create_backup(n: &mut Node, info: Value, token: &str) -> Value {
    create_backup_seen(n, info, token).await.1
}

/// Prepare of a new instance from a backup, as the taskmanager sends it.
async fn prepare_from(n: &mut Node, info: Value, token: &str) {
    let overrides = n.overrides();
    let r = n
        .trove
        .send(
            json!({"op": "cast", "method": "prepare", "auth_token": token, "kwargs": {
            "memory_mb": 1024, "packages": [], "databases": [], "users": [],
            "overrides": overrides, "backup_info": info}}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
}

fn restore_info(id: &str, stored: &Value, swift: &SwiftEnv) -> Value {
    json!({"id": id, "instance_id": "i", "location": stored["location"], "type": "full",
        "checksum": stored["checksum"], "storage_driver": "swift",
        "swift_url": swift.account_url()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encrypted_backup_in_segments_restores_every_key_and_trove_delete_leaves_nothing() {
    let (swift, token, mut a, keys) = source(true, 2000).await;
    assert_eq!(matching_keys(&a, &keys), keys.len(), "written");

    let id = uuid::Uuid::new_v4().to_string();
    let started = std::time::Instant::now();
    let (building, done) =
        create_backup_seen(&mut a, backup_info(&id, &swift, Value::Null), &token).await;
    assert!(building, "BUILDING before the outcome");
    eprintln!(
        "backup took {:.1}s: {done}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!(done["success"], true);
    let location = done["location"].as_str().unwrap();
    assert_eq!(
        location,
        format!("{}/database_backups/{id}.gz.enc", swift.account_url())
    );
    assert!(done["size"].as_f64().unwrap() > 0.0);

    // Swift: an SLO over several segments, its ETag the checksum reported.
    let object = format!("database_backups/{id}.gz.enc");
    let (status, head) = swift.head(&object, &token).await;
    assert_eq!(status, 200);
    assert_eq!(
        head["etag"].trim_matches('"'),
        done["checksum"].as_str().unwrap()
    );
    assert_eq!(head["x-static-large-object"], "True");
    assert_eq!(head["x-object-meta-datastore"], "k2hdkc");
    assert_eq!(head["x-object-meta-datastore-version"], "1.0.17");
    let listed = swift.list("database_backups", &token).await;
    let segments: Vec<&String> = listed
        .iter()
        .filter(|n| n.starts_with(&format!("{id}_")))
        .collect();
    assert!(segments.len() >= 2, "several segments: {listed:?}");
    assert!(segments.contains(&&format!("{id}_00000001")), "{listed:?}");

    // The stored bytes are not gzip; openssl with the key gives the gzip.
    let bytes = swift
        .request(Method::GET, &object, &token, None)
        .await
        .bytes()
        .await
        .unwrap();
    assert_ne!(&bytes[..2], &[0x1f, 0x8b]);
    let mut openssl = std::process::Command::new("openssl")
        .args([
            "enc",
            "-d",
            "-aes-256-cbc",
            "-md",
            "sha512",
            "-pbkdf2",
            "-iter",
            "10000",
            "-salt",
        ])
        .args(["-pass", "env:BACKUP_KEY"])
        .env("BACKUP_KEY", KEY)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = openssl.stdin.take().unwrap();
    let data = bytes.to_vec();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = openssl.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success());
    assert_eq!(
        &out.stdout[..2],
        &[0x1f, 0x8b],
        "openssl gives back the gzip"
    );

    // A new instance from the backup holds every key, with its value.
    let mut b = node(&agent_extra(true)).await;
    let started = std::time::Instant::now();
    prepare_from(&mut b, restore_info(&id, &done, &swift), &token).await;
    let s = b
        .heartbeat(Duration::from_secs(180), |s| s != "building")
        .await;
    eprintln!("restore took {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(s.as_deref(), Some("healthy"));
    assert_eq!(matching_keys(&b, &keys), keys.len(), "restored");
    let leftovers = std::fs::read_dir(&b.agent.mount_point)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".restore") || n.starts_with(".backup"))
        .count();
    assert_eq!(leftovers, 0, "the work directory is removed");

    // Trove's `backup delete` (taskmanager's delete_files_from_swift).
    let deleted = swift.delete_manifest(&object, &token).await;
    assert_eq!(deleted["Number Not Found"], 0, "{deleted}");
    let left = swift.objects_of("database_backups", &id, &token).await;
    assert!(left.is_empty(), "left in Swift: {left:?}");
    a.cleanup().await;
    b.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_that_cannot_be_made_or_trusted_fail_with_their_cause_and_leave_nothing() {
    let (swift, token, mut a, _) = source(false, 400).await;

    // Incremental: refused, not a silent full.
    let id = uuid::Uuid::new_v4().to_string();
    let parent = json!({"location": "x", "checksum": "y"});
    let done = create_backup(&mut a, backup_info(&id, &swift, parent), &token).await;
    assert_eq!(done["state"], "FAILED", "{done}");
    assert_eq!(done["backup_type"], "incremental");
    assert_eq!(done["success"], false);

    // A token that no longer opens Swift: FAILED, nothing stored.
    let dead = swift.token().await;
    swift.revoke(&dead).await;
    let id = uuid::Uuid::new_v4().to_string();
    let done = create_backup(&mut a, backup_info(&id, &swift, Value::Null), &dead).await;
    assert_eq!(done["state"], "FAILED", "{done}");
    let left = swift.objects_of("database_backups", &id, &token).await;
    assert!(left.is_empty(), "{left:?}");

    // A good backup, then its second segment replaced behind Trove's
    // back: the restore refuses it, and nothing serves.
    let id = uuid::Uuid::new_v4().to_string();
    let good = create_backup(&mut a, backup_info(&id, &swift, Value::Null), &token).await;
    assert_eq!(good["state"], "COMPLETED", "{good}");
    let segment = format!("database_backups/{id}_00000001");
    let r = swift
        .request(
            Method::PUT,
            &segment,
            &token,
            Some(b"not the segment".to_vec()),
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let mut b = node(&agent_extra(false)).await;
    prepare_from(&mut b, restore_info(&id, &good, &swift), &token).await;
    let s = b
        .heartbeat(Duration::from_secs(180), |s| s != "building")
        .await;
    assert_eq!(s.as_deref(), Some("failed to spawn"));
    let server = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("name=k2hdkc-server-{}", b.agent.guest_id),
    ]);
    assert!(server.is_empty(), "no k2hdkc serves a half-loaded file");

    // A checksum other than the one recorded: refused before any load.
    let mut wrong = restore_info(&id, &good, &swift);
    wrong["checksum"] = json!("0123456789abcdef0123456789abcdef");
    let mut c = node(&agent_extra(false)).await;
    prepare_from(&mut c, wrong, &token).await;
    let s = c
        .heartbeat(Duration::from_secs(180), |s| s != "building")
        .await;
    assert_eq!(s.as_deref(), Some("failed to spawn"));

    swift
        .delete_manifest(&format!("database_backups/{id}.gz"), &token)
        .await;
    a.cleanup().await;
    b.cleanup().await;
    c.cleanup().await;
}

/// What the relay does to the connection carrying the `at`-th byte sent
/// to Swift.
#[derive(Clone, Copy)]
enum Fault {
    /// Cut it, and every open connection (as Swift's proxy stopping
    /// would), drop every new one for this long (Swift away), then relay
    /// as before (Swift back).
    Cut { down_for: Duration },
    /// Hold it: nothing more reaches Swift, nothing comes back (a hung
    /// upload, until the agent gives up or stops).
    Stall,
}

/// A relay's address (or Swift URL through it), its task, and whether
/// its fault has happened.
type Relay = (
    String,
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

/// A TCP relay to `target` that does `fault` at the `at`-th byte sent;
/// also returns whether it has.
async fn faulty_relay(target: String, at: u64, fault: Fault) -> Relay {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let tripped = Arc::new(AtomicBool::new(false));
    let tripped_when: Arc<Mutex<Option<std::time::Instant>>> = Arc::default();
    // With a cut, every open connection dies, pooled ones too.
    let (went_down, _) = tokio::sync::watch::channel(false);
    let went_down = Arc::new(went_down);
    let seen = tripped.clone();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            if let Fault::Cut { down_for } = fault {
                if tripped_when
                    .lock()
                    .unwrap()
                    .is_some_and(|t| t.elapsed() < down_for)
                {
                    drop(client);
                    continue;
                }
            }
            let (sent, tripped, target) = (sent.clone(), tripped.clone(), target.clone());
            let tripped_when = tripped_when.clone();
            let went_down = went_down.clone();
            let mut down_seen = went_down.subscribe();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let before = sent.fetch_add(n as u64, Ordering::SeqCst);
                        if before + n as u64 >= at && !tripped.swap(true, Ordering::SeqCst) {
                            *tripped_when.lock().unwrap() = Some(std::time::Instant::now());
                            match fault {
                                Fault::Cut { .. } => {
                                    went_down.send_replace(true);
                                    return; // both directions dropped: the connection dies
                                }
                                Fault::Stall => std::future::pending::<()>().await,
                            }
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                // Only a cut after this connection opened ends it.
                let gone = async {
                    let _ = down_seen.changed().await;
                };
                tokio::select! { _ = up => {}, _ = down => {}, _ = gone => {} }
            });
        }
    });
    (addr, task, seen)
}

/// `swift_url` of `swift`, through a relay doing `fault` at the `at`-th
/// byte; the relay's task and whether it tripped.
async fn swift_through_relay(swift: &SwiftEnv, at: u64, fault: Fault) -> Relay {
    let upstream = swift.account_url();
    let host = upstream
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let (relay, task, tripped) = faulty_relay(host.clone(), at, fault).await;
    (upstream.replace(&host, &relay), task, tripped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swift_gone_mid_upload_fails_the_backup_and_leaves_no_segment_once_it_is_back() {
    // About 2.6 MB stored: three segments of 1 MiB.
    let (swift, token, mut a, _) = source(false, 4000).await;
    // Into the second segment's upload; away for 4 s: the cleanup's first
    // attempts fail and it must retry.
    let (url, task, _) = swift_through_relay(
        &swift,
        SEGMENT + SEGMENT / 4,
        Fault::Cut {
            down_for: Duration::from_secs(4),
        },
    )
    .await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut info = backup_info(&id, &swift, Value::Null);
    info["swift_url"] = json!(url);
    let done = create_backup(&mut a, info, &token).await;
    task.abort();
    assert_eq!(done["state"], "FAILED", "{done}");
    assert_eq!(done["success"], false);
    let left = swift.objects_of("database_backups", &id, &token).await;
    assert!(left.is_empty(), "left in Swift: {left:?}");
    let work = std::fs::read_dir(&a.agent.mount_point)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with(".backup"));
    assert!(!work, "the archive's work directory is removed");
    a.cleanup().await;
}

/// An agent stopped during a backup (a stop it outlasts; a crash or a VM
/// reset are covered by the manager's unit tests): Trove would keep the
/// backup BUILDING, refuse to delete it and refuse every action on the
/// instance. The stopping agent reports it FAILED; the restarted one
/// removes what it had stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_an_agent_restart_interrupts_is_reported_failed_and_leaves_nothing() {
    let (swift, token, mut a, _) = source(false, 4000).await;
    // The upload hangs in its second segment.
    let (url, task, stalled) =
        swift_through_relay(&swift, SEGMENT + SEGMENT / 4, Fault::Stall).await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut info = backup_info(&id, &swift, Value::Null);
    info["swift_url"] = json!(url);
    cast_create_backup(&mut a, info, &token).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !stalled.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload reached the stall"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = swift.objects_of("database_backups", &id, &token).await;
    assert!(!stored.is_empty(), "a segment was stored: {stored:?}");
    // What a killed agent leaves on the data volume besides.
    let leftover = a.agent.mount_point.join(".backup-of-a-killed-agent");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("k2hdkc.ar"), "archive").unwrap();

    let (mut a, _keep) = restart_agent(a).await;
    let end = a
        .conductor
        .next_matching(Duration::from_secs(60), |v| {
            v["method"] == "update_backup"
                && v["kwargs"]["backup_id"] == id.as_str()
                && v["kwargs"]["state"] != "BUILDING"
        })
        .await
        .expect("the restarted agent reports the backup's end");
    assert_eq!(end["kwargs"]["state"], "FAILED", "{end}");
    assert_eq!(end["kwargs"]["success"], false);
    assert!(
        end["kwargs"]["sent"].as_f64().unwrap() < a.since,
        "reported by the stopping agent, not left to the next start: {end}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = swift.objects_of("database_backups", &id, &token).await;
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left in Swift: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    task.abort();
    assert!(!leftover.exists(), "the leftover work directory is removed");
    a.cleanup().await;
}
