//! The web dashboard, served at `/` next to the API by `elihu serve`:
//! server-rendered HTML (maud) plus one small hand-written script that
//! refreshes a page's live part; everything is embedded in the binary (no
//! CDN, no JS build step). This module owns the routes, the page layout, the
//! error page and the shared formatting; `auth` the login and the checks
//! every request passes; one module per page (`overview`, `jobs`, `runs`,
//! `templates` with the enqueue form built by `form`, `schedules`, `nodes`),
//! and `plot` for the throughput plot. Actions go through the same
//! [`Client`](crate::Client) methods as the API, so they are validated alike.

mod auth;
mod form;
mod jobs;
mod nodes;
mod overview;
mod plot;
mod runs;
mod schedules;
mod templates;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::de::DeserializeOwned;

use crate::api::{ApiError, ApiState};
use crate::client::ClientError;
use crate::model::Millis;
use crate::store::StoreError;

pub use auth::session_cookie_valid;
pub(crate) use auth::same_origin as same_origin_request;

/// How many rows a capped count reads at most (shown as "10,000+").
const COUNT_CAP: i64 = 10_000;
/// How many of the latest runs (by id) the plot, durations and failures cover.
const RUN_WINDOW: i64 = 100_000;
/// How many ids a filtered jobs page scans at most before offering to go on.
const JOB_WINDOW: i64 = 100_000;
/// The header the script sends to fetch only a page's `<main>`.
const PART_HEADER: &str = "x-elihu-part";

/// The dashboard's routes, guarded by [`auth::guard`].
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/jobs", get(jobs::list))
        .route("/jobs/cancel", post(jobs::cancel_many))
        .route("/jobs/{id}", get(jobs::page))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/run", post(jobs::run_now))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/runs", get(runs::page))
        .route("/templates", get(templates::list))
        .route("/templates/{name}", get(templates::page))
        .route("/templates/{name}/enqueue", post(templates::enqueue))
        .route("/schedules", get(schedules::page))
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .route("/nodes", get(nodes::page))
        .layer(middleware::from_fn_with_state(state.clone(), auth::guard))
        .with_state(state)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/app.js"))
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// What every page render knows about its request: whether only the live
/// `<main>` is wanted, and whether a logout button makes sense.
pub(crate) struct Shell {
    part: bool,
    token: bool,
}

impl FromRequestParts<ApiState> for Shell {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        Ok(Shell { part: parts.headers.contains_key(PART_HEADER), token: state.token.is_some() })
    }
}

/// Which pages refresh themselves, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Live {
    /// A still page.
    No,
    /// Fetched again every this many milliseconds.
    Every(u32),
}

impl Shell {
    /// A page with the layout around `main` (or only `main`, for the script).
    pub(crate) fn page(&self, status: StatusCode, title: &str, live: Live, main: Markup) -> Response {
        let live_ms = match live {
            Live::No => None,
            Live::Every(ms) => Some(ms),
        };
        let mut response = if self.part {
            (status, main).into_response()
        } else {
            let doc = html! {
                (DOCTYPE)
                html lang="en" {
                    head {
                        meta charset="utf-8";
                        meta name="viewport" content="width=device-width, initial-scale=1";
                        title { (title) " · elihu" }
                        link rel="icon" href="data:,";
                        link rel="stylesheet" href={ "/assets/app.css?v=" (env!("CARGO_PKG_VERSION")) };
                        script src={ "/assets/app.js?v=" (env!("CARGO_PKG_VERSION")) } defer {}
                    }
                    body {
                        nav {
                            a.brand href="/" { "elihu" }
                            a href="/" { "Overview" }
                            a href="/jobs" { "Jobs" }
                            a href="/runs" { "Runs" }
                            a href="/templates" { "Templates" }
                            a href="/schedules" { "Schedules" }
                            a href="/nodes" { "Nodes" }
                            @if self.token {
                                form.logout method="post" action="/logout" {
                                    (csrf_field())
                                    button type="submit" { "Log out" }
                                }
                            }
                        }
                        main data-live=[live_ms] { (main) }
                    }
                }
            };
            (status, doc).into_response()
        };
        if live_ms.is_some() {
            response.headers_mut().insert("x-elihu-live", HeaderValue::from_static("1"));
        }
        response
    }
}

/// The hidden form field every POST form carries.
pub(crate) fn csrf_field() -> Markup {
    html! { input type="hidden" name="_csrf" value=(auth::csrf_token()); }
}

/// A page could not be shown: an error page with the API's status and message.
pub(crate) struct Failure(ApiError);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure(e.into())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure(ClientError::Store(e).into())
    }
}

impl Failure {
    /// A 404 naming what is missing.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Failure(ApiError::not_found(message))
    }

    /// A 400 naming what is wrong.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Failure(ApiError::bad_request(message))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let shell = Shell { part: false, token: false };
        let main = html! {
            h1 { "Something is wrong" }
            p.error #failure { (self.0.message) }
            p { a href="/" { "Back to the overview" } }
        };
        shell.page(self.0.status, "error", Live::No, main)
    }
}

/// A form body (`application/x-www-form-urlencoded`), repeated keys allowed.
pub(crate) fn form<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_html_form::from_bytes(body).map_err(|e| Failure::bad_request(format!("the form is not what this page takes: {e}")))
}

/// 303 to `to`, the answer to every successful POST.
pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// An optional text field: empty means absent.
pub(crate) fn given(text: &Option<String>) -> Option<String> {
    text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(String::from)
}

/// A time as shown: `2026-11-23 17:31:04Z`.
pub(crate) fn at(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms.0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.0.to_string())
}

/// How far `ms` is from `now`: `3s ago`, `in 2m`.
pub(crate) fn ago(now: Millis, ms: Millis) -> String {
    let d = now.0 - ms.0;
    if d >= 0 { format!("{} ago", span(d)) } else { format!("in {}", span(-d)) }
}

/// A length of time in the largest unit that fits: `350ms`, `4.2s`, `3m`, `2h`, `5d`.
pub(crate) fn span(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{ms}ms"),
        ..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        ..3_600_000 => format!("{}m", ms / 60_000),
        ..86_400_000 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

/// A count read with a cap: `10,000+` when it reached it.
pub(crate) fn capped(n: i64) -> String {
    let text = thousands(n);
    if n >= COUNT_CAP { format!("{text}+") } else { text }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A `<pre>` of JSON text, pretty-printed when it parses.
pub(crate) fn json_block(id: &str, text: &str) -> Markup {
    let pretty = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string());
    html! { pre.json id=(id) { (pretty) } }
}

/// A result or state as a coloured badge.
pub(crate) fn badge(text: &str) -> Markup {
    html! { span class={ "badge " (text) } { (text) } }
}

