//! The `$batch` wire format: a `multipart/mixed` body of `application/http` requests and change sets
//! (nested `multipart/mixed` parts), read into [`Item`]s, and the answer written back in the same shape
//! (`batchresponse_…` / `changesetresponse_…` boundaries, as Dataverse names them).
//!
//! Owns only the syntax: it must not resolve URLs, run requests or know about tables. Every malformed
//! input is a [`BatchSyntaxError`] naming what was wrong and where; nothing here panics on input, and
//! the number of requests is bounded by the caller's limit.

use std::fmt;

/// One request of a batch, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PartRequest {
    /// The part's `Content-ID` (MIME header or the request's own header), if any.
    pub content_id: Option<String>,
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as written: absolute, absolute-path, relative, or `$n…`.
    pub target: String,
    /// The request's headers in order (names as sent).
    pub headers: Headers,
    /// The request body (possibly empty).
    pub body: Vec<u8>,
}

/// A batch item: a request on its own, or a change set.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An `application/http` part.
    Request(PartRequest),
    /// A `multipart/mixed` part: its requests, all or nothing.
    ChangeSet(Vec<PartRequest>),
}

/// Why a batch body cannot be read.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSyntaxError(pub String);

impl fmt::Display for BatchSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(message: impl Into<String>) -> Result<T, BatchSyntaxError> {
    Err(BatchSyntaxError(message.into()))
}

/// The boundary of a `multipart/mixed` content type (`multipart/mixed; boundary=…`, quoted or not).
pub fn boundary(content_type: &str) -> Result<String, BatchSyntaxError> {
    let mut params = content_type.split(';');
    let kind = params.next().unwrap_or("").trim();
    if !kind.eq_ignore_ascii_case("multipart/mixed") {
        return err(format!(
            "a $batch body must be multipart/mixed with a boundary, not '{kind}'"
        ));
    }
    for p in params {
        let Some((name, value)) = p.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("boundary") {
            let value = value.trim().trim_matches('"');
            // RFC 2046: 1 to 70 characters.
            if value.is_empty() || value.len() > 70 {
                return err("the multipart boundary must be 1 to 70 characters");
            }
            return Ok(value.to_owned());
        }
    }
    err("the multipart/mixed content type has no boundary parameter")
}

/// Reads a batch body delimited by `boundary`, with at most `max_requests` requests in all.
pub fn parse(
    body: &[u8],
    boundary: &str,
    max_requests: usize,
) -> Result<Vec<Item>, BatchSyntaxError> {
    let mut items = Vec::new();
    let mut count = 0;
    for (index, part) in split(body, boundary)?.into_iter().enumerate() {
        let (headers, content) = mime_part(part, index)?;
        let content_type = find(&headers, "Content-Type").unwrap_or("");
        if content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/mixed")
        {
            let inner = boundary_of_changeset(content_type, index)?;
            let mut requests = Vec::new();
            for (n, part) in split(content, &inner)?.into_iter().enumerate() {
                let (headers, content) = mime_part(part, n)?;
                let kind = find(&headers, "Content-Type").unwrap_or("");
                if kind
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/")
                {
                    return err("a change set cannot contain another change set");
                }
                count += 1;
                if count > max_requests {
                    return err(format!("a batch holds at most {max_requests} requests"));
                }
                requests.push(http_request(&headers, content, kind)?);
            }
            if requests.is_empty() {
                return err(format!("the change set in part {} is empty", index + 1));
            }
            items.push(Item::ChangeSet(requests));
        } else {
            count += 1;
            if count > max_requests {
                return err(format!("a batch holds at most {max_requests} requests"));
            }
            items.push(Item::Request(http_request(
                &headers,
                content,
                content_type,
            )?));
        }
    }
    Ok(items)
}

fn boundary_of_changeset(content_type: &str, index: usize) -> Result<String, BatchSyntaxError> {
    boundary(content_type)
        .map_err(|e| BatchSyntaxError(format!("part {} (a change set): {e}", index + 1)))
}

