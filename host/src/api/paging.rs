//! Server-side paging of every collection GET: Dataverse's default of [`DEFAULT_PAGE_SIZE`] rows a page,
//! `Prefer: odata.maxpagesize=N` (answered with `Preference-Applied`), and `@odata.nextLink` carrying a
//! `$skiptoken` that is opaque and tamper-checked.
//!
//! Owns the page size, the skip token (its format and its check) and the next link. It must not read rows:
//! callers ask their store for `size + 1` rows from `skip` (so a page never holds more than one extra row)
//! and hand back whether that extra row came.
//!
//! A token is the row offset and an HMAC-SHA256 over the route, the other query options and the offset,
//! keyed with a random key made when the server starts: a token that was altered, that comes from another
//! query or from a previous run of the server is refused with 400. Dataverse's tokens are paging cookies
//! (the last row's key); an offset is simpler and pages stay right while rows are only added after the
//! page being read (the store orders by the primary id last, so the order is stable).

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::error::ApiError;

/// Dataverse's page size when the caller asks for none, and the largest it grants.
pub const DEFAULT_PAGE_SIZE: u32 = 5000;

/// The query option carrying the token.
pub const SKIP_TOKEN: &str = "$skiptoken";

/// The MAC bytes kept in a token: 128 bits cannot be guessed.
const MAC_BYTES: usize = 16;

/// The key tokens are signed with, random per server.
#[derive(Clone)]
pub struct PageKey([u8; 32]);

impl PageKey {
    /// A fresh random key (two v4 UUIDs: 244 bits from the OS's generator).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        PageKey(key)
    }

    fn mac(&self, route: &str, pairs: &[(String, String)], skip: u64) -> [u8; MAC_BYTES] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        // Lengths before every part, so no two different queries feed the same bytes.
        let mut part = |bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        };
        part(route.as_bytes());
        for (k, v) in pairs {
            part(k.as_bytes());
            part(v.as_bytes());
        }
        part(&skip.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }
}

impl std::fmt::Debug for PageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageKey(***)")
    }
}

/// One collection request's page: where it starts and how many rows it holds.
#[derive(Debug, Clone)]
pub struct Page {
    route: String,
    /// The query options other than `$skiptoken`, as the token's MAC covers them.
    pairs: Vec<(String, String)>,
    /// The raw query string without `$skiptoken`, for the next link.
    raw_query: String,
    /// Rows before this page.
    pub skip: u64,
    /// Rows in a full page.
    pub size: u32,
    /// The `odata.maxpagesize` applied, when the caller sent one.
    applied: Option<u32>,
}

impl Page {
    /// The page a request on `route` (e.g. `accounts`) asks for: removes `$skiptoken` from `pairs` (after
    /// checking it), reads `Prefer: odata.maxpagesize`. `raw_query` is the URL's query string.
    pub fn from_request(
        key: &PageKey,
        route: &str,
        pairs: &mut Vec<(String, String)>,
        raw_query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Page, ApiError> {
        let mut tokens = Vec::new();
        pairs.retain(|(k, v)| {
            let token = k == SKIP_TOKEN;
            if token {
                tokens.push(v.clone());
            }
            !token
        });
        let skip = match tokens.as_slice() {
            [] => 0,
            [token] => Self::check(key, route, pairs, token)?,
            _ => return Err(ApiError::url("$skiptoken is given more than once.")),
        };
        let applied = max_page_size(headers)?;
        let raw_query = raw_query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty() && !is_skip_token_pair(p))
            .collect::<Vec<_>>()
            .join("&");
        Ok(Page {
            route: route.to_owned(),
            pairs: pairs.clone(),
            raw_query,
            skip,
            size: applied.unwrap_or(DEFAULT_PAGE_SIZE),
            applied,
        })
    }

