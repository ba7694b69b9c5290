//! `up --http ADDR` (`http` in the config): Prometheus metrics on
//! `/metrics`, a live status page on `/` (one self-contained HTML file: no
//! external assets), and the page's data on `/api/history`. Everything is
//! read through the local control socket as `status` reads it, so the bond
//! and native mode are served alike and the data path is never touched.
//! A sampler reads the status once a second for the page's history.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::history::History;

/// The status page.
const PAGE: &str = include_str!("page.html");
/// How often the sampler reads the status.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Served {
    instance: String,
    history: Arc<Mutex<History>>,
}

pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot serve metrics on {addr}"))
}

/// Serve `instance` on `listener`, and sample its status, for as long as the
/// process runs.
pub fn spawn(listener: tokio::net::TcpListener, instance: String) {
    let served = Served { instance, history: Arc::default() };
    let app = axum::Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/metrics", get(scrape))
        .route("/api/history", get(history))
        .with_state(served.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    tokio::spawn(sample(served));
}

async fn sample(served: Served) {
    let start = std::time::Instant::now();
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let status = query(&served.instance).await.map_err(|e| format!("{e:#}"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mono = start.elapsed().as_secs_f64();
        served.history.lock().unwrap_or_else(|p| p.into_inner()).record(now.as_secs_f64(), mono, status);
    }
}

async fn history(State(served): State<Served>) -> impl IntoResponse {
    let h = served.history.lock().unwrap_or_else(|p| p.into_inner());
    match serde_json::to_string(&h.view()) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], e.to_string()),
    }
}

async fn scrape(State(served): State<Served>) -> impl IntoResponse {
    match query(&served.instance).await {
        Ok(s) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&s)),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "text/plain")], format!("{e:#}\n")),
    }
}

/// The instance's status, read as `status` reads it (off the runtime: the
/// control socket is blocking).
async fn query(instance: &str) -> Result<crate::status::Status> {
    let instance = instance.to_string();
    tokio::task::spawn_blocking(move || crate::status::query(&instance)).await?
}