/// The parts between `--boundary` lines (the preamble before the first and anything after the closing
/// `--boundary--` are ignored, as RFC 2046 says). Line ends may be CRLF or LF.
fn split<'b>(body: &'b [u8], boundary: &str) -> Result<Vec<&'b [u8]>, BatchSyntaxError> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut line_start = 0;
    let mut closed = false;
    while line_start <= body.len() {
        let line_end = body[line_start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |p| line_start + p);
        let line = trim_cr(&body[line_start..line_end]);
        if let Some(rest) = line.strip_prefix(delimiter) {
            let rest = trim_trailing_space(rest);
            if rest.is_empty() || rest == b"--" {
                if let Some(s) = start {
                    // The line break before a delimiter belongs to the delimiter.
                    parts.push(strip_final_newline(&body[s..line_start]));
                }
                if rest == b"--" {
                    closed = true;
                    break;
                }
                start = Some((line_end + 1).min(body.len()));
            }
        }
        line_start = line_end + 1;
    }
    if start.is_none() {
        return err(format!("no '--{boundary}' delimiter line in the body"));
    }
    if !closed {
        return err(format!(
            "the body does not end with the closing '--{boundary}--' line"
        ));
    }
    Ok(parts)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_trailing_space(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |p| p + 1);
    &s[..end]
}

fn strip_final_newline(s: &[u8]) -> &[u8] {
    let s = s.strip_suffix(b"\n").unwrap_or(s);
    s.strip_suffix(b"\r").unwrap_or(s)
}

/// Header lines in order, names as sent.
type Headers = Vec<(String, String)>;

/// A header block (lines up to the first empty one) and what follows it.
fn headers_and_rest(part: &[u8]) -> Result<(Headers, &[u8]), String> {
    let mut headers = Vec::new();
    let mut pos = 0;
    loop {
        let end = part[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(part.len(), |p| pos + p);
        let line = trim_cr(&part[pos..end]);
        let next = (end + 1).min(part.len());
        if line.is_empty() {
            return Ok((headers, &part[next..]));
        }
        let line =
            std::str::from_utf8(line).map_err(|_| "a header line is not UTF-8".to_owned())?;
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("'{line}' is not a header line (name: value)"));
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
        if end >= part.len() {
            return Ok((headers, &part[part.len()..]));
        }
        pos = next;
    }
}

fn mime_part(part: &[u8], index: usize) -> Result<(Headers, &[u8]), BatchSyntaxError> {
    headers_and_rest(part).map_err(|e| BatchSyntaxError(format!("part {}: {e}", index + 1)))
}

fn find<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// An `application/http` part: the MIME headers, then the request line, its headers and its body.
fn http_request(
    mime: &[(String, String)],
    content: &[u8],
    content_type: &str,
) -> Result<PartRequest, BatchSyntaxError> {
    let kind = content_type.split(';').next().unwrap_or("").trim();
    if !kind.eq_ignore_ascii_case("application/http") {
        return err(format!(
            "a batch part must be application/http or a multipart/mixed change set, not '{kind}'"
        ));
    }
    // Skip blank lines some writers put before the request line.
    let mut content = content;
    while let Some(rest) = content
        .strip_prefix(b"\r\n")
        .or_else(|| content.strip_prefix(b"\n"))
    {
        content = rest;
    }
    let line_end = content
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(content.len());
    let line = std::str::from_utf8(trim_cr(&content[..line_end]))
        .map_err(|_| BatchSyntaxError("a request line is not UTF-8".into()))?;
    let mut words = line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return err(format!(
            "'{line}' is not a request line (METHOD URL HTTP/1.1)"
        ));
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return err(format!("'{method}' is not an HTTP method"));
    }
    let rest = &content[(line_end + 1).min(content.len())..];
    let (headers, body) =
        headers_and_rest(rest).map_err(|e| BatchSyntaxError(format!("{method} {target}: {e}")))?;
    let content_id = find(mime, "Content-ID")
        .or_else(|| find(&headers, "Content-ID"))
        .map(str::to_owned);
    Ok(PartRequest {
        content_id,
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body: body.to_vec(),
    })
}

