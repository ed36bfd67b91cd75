//! Posts each new account to the HTTP(S) API named in the step's unsecure configuration (see README.md).

use weft_sdk::http::Request;
use weft_sdk::{Context, Plugin, PluginError, Services};

/// The plug-in.
pub struct PostAccount;

impl Plugin for PostAccount {
    fn execute(ctx: &mut Context, services: &Services) -> Result<(), PluginError> {
        let url = services
            .unsecure_config()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                PluginError::new(
                    "outbound: the step's unsecure configuration must be the URL to post to",
                )
            })?;
        let name = ctx.target().and_then(|t| t.get_str("name")).unwrap_or("");
        let body = format!(
            "{{\"accountid\":\"{}\",\"name\":{}}}",
            ctx.primary_entity_id(),
            json_string(name)
        );
        let mut request = Request::post(&url, body).header("content-type", "application/json");
        if let Some(key) = services.secure_config() {
            request = request.header("x-api-key", key.trim());
        }
        let answer = services
            .send(&request)
            .map_err(|e| PluginError::new(format!("outbound: {url} did not answer: {e}")))?;
        if !answer.is_success() {
            return Err(PluginError::new(format!(
                "outbound: {url} answered {}: {}",
                answer.status,
                answer.text().chars().take(200).collect::<String>()
            )));
        }
        services.trace(format!("posted account to {url}: {}", answer.status));
        Ok(())
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

weft_sdk::export_plugin!(PostAccount);

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::http::{HttpError, HttpErrorKind, Response};
    use weft_sdk::testing::{ContextBuilder, TestHost};
    use weft_sdk::{Entity, Stage};

    fn created(name: &str) -> Context {
        let mut target = Entity::new("account");
        target.set("name", name);
        ContextBuilder::new("Create", "account")
            .stage(Stage::PostOperation)
            .target(target)
            .build()
    }

    /// The account goes out as JSON with the key header; a 2xx answer is traced.
    #[test]
    fn posts_the_account() {
        let host = TestHost::new()
            .unsecure_config("https://crm.contoso.com/accounts")
            .secure_config("k3y")
            .fake_endpoint("https://crm.contoso.com/", |_| Ok(Response::new(201, "")));
        host.run::<PostAccount>(&mut created("Fourth \"Coffee\""))
            .unwrap();
        let sent = &host.http_requests()[0];
        let body = String::from_utf8(sent.body.clone()).unwrap();
        assert!(body.ends_with(r#""name":"Fourth \"Coffee\""}"#), "{body}");
        assert!(sent.headers.contains(&("x-api-key".into(), "k3y".into())));
        assert_eq!(
            host.traces(),
            ["posted account to https://crm.contoso.com/accounts: 201"]
        );
    }

    /// A 4xx/5xx answer or no answer fails the step with the status or the reason.
    #[test]
    fn failures_fail_the_step() {
        let host = TestHost::new()
            .unsecure_config("https://crm.contoso.com/accounts")
            .fake_endpoint("https://crm.contoso.com/", |_| {
                Ok(Response::new(503, "down"))
            });
        let e = host.run::<PostAccount>(&mut created("x")).unwrap_err();
        assert!(e.message.ends_with("answered 503: down"), "{}", e.message);
        let host = TestHost::new()
            .unsecure_config("https://crm.contoso.com/accounts")
            .fake_endpoint("https://crm.contoso.com/", |_| {
                Err(HttpError::new(HttpErrorKind::Timeout, "no answer in time"))
            });
        let e = host.run::<PostAccount>(&mut created("x")).unwrap_err();
        assert!(e.message.contains("did not answer"), "{}", e.message);
        let e = TestHost::new()
            .run::<PostAccount>(&mut created("x"))
            .unwrap_err();
        assert!(
            e.message.contains("unsecure configuration"),
            "{}",
            e.message
        );
    }
}