    fn check(
        key: &PageKey,
        route: &str,
        pairs: &[(String, String)],
        token: &str,
    ) -> Result<u64, ApiError> {
        let refused = || {
            ApiError::url(
                "The $skiptoken is not valid for this query: it was altered, or it comes from another query \
                 or from before the server restarted. Start again from the first page.",
            )
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| refused())?;
        if bytes.len() != 8 + MAC_BYTES {
            return Err(refused());
        }
        let (skip, mac) = bytes.split_at(8);
        let skip = u64::from_be_bytes(skip.try_into().map_err(|_| refused())?);
        let expected = key.mac(route, pairs, skip);
        // Constant time: the time taken must not tell how much of the MAC matched.
        let diff = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(refused());
        }
        Ok(skip)
    }

    /// How many rows to ask the store for: this page plus one (to know whether another page follows),
    /// never past `$top`.
    pub fn fetch(&self, top: Option<u32>) -> u32 {
        self.rows(top).saturating_add(1)
    }

    /// Rows in this page at most, never past `$top`.
    pub fn rows(&self, top: Option<u32>) -> u32 {
        match top {
            Some(top) => {
                let left = u64::from(top).saturating_sub(self.skip);
                u32::try_from(left).unwrap_or(u32::MAX).min(self.size)
            }
            None => self.size,
        }
    }

    /// Trims `rows` (as fetched with [`Page::fetch`]) to the page; the next link when more rows follow.
    pub fn finish<T>(
        &self,
        rows: &mut Vec<T>,
        top: Option<u32>,
        key: &PageKey,
        base: &str,
    ) -> Option<String> {
        let page = self.rows(top) as usize;
        let more = rows.len() > page;
        rows.truncate(page);
        let next = self.skip + page as u64;
        if !more || top.is_some_and(|t| next >= u64::from(t)) {
            return None;
        }
        let mut token = next.to_be_bytes().to_vec();
        token.extend_from_slice(&key.mac(&self.route, &self.pairs, next));
        let token = URL_SAFE_NO_PAD.encode(token);
        let sep = if self.raw_query.is_empty() { "" } else { "&" };
        Some(format!(
            "{base}/{}?{}{sep}{SKIP_TOKEN}={token}",
            self.route, self.raw_query
        ))
    }

    /// This page of a list held in memory (registration, endpoints): its items and the next link.
    pub fn slice<T>(&self, items: Vec<T>, key: &PageKey, base: &str) -> (Vec<T>, Option<String>) {
        let skip = usize::try_from(self.skip).unwrap_or(usize::MAX);
        let mut page: Vec<T> = items
            .into_iter()
            .skip(skip)
            .take(self.fetch(None) as usize)
            .collect();
        let next = self.finish(&mut page, None, key, base);
        (page, next)
    }

    /// A collection's answer: `@odata.context`, `value` and, when more rows follow, `@odata.nextLink`;
    /// with `Preference-Applied` when the caller's page size was used.
    pub fn answer(
        &self,
        context: String,
        rows: Vec<serde_json::Value>,
        next: Option<String>,
    ) -> Response {
        let mut body = serde_json::json!({"@odata.context": context, "value": rows});
        if let Some(link) = next {
            body["@odata.nextLink"] = serde_json::Value::String(link);
        }
        let mut response = super::json_response(axum::http::StatusCode::OK, body.to_string());
        self.mark(&mut response);
        response
    }

    /// Adds `Preference-Applied: odata.maxpagesize=N` when the caller's preference was used.
    pub fn mark(&self, response: &mut Response) {
        if let Some(n) = self.applied
            && let Ok(v) = HeaderValue::from_str(&format!("odata.maxpagesize={n}"))
        {
            response.headers_mut().append("Preference-Applied", v);
        }
    }
}

/// Whether a raw `key=value` pair of the query string is the skip token (`$skiptoken` or `%24skiptoken`).
fn is_skip_token_pair(pair: &str) -> bool {
    let key = pair.split('=').next().unwrap_or_default();
    key == SKIP_TOKEN || key.eq_ignore_ascii_case("%24skiptoken")
}