/// One answer to write: the part's `Content-ID`, the status and its headers and body.
pub struct PartResponse {
    /// Echoed from the request.
    pub content_id: Option<String>,
    /// HTTP status.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

/// An answered batch item.
pub enum Answer {
    /// A request's answer.
    Single(PartResponse),
    /// A committed change set's answers.
    ChangeSet(Vec<PartResponse>),
}

/// Writes `answers` as a `multipart/mixed` body delimited by `boundary`.
pub fn write(
    answers: &[Answer],
    boundary: &str,
    changeset_boundary: &dyn Fn() -> String,
) -> Vec<u8> {
    let mut out = Vec::new();
    for answer in answers {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match answer {
            Answer::Single(r) => write_part(&mut out, r),
            Answer::ChangeSet(responses) => {
                let inner = changeset_boundary();
                out.extend_from_slice(
                    format!("Content-Type: multipart/mixed; boundary={inner}\r\n\r\n").as_bytes(),
                );
                for r in responses {
                    out.extend_from_slice(format!("--{inner}\r\n").as_bytes());
                    write_part(&mut out, r);
                }
                out.extend_from_slice(format!("--{inner}--\r\n").as_bytes());
            }
        }
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn write_part(out: &mut Vec<u8>, r: &PartResponse) {
    out.extend_from_slice(
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n",
    );
    if let Some(id) = &r.content_id {
        out.extend_from_slice(format!("Content-ID: {id}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("\r\nHTTP/1.1 {} {}\r\n", r.status, r.reason).as_bytes());
    for (name, value) in &r.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&r.body);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape dynamics-web-api 2.5.0 sends: a change set with Content-IDs, then a GET.
    const BODY: &str = "\r\n--dwa_batch_1\r\nContent-Type: multipart/mixed;boundary=changeset_2\r\n\r\n\
        --changeset_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 100001\r\n\r\n\
        POST https://h/api/data/v9.2/accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"name\":\"A\"}\r\n\
        --changeset_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 100002\r\n\r\n\
        PATCH $100001 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"name\":\"B\"}\r\n--changeset_2--\r\n\
        --dwa_batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
        GET https://h/api/data/v9.2/accounts?$select=name HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n--dwa_batch_1--\r\n";

    #[test]
    fn reads_change_sets_and_requests() {
        let items = parse(BODY.as_bytes(), "dwa_batch_1", 10).unwrap();
        let [Item::ChangeSet(set), Item::Request(get)] = items.as_slice() else {
            panic!("{items:?}")
        };
        assert_eq!(set.len(), 2);
        assert_eq!(set[0].content_id.as_deref(), Some("100001"));
        assert_eq!(set[0].method, "POST");
        assert_eq!(set[0].body, br#"{"name":"A"}"#);
        assert_eq!(set[1].target, "$100001");
        assert_eq!(get.method, "GET");
        assert_eq!(get.target, "https://h/api/data/v9.2/accounts?$select=name");
        assert!(
            get.body.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&get.body)
        );
    }

    #[test]
    fn bad_bodies_are_named() {
        for (body, boundary, max, says) in [
            (
                "--b\r\nContent-Type: application/http\r\n\r\nGET x HTTP/1.1\r\n\r\n",
                "b",
                10,
                "closing",
            ),
            ("no delimiter", "b", 10, "no '--b'"),
            ("--b--\r\n", "b", 10, "no '--b'"),
            ("--b\r\n--b--\r\n", "b", 10, "application/http"),
            (
                "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--",
                "b",
                10,
                "application/http",
            ),
            (
                "--b\r\nContent-Type: application/http\r\n\r\nget x\r\n\r\n--b--",
                "b",
                10,
                "HTTP method",
            ),
            (
                "--b\r\nContent-Type: application/http\r\n\r\nGET\r\n\r\n--b--",
                "b",
                10,
                "request line",
            ),
            (
                "--b\r\nContent-Type: application/http\r\n\r\nGET a HTTP/1.1\r\n\r\n\r\n--b\r\nContent-Type: application/http\r\n\r\nGET a HTTP/1.1\r\n\r\n\r\n--b--",
                "b",
                1,
                "at most 1",
            ),
            (
                "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: multipart/mixed; boundary=d\r\n\r\n--d--\r\n--c--\r\n--b--",
                "b",
                10,
                "another change set",
            ),
            (
                "--b\r\nContent-Type: multipart/mixed\r\n\r\n--b--",
                "b",
                10,
                "no boundary",
            ),
        ] {
            let e = parse(body.as_bytes(), boundary, max).unwrap_err();
            assert!(e.0.contains(says), "{body:?}: {e}");
        }
        assert!(boundary("application/json").is_err());
        assert_eq!(
            boundary("multipart/mixed; boundary=\"batch_x\"").unwrap(),
            "batch_x"
        );
    }

    #[test]
    fn answers_nest_change_sets() {
        let ok = |id: &str, status| PartResponse {
            content_id: Some(id.into()),
            status,
            reason: "No Content".into(),
            headers: vec![("OData-Version".into(), "4.0".into())],
            body: Vec::new(),
        };
        let text = write(
            &[
                Answer::ChangeSet(vec![ok("1", 204)]),
                Answer::Single(ok("2", 204)),
            ],
            "batchresponse_x",
            &|| "changesetresponse_y".into(),
        );
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with("--batchresponse_x\r\nContent-Type: multipart/mixed; boundary=changesetresponse_y\r\n\r\n--changesetresponse_y\r\n"), "{text}");
        assert!(
            text.contains("Content-ID: 1\r\n\r\nHTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n")
        );
        assert!(text.ends_with("--changesetresponse_y--\r\n--batchresponse_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nHTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n\r\n\r\n--batchresponse_x--\r\n"), "{text}");
    }
}
