//! The local control socket's server side. Each connection is served by its
//! own task: it reads one request line (at most [`MAX_REQUEST`] bytes, within
//! [`READ_TIMEOUT`]), hands it to the event loop and writes the answer back.
//! A silent or slow local client therefore ties up only its own task, never
//! the loop that sends probes.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::ctl::{socket_path, Request, Response};
use crate::lifecycle::RUN_ROOT;

/// The longest request line accepted.
pub const MAX_REQUEST: u64 = 64 * 1024;
/// A client has this long to send its request...
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// ...and the loop this long to answer it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A request from a local client, and where its answer goes.
pub struct LocalRequest {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// The listening socket and its accept task; dropping it stops accepting and
/// removes the socket file.
pub struct Server {
    path: PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bind the instance's socket (a stale file from a dead controller is
/// replaced) and serve it; requests arrive on the returned channel.
pub fn serve(instance: &str) -> Result<(Server, mpsc::Receiver<LocalRequest>)> {
    std::fs::create_dir_all(RUN_ROOT).with_context(|| format!("cannot create {RUN_ROOT}"))?;
    let path = socket_path(instance);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot bind control socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let (tx, rx) = mpsc::channel(16);
    let accept = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_one(stream, tx.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok((Server { path, accept }, rx))
}

async fn serve_one(stream: UnixStream, loop_tx: mpsc::Sender<LocalRequest>) {
    let (read, mut write) = stream.into_split();
    let answer = match read_request(read).await {
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            if loop_tx.send(LocalRequest { request, reply }).await.is_err() {
                return; // the controller is stopping
            }
            match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
                Ok(Ok(a)) => a,
                _ => Response::Error("the controller did not answer".into()),
            }
        }
        Err(e) => Response::Error(format!("{e:#}")),
    };
    let mut line = serde_json::to_string(&answer).unwrap_or_default();
    line.push('\n');
    let _ = tokio::time::timeout(READ_TIMEOUT, write.write_all(line.as_bytes())).await;
}

async fn read_request(read: tokio::net::unix::OwnedReadHalf) -> Result<Request> {
    let mut line = String::new();
    let mut r = BufReader::new(read.take(MAX_REQUEST));
    let n = tokio::time::timeout(READ_TIMEOUT, r.read_line(&mut line))
        .await
        .with_context(|| format!("no request within {READ_TIMEOUT:?}"))??;
    if !line.ends_with('\n') {
        anyhow::ensure!(n < MAX_REQUEST as usize, "request longer than {MAX_REQUEST} bytes");
    }
    serde_json::from_str(&line).context("malformed request")
}
