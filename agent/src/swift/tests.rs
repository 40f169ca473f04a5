//! Tests of the Swift store against scripted HTTP servers.
use super::*;

#[test]
fn location_splits_as_trove_splits_it() {
    assert_eq!(
        container_object("http://s:8080/v1/AUTH_p/database_backups/b1.gz.enc"),
        Some(("database_backups", "b1.gz.enc"))
    );
    assert_eq!(container_object("b1.gz"), None);
}

/// A Swift that answers each request with the status and body
/// `answer` gives (from the requests so far) and records them.
async fn scripted_swift(
    answer: impl Fn(&[String]) -> (u16, String) + Send + 'static,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/AUTH_p", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).await.unwrap() == 1 {
                head.push(byte[0]);
            }
            let line = String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            let request = line
                .rsplit_once(' ')
                .map_or(line.clone(), |(r, _)| r.to_owned());
            let (status, body) = {
                let mut seen = log.lock().unwrap();
                seen.push(request);
                answer(&seen)
            };
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    (url, seen)
}

fn failed_backup_objects(url: &str) -> Vec<String> {
    ["b1.gz", "b1_00000001", "b1_00000002"]
        .iter()
        .map(|o| format!("{url}/backups/{o}"))
        .collect()
}

#[tokio::test]
async fn a_failed_backups_objects_are_removed_in_order_once_swift_is_back() {
    // Swift unavailable for the first two requests.
    let (url, seen) =
        scripted_swift(|seen| (if seen.len() <= 2 { 503 } else { 204 }, String::new())).await;
    let store = SwiftStore::new(&url, Secret::new("t"), false).unwrap();
    store.remove(&failed_backup_objects(&url)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "DELETE /v1/AUTH_p/backups/b1.gz",
            "DELETE /v1/AUTH_p/backups/b1.gz",
            "DELETE /v1/AUTH_p/backups/b1.gz",
            "DELETE /v1/AUTH_p/backups/b1_00000001",
            "DELETE /v1/AUTH_p/backups/b1_00000002",
        ],
        "the manifest is retried until removed, before any segment"
    );
}

#[tokio::test]
async fn an_interrupted_backups_objects_are_found_by_listing_and_removed() {
    let listing = serde_json::json!([
        {"name": "b1_00000001"}, {"name": "b1_00000002"}, {"name": "b1.gz.enc"},
        {"name": "b1_notes"}, {"name": "b10.gz"}
    ])
    .to_string();
    let (url, seen) = scripted_swift(move |seen| {
        if seen.len() == 1 {
            (200, listing.clone())
        } else {
            (204, String::new())
        }
    })
    .await;
    let store = SwiftStore::new(&url, Secret::new("t"), false).unwrap();
    let n = store.remove_backup("backups", "b1").await.unwrap();
    assert_eq!(n, 3);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "GET /v1/AUTH_p/backups?format=json&prefix=b1",
            // The next page of the listing (Swift gives 10,000 a page):
            // none.
            "GET /v1/AUTH_p/backups?format=json&prefix=b1&marker=b10.gz",
            "DELETE /v1/AUTH_p/backups/b1.gz.enc",
            "DELETE /v1/AUTH_p/backups/b1_00000001",
            "DELETE /v1/AUTH_p/backups/b1_00000002",
        ],
        "only the backup's own objects, manifest first"
    );
}

#[tokio::test]
async fn a_refused_token_ends_the_cleanup_at_once() {
    let (url, seen) = scripted_swift(|_| (401, String::new())).await;
    let store = SwiftStore::new(&url, Secret::new("t"), false).unwrap();
    store.remove(&failed_backup_objects(&url)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "no retry with a refused token"
    );
}

#[test]
fn names_are_escaped_but_readable() {
    assert_eq!(enc("b-1_x.gz.enc"), "b-1_x.gz.enc");
    assert_eq!(enc("a b/c"), "a%20b%2Fc");
}
