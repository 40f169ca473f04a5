//! Test helpers shared by the unit tests (compiled for tests only).

/// A chmpx control port on 127.0.0.1 that answers each command (one per
/// connection, as chmpx's control port takes them) with `answer(cmd)`;
/// returns its `host:port`. An empty answer closes the connection with
/// nothing said: an answer lost.
pub(crate) async fn fake_ctlport<F>(answer: F) -> String
where
    F: Fn(&str) -> String + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            // A client gone early (its bound passed) is no failure here.
            let Ok(n) = s.read(&mut buf).await else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
            let _ = s.write_all(answer(&cmd).as_bytes()).await;
        }
    });
    addr
}
