//! The dashboard's HTTP server (axum): the list of sweeps, each sweep's live page, its sections
//! and charts. Bound to 127.0.0.1 by default; any other address needs a bearer token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::data::{self, Source, SweepView};
use super::page::{self, esc};

/// What the dashboard shows.
#[derive(Clone, Debug)]
pub enum Sources {
    /// Every sweep directory under this folder (`--result-dir`), newest first.
    Root(PathBuf),
    /// One result file (`benchctl dashboard --json-file`).
    Single(Source),
}

#[derive(Clone, Debug)]
pub struct DashboardConfig {
    pub addr: SocketAddr,
    /// Required when `addr` is not a loopback address; never logged.
    pub token: Option<String>,
    pub sources: Sources,
    /// Shown with every sweep (`--metadata`).
    pub metadata: BTreeMap<String, String>,
}

struct AppState {
    cfg: DashboardConfig,
}

/// A running dashboard.
pub struct Dashboard {
    pub addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// The address to open (with the token, when there is one, as `?token=`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Starts serving. Refuses a non-loopback address without a token.
pub async fn start(cfg: DashboardConfig) -> anyhow::Result<Dashboard> {
    if !cfg.addr.ip().is_loopback() && cfg.token.as_deref().is_none_or(str::is_empty) {
        bail!(
            "--dashboard-addr {}: a bearer token (--dashboard-token or BENCHCTL_DASHBOARD_TOKEN) is required when the dashboard listens beyond loopback",
            cfg.addr
        );
    }
    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| format!("--dashboard-addr {}: cannot listen", cfg.addr))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState { cfg });
    let app = axum::Router::new()
        .route("/", get(index))
        .route("/sweep/{name}", get(sweep_page))
        .route("/api/sweeps", get(list_api))
        .route("/api/sweep/{name}/version", get(version_api))
        .route("/api/sweep/{name}/sections", get(sections_api))
        .route("/api/sweep/{name}/results.json", get(results_api))
        .route("/api/sweep/{name}/chart/{chart}", get(chart_api))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(Dashboard { addr, cancel, task })
}

type Shared = State<Arc<AppState>>;

async fn auth(State(s): Shared, headers: HeaderMap, req: Request, next: Next) -> Response {
    let Some(token) = s.cfg.token.as_deref().filter(|t| !t.is_empty()) else {
        return next.run(req).await;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // decoded as the page's script decodes it (URLSearchParams): `+` and %XX
    let query = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let ok = [bearer.map(str::to_string), query]
        .into_iter()
        .flatten()
        .any(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required (Authorization: Bearer … or ?token=…)\n",
        )
            .into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The sweep called `name`, if the dashboard shows it.
fn source(s: &AppState, name: &str) -> Option<Source> {
    match &s.cfg.sources {
        Sources::Single(src) => (src.name() == name).then(|| src.clone()),
        Sources::Root(root) => {
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return None;
            }
            let dir = root.join(name);
            dir.is_dir().then_some(Source::Dir(dir))
        }
    }
}

async fn load(s: Arc<AppState>, name: String) -> Result<(SweepView, String), Response> {
    let Some(src) = source(&s, &name) else {
        return Err((StatusCode::NOT_FOUND, format!("no sweep {name:?}\n")).into_response());
    };
    let extra = s.cfg.metadata.clone();
    tokio::task::spawn_blocking(move || {
        let version = src.version();
        SweepView::load(&src, &extra).map(|v| (v, version))
    })
    .await
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response())
}

/// `?token=…` for the page's links (the request passed the check, so it knows the token),
/// percent-encoded; nothing without a token.
fn token_query(s: &AppState) -> String {
    s.cfg
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|t| {
            format!(
                "?token={}",
                form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
            )
        })
        .unwrap_or_default()
}

async fn index(State(s): Shared) -> Response {
    let q = token_query(&s);
    match &s.cfg.sources {
        Sources::Single(src) => Redirect::to(&format!(
            "/sweep/{}{q}",
            form_urlencoded::byte_serialize(src.name().as_bytes()).collect::<String>()
        ))
        .into_response(),
        Sources::Root(root) => {
            let root = root.clone();
            let rows = tokio::task::spawn_blocking(move || {
                data::list(&root)
                    .into_iter()
                    .filter_map(|d| {
                        let src = Source::Dir(d);
                        let v = SweepView::load(&src, &BTreeMap::new()).ok()?;
                        Some((src.name(), v.status(), v.entries.len(), v.metadata))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            let mut h = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>benchctl sweeps</title><style>{}</style></head><body><h1>benchctl sweeps</h1><table id=\"sweeps\"><tr><th class=\"l\">sweep</th><th class=\"l\">model</th><th class=\"l\">status</th><th>tests</th></tr>",
                page::STYLE
            );
            for (name, status, tests, meta) in &rows {
                h.push_str(&format!(
                    "<tr><td class=\"l\"><a href=\"/sweep/{}{}\">{n}</a></td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{tests}</td></tr>",
                    esc(&form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()),
                    esc(&q),
                    esc(meta.get("model").map(String::as_str).unwrap_or("-")),
                    esc(status),
                    n = esc(name),
                ));
            }
            if rows.is_empty() {
                h.push_str("<tr><td class=\"l\" colspan=\"4\">no sweep yet</td></tr>");
            }
            h.push_str("</table></body></html>");
            Html(h).into_response()
        }
    }
}

async fn sweep_page(State(s): Shared, Path(name): Path<String>) -> Response {
    match load(s, name.clone()).await {
        Ok((view, version)) => {
            let api = format!("/api/sweep/{name}");
            Html(page::page(&view, Some((&api, &version)))).into_response()
        }
        Err(r) => r,
    }
}

async fn list_api(State(s): Shared) -> Response {
    let names: Vec<String> = match &s.cfg.sources {
        Sources::Single(src) => vec![src.name()],
        Sources::Root(root) => data::list(root)
            .into_iter()
            .map(|d| Source::Dir(d).name())
            .collect(),
    };
    axum::Json(names).into_response()
}

async fn version_api(State(s): Shared, Path(name): Path<String>) -> Response {
    match source(&s, &name) {
        Some(src) => src.version().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn sections_api(State(s): Shared, Path(name): Path<String>) -> Response {
    match load(s, name).await {
        Ok((view, _)) => {
            let m: BTreeMap<&str, String> = page::sections(&view).into_iter().collect();
            axum::Json(m).into_response()
        }
        Err(r) => r,
    }
}

async fn results_api(State(s): Shared, Path(name): Path<String>) -> Response {
    match load(s, name).await {
        Ok((view, _)) => axum::Json(view.entries).into_response(),
        Err(r) => r,
    }
}

async fn chart_api(State(s): Shared, Path((name, chart)): Path<(String, String)>) -> Response {
    let id = chart.trim_end_matches(".svg").to_string();
    match load(s, name).await {
        Ok((view, _)) => match super::charts::all(&view).into_iter().find(|c| c.0 == id) {
            Some((_, _, svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
            None => (StatusCode::NOT_FOUND, format!("no chart {id:?}\n")).into_response(),
        },
        Err(r) => r,
    }
}
