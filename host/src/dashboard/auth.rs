//! Who may use the dashboard. With a token: a login form that checks it and
//! sets an HttpOnly, SameSite=Strict session cookie holding a hash of the
//! token (never the token, never in a URL); a page without a session
//! redirects to the login. Without a token (loopback only): requests must
//! name a loopback Host, so a rebinding web page cannot drive the buttons.
//! Every POST must come from our own origin and carry the form token our
//! pages embed. Responses get a strict Content-Security-Policy.

use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::{Failure, Live, Shell, csrf_field, form, see_other};
use crate::api::ApiState;

/// The session cookie's name.
const COOKIE: &str = "elihu_session";
/// The largest form body the dashboard reads.
const MAX_FORM: usize = 1 << 20;
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The session cookie's value for `token`: a hash, so the cookie store
/// never holds the token itself.
fn session_value(token: &str) -> String {
    hex::encode(Sha256::new().chain_update(b"elihu-session\0").chain_update(token.as_bytes()).finalize())
}

/// The random form token of this process, embedded in every POST form.
pub(crate) fn csrf_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| hex::encode(rand::random::<[u8; 16]>()))
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether `headers` carry a valid session cookie for `token` (for other
/// routes that want to accept the dashboard's session, such as an event
/// stream a page opens).
pub fn session_cookie_valid(headers: &HeaderMap, token: &str) -> bool {
    let expected = session_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && same(value, &expected))
}

fn bearer_valid(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given, token))
}

/// A Host header naming this machine's loopback (`localhost`, `127.x.y.z`, `[::1]`).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A POST made by one of our pages: same-origin by the browser's word
/// (`Sec-Fetch-Site`, else `Origin` against `Host`); a request no browser
/// made (no such headers) passes. The API checks its changes with it too.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, rest)| rest == host),
        (None, _) => true,
        _ => false,
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.to_string()).into_response()
}

/// The checks of every dashboard request (see the module doc).
pub(crate) async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let path = request.uri().path();
    let open = path == "/login" || path.starts_with("/assets/");
    match &state.token {
        None if !loopback_host(headers) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "this elihu has no token, so its dashboard answers only to a loopback Host (localhost, 127.0.0.1, [::1]); \
                 start it with --token to reach it under another name",
            );
        }
        Some(token) if !open && !session_cookie_valid(headers, token) && !bearer_valid(headers, token) => {
            return if request.method() == Method::GET {
                Redirect::to("/login").into_response()
            } else {
                refuse(StatusCode::UNAUTHORIZED, "log in first: this elihu requires its token")
            };
        }
        _ => {}
    }
    let request = if request.method() == Method::POST {
        if !same_origin(request.headers()) {
            return refuse(StatusCode::FORBIDDEN, "refused: this form was not sent by this dashboard's own pages");
        }
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the form is larger than 1 MiB");
        };
        let pairs: Vec<(String, String)> = serde_html_form::from_bytes(&bytes).unwrap_or_default();
        let token_ok = pairs.iter().any(|(k, v)| k == "_csrf" && same(v, csrf_token()));
        if !token_ok {
            return refuse(StatusCode::FORBIDDEN, "refused: the form lacks this dashboard's form token; reload the page and try again");
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn login_view(shell: &Shell, status: StatusCode, error: Option<&str>) -> Response {
    let main = html! {
        h1 { "Log in" }
        p { "This elihu requires the token it was started with (" code { "--token" } " or " code { "ELIHU_TOKEN" } ")." }
        form.login method="post" action="/login" {
            (csrf_field())
            label for="token" { "Token" }
            input #token type="password" name="token" autocomplete="current-password" autofocus;
            @if let Some(error) = error {
                span.error data-field="token" { (error) }
            }
            button #login type="submit" { "Log in" }
        }
    };
    shell.page(status, "log in", Live::No, main)
}

/// `GET /login`.
pub(crate) async fn login_page(State(state): State<ApiState>, shell: Shell) -> Response {
    if state.token.is_none() {
        return see_other("/");
    }
    login_view(&Shell { token: false, ..shell }, StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

/// `POST /login`: the session cookie for the right token, the form again for a wrong one.
pub(crate) async fn login(State(state): State<ApiState>, shell: Shell, body: Bytes) -> Result<Response, Failure> {
    let Some(token) = &state.token else { return Ok(see_other("/")) };
    let given: LoginForm = form(&body)?;
    if !same(given.token.trim(), token) {
        return Ok(login_view(&Shell { token: false, ..shell }, StatusCode::UNAUTHORIZED, Some("that is not this elihu's token")));
    }
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", session_value(token));
    let mut response = see_other("/");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("hex is a valid header value"));
    Ok(response)
}

/// `POST /logout`: forgets the session cookie.
pub(crate) async fn logout() -> Response {
    let mut response = see_other("/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("elihu_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}