/// `odata.maxpagesize=N` from the `Prefer` headers: 1 to [`DEFAULT_PAGE_SIZE`] is applied as is, a larger
/// number as [`DEFAULT_PAGE_SIZE`] (Dataverse's largest page); anything else is refused.
fn max_page_size(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let mut found = None;
    for value in headers.get_all("Prefer") {
        let text = value
            .to_str()
            .map_err(|_| ApiError::url("The header 'Prefer' is not ASCII text."))?;
        for preference in text.split(',') {
            let Some((name, n)) = preference.split_once('=') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case("odata.maxpagesize") {
                continue;
            }
            let n = n.trim().trim_matches('"');
            let size = n.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::url(format!(
                    "Prefer: odata.maxpagesize={n} is not a positive whole number."
                ))
            })?;
            found = Some(
                u32::try_from(size)
                    .unwrap_or(u32::MAX)
                    .min(DEFAULT_PAGE_SIZE),
            );
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn prefer(size: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "Prefer",
            HeaderValue::from_str(&format!("odata.maxpagesize={size}")).unwrap(),
        );
        h
    }

    /// A page's next link carries a token that reads back as the next offset on the same query, and is
    /// refused on another query, with another key, or altered in any byte.
    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let key = PageKey::random();
        let query = [("$select", "name"), ("$filter", "name eq 'a'")];
        let mut p = pairs(&query);
        let page = Page::from_request(
            &key,
            "accounts",
            &mut p,
            Some("$select=name&$filter=name%20eq%20'a'"),
            &prefer("2"),
        )
        .unwrap();
        assert_eq!((page.skip, page.size), (0, 2));
        let mut rows = vec![1, 2, 3];
        let link = page
            .finish(&mut rows, None, &key, "http://h/api/data/v9.2")
            .unwrap();
        assert_eq!(rows, [1, 2]);
        let token = link.rsplit_once("$skiptoken=").unwrap().1.to_owned();
        assert!(link.starts_with(
            "http://h/api/data/v9.2/accounts?$select=name&$filter=name%20eq%20'a'&$skiptoken="
        ));

        let again = |route: &str, q: &[(&str, &str)], token: &str, key: &PageKey| {
            let mut p = pairs(q);
            p.push((SKIP_TOKEN.into(), token.into()));
            Page::from_request(key, route, &mut p, None, &HeaderMap::new()).map(|p| p.skip)
        };
        assert_eq!(again("accounts", &query, &token, &key).unwrap(), 2);
        assert!(again("contacts", &query, &token, &key).is_err());
        assert!(again("accounts", &[("$select", "name")], &token, &key).is_err());
        assert!(again("accounts", &query, &token, &PageKey::random()).is_err());
        for i in 0..token.len() {
            let mut altered = token.clone().into_bytes();
            altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            let e = again("accounts", &query, &altered, &key).unwrap_err();
            assert!(
                e.message.contains("$skiptoken is not valid"),
                "{}",
                e.message
            );
        }
    }

    /// The last page has no link; `$top` ends paging where it says; a page size over 5,000 is 5,000 and
    /// a malformed one is refused.
    #[test]
    fn page_bounds() {
        let key = PageKey::random();
        let page = Page::from_request(&key, "a", &mut Vec::new(), None, &prefer("3")).unwrap();
        let mut rows = vec![1, 2, 3];
        assert!(page.finish(&mut rows, None, &key, "b").is_none());
        assert_eq!(page.fetch(Some(2)), 3);
        let mut rows = vec![1, 2, 3];
        assert!(page.finish(&mut rows, Some(2), &key, "b").is_none());
        assert_eq!(rows, [1, 2]);
        let big = Page::from_request(&key, "a", &mut Vec::new(), None, &prefer("9000")).unwrap();
        assert_eq!(big.size, DEFAULT_PAGE_SIZE);
        let default =
            Page::from_request(&key, "a", &mut Vec::new(), None, &HeaderMap::new()).unwrap();
        assert_eq!(default.size, DEFAULT_PAGE_SIZE);
        for bad in ["0", "-1", "x", ""] {
            assert!(Page::from_request(&key, "a", &mut Vec::new(), None, &prefer(bad)).is_err());
        }
    }
}
