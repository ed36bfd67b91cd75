//! Who may use the console: the same rule as the Web API. Without an API key (loopback only) everyone on
//! the machine may; with one, a request needs `Authorization: Bearer <key>` (scrapers, scripts) or the
//! sign-in cookie the login form sets after the key was typed once (browsers).
//!
//! Owns the login form, the session cookie and the same-origin check on form posts. It must not look at
//! what a page shows. The cookie holds a random token made when the console starts, never the key, so a
//! leaked cookie dies with the process and the key is never stored by the browser. `SameSite=Strict` and
//! the `Origin` check keep another site from posting the console's forms (e.g. a delete) through a
//! signed-in browser or against a key-less loopback console.

use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use crate::Console;
use crate::page;

/// The sign-in cookie's name.
pub const COOKIE: &str = "weft_console";

/// The console's authentication: the API key (if any) and this process's session token.
#[derive(Clone)]
pub struct Auth {
    key: Option<String>,
    session: String,
}

impl Auth {
    /// Authentication for `key` (None: open, loopback only).
    pub fn new(key: Option<String>) -> Auth {
        // Two v4 UUIDs: 244 random bits from the OS's generator.
        let session = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        Auth { key, session }
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.key else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim_start_matches(' '));
        if bearer.is_some_and(|t| same(t, key)) {
            return true;
        }
        cookie(headers, COOKIE).is_some_and(|c| same(c, &self.session))
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the key nor the session token is ever printed.
        f.write_str(if self.key.is_some() {
            "Key(***)"
        } else {
            "Open"
        })
    }
}

/// Constant-time comparison: the time taken must not tell how much of a secret matched.
fn same(given: &str, secret: &str) -> bool {
    given.len() == secret.len()
        && given
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether a form post comes from this console: no `Origin` (same-origin navigation in older browsers,
/// scripts) or one whose host is the request's `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Middleware on every console route but the login form and the assets.
pub(crate) async fn require(
    State(console): State<Console>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == axum::http::Method::POST && !same_origin(request.headers()) {
        return (StatusCode::FORBIDDEN, "cross-origin form posts are refused").into_response();
    }
    if console.auth.allows(request.headers()) {
        return next.run(request).await;
    }
    let path = request.uri().path();
    if path.starts_with("/console") && request.method() == axum::http::Method::GET {
        let wanted = request
            .uri()
            .path_and_query()
            .map_or("/console/jobs", |p| p.as_str());
        return Redirect::to(&format!("/console/login?next={}", page::encode(wanted)))
            .into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
    )
        .into_response()
}

/// The login form's query.
#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// Where to go after signing in: a console path only (never another site).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") => n,
        _ => "/console/jobs",
    }
}

/// `GET /console/login`.
pub(crate) async fn login_form(Query(q): Query<LoginQuery>) -> Response {
    login_page(safe_next(q.next.as_deref()), None, StatusCode::OK)
}

fn login_page(next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        h1 { "Sign in" }
        p { "This console is protected by the Web API's key (" code { "--api-key" } " / " code { "WEFT_API_KEY" } ")." }
        @if let Some(e) = error { p.notice.error role="alert" { (e) } }
        form method="post" action="/console/login" {
            input type="hidden" name="next" value=(next);
            label for="key" { "API key" }
            " "
            input #key type="password" name="key" autocomplete="current-password" autofocus required;
            " "
            button type="submit" { "Sign in" }
        }
    };
    (status, page::frame("Sign in", page::Nav::None, body)).into_response()
}

/// The login form's fields.
#[derive(Deserialize)]
pub(crate) struct Login {
    key: String,
    next: Option<String>,
}

/// `POST /console/login`: the key typed matches → the session cookie.
pub(crate) async fn login(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin form posts are refused").into_response();
    }
    let next = safe_next(form.next.as_deref()).to_owned();
    let ok = match &console.auth.key {
        None => true,
        Some(key) => same(&form.key, key),
    };
    if !ok {
        return login_page(
            &next,
            Some("That is not the API key."),
            StatusCode::UNAUTHORIZED,
        );
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        console.auth.session
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// The key as bearer or the session cookie lets a request in; the key as a cookie, a wrong key or
    /// nothing does not.
    #[test]
    fn bearer_or_session_cookie() {
        let auth = Auth::new(Some("k3y".into()));
        let with = |name: header::HeaderName, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_str(value).unwrap());
            h
        };
        assert!(auth.allows(&with(header::AUTHORIZATION, "bearer k3y")));
        assert!(!auth.allows(&with(header::AUTHORIZATION, "Bearer k3z")));
        assert!(!auth.allows(&HeaderMap::new()));
        let session = format!("a=b; {COOKIE}={}", auth.session);
        assert!(auth.allows(&with(header::COOKIE, &session)));
        assert!(!auth.allows(&with(header::COOKIE, &format!("{COOKIE}=k3y"))));
        assert!(Auth::new(None).allows(&HeaderMap::new()));
        assert!(!format!("{auth:?}").contains("k3y"));
    }

    /// A post from another origin is refused; the console's own and origin-less ones pass.
    #[test]
    fn origin_check() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:5380"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:5380"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    /// Sign-in only ever sends the browser to a console page.
    #[test]
    fn next_stays_in_the_console() {
        assert_eq!(safe_next(Some("/console/jobs?x=1")), "/console/jobs?x=1");
        assert_eq!(safe_next(Some("https://evil.example")), "/console/jobs");
        assert_eq!(safe_next(Some("//evil.example")), "/console/jobs");
        assert_eq!(safe_next(None), "/console/jobs");
    }
}
