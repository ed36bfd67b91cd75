//! The page frame every console page shares (navigation, skip link, notices), the embedded CSS and
//! JavaScript, and small rendering helpers (times, ids, query strings).
//!
//! Owns the look and the keyboard behaviour common to all pages. It must not read the store. The assets
//! are compiled into the binary (`include_str!`), so the console works offline and from any clone.

use axum::http::header;
use axum::response::IntoResponse;
use maud::{DOCTYPE, Markup, html};

/// The stylesheet, embedded.
const CSS: &str = include_str!("assets/console.css");
/// The script (live updates, confirmations, keyboard shortcuts), embedded.
const JS: &str = include_str!("assets/console.js");

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// None (sign-in).
    None,
    /// System Jobs.
    Jobs,
    /// Plug-in trace log.
    Traces,
    /// Registration.
    Registration,
    /// The embedded bus.
    Bus,
}

/// A whole page: `title`, the navigation with `nav` current, and `body`; no Bus entry in the navigation
/// (sign-in and error pages, which show no navigation at all).
pub fn frame(title: &str, nav: Nav, body: Markup) -> Markup {
    frame_with(title, nav, false, body)
}

/// [`frame`] for a console page: the navigation has the Bus entry when `bus` (the bus is embedded).
pub fn frame_with(title: &str, nav: Nav, bus: bool, body: Markup) -> Markup {
    let item = |target: Nav, href: &str, label: &str, key: &str| {
        html! {
            li {
                a href=(href) aria-current=[(nav == target).then_some("page")]
                    title={ (label) " (Alt+Shift+" (key) ")" } accesskey=(key) { (label) }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · weft console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "weft" }
                    @if nav != Nav::None {
                        nav aria-label="Console" {
                            ul {
                                (item(Nav::Jobs, "/console/jobs", "System Jobs", "j"))
                                (item(Nav::Traces, "/console/traces", "Plug-in Trace Log", "t"))
                                (item(Nav::Registration, "/console/registration", "Registration", "r"))
                                @if bus { (item(Nav::Bus, "/console/bus", "Bus", "b")) }
                                li { a href="/metrics" { "Metrics" } }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// A notice above a page's content (the outcome of an action), from the `notice`/`error` query fields.
pub fn notice(text: Option<&str>, error: bool) -> Markup {
    html! {
        @if let Some(t) = text.filter(|t| !t.is_empty()) {
            p.notice.error[error] role=(if error { "alert" } else { "status" }) { (t) }
        }
    }
}

/// A 500 page saying what failed (store errors; never secrets, which the store does not return).
pub fn failure(message: &str) -> axum::response::Response {
    let body = html! { h1 { "Something failed" } p.notice.error role="alert" { (message) } };
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        frame("Error", Nav::None, body),
    )
        .into_response()
}

/// A 400 page: what is wrong with the request, and where to go back to.
pub fn bad_request(what: &str, back: Option<(&str, &str)>) -> axum::response::Response {
    let body = html! {
        h1 { "Bad request" }
        p.notice.error role="alert" { (what) }
        @if let Some((href, label)) = back { p { a href=(href) { (label) } } }
    };
    (
        axum::http::StatusCode::BAD_REQUEST,
        frame("Bad request", Nav::None, body),
    )
        .into_response()
}

/// A 404 page with a way back.
pub fn not_found_back(what: &str, href: &str, label: &str) -> axum::response::Response {
    let body = html! {
        h1 { "Not found" }
        p.notice.error role="alert" { (what) }
        p { a href=(href) { (label) } }
    };
    (
        axum::http::StatusCode::NOT_FOUND,
        frame("Not found", Nav::None, body),
    )
        .into_response()
}

/// A 404 page.
pub fn not_found(what: &str) -> axum::response::Response {
    let body = html! { h1 { "Not found" } p.notice.error role="alert" { (what) } };
    (
        axum::http::StatusCode::NOT_FOUND,
        frame("Not found", Nav::None, body),
    )
        .into_response()
}

/// `GET /console/assets/console.css`.
pub(crate) async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
}

/// `GET /console/assets/console.js`.
pub(crate) async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
}

/// Percent-encodes `s` for a query-string value (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// ms since the Unix epoch as the console shows it: `2026-11-25 21:37:00Z`.
pub fn time(ms: i64) -> String {
    let iso = weft_jobs::views::format_ms(ms);
    // 2026-11-25T21:37:00.123Z → 2026-11-25 21:37:00Z: seconds are enough on a screen.
    format!("{} {}Z", &iso[..10], &iso[11..19])
}

/// An optional time, or a dash.
pub fn time_or_dash(ms: Option<i64>) -> String {
    ms.map_or_else(|| "–".to_owned(), time)
}

/// The first 8 hex digits of an id: enough to tell rows apart on screen (the full id is in the link).
pub fn short(id: &uuid::Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// Parses `YYYY-MM-DDTHH:MM` (an `<input type="datetime-local">`, read as UTC) or a full
/// `YYYY-MM-DDTHH:MM:SS` to ms since the Unix epoch.
pub fn parse_local(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, clock) = s.split_once(['T', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':');
    let h: i64 = c.next()?.parse().ok()?;
    let min: i64 = c.next()?.parse().ok()?;
    let sec: i64 = c
        .next()
        .map_or(Some(0), |v| v.parse::<f64>().ok().map(|f| f as i64))?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), the inverse of weft-jobs' format_ms.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000 + sec * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times read from the filter form are the inverse of how jobs print them.
    #[test]
    fn local_times_round_trip() {
        assert_eq!(parse_local("1970-01-01T00:00"), Some(0));
        let ms = 1_795_642_620_000;
        assert_eq!(parse_local("2026-11-25T21:37"), Some(ms));
        assert_eq!(parse_local("2026-11-25T21:37:00Z"), Some(ms));
        assert_eq!(time(ms), "2026-11-25 21:37:00Z");
        assert_eq!(parse_local("2000-02-29T00:00"), Some(951_782_400_000));
        assert_eq!(parse_local("2026-13-01T00:00"), None);
        assert_eq!(parse_local("yesterday"), None);
    }

    /// Query values are percent-encoded; a path's slashes stay readable.
    #[test]
    fn encodes_query_values() {
        assert_eq!(
            encode("/console/jobs?a=b c&d"),
            "/console/jobs%3Fa%3Db%20c%26d"
        );
        assert_eq!(encode("é"), "%C3%A9");
    }
}
