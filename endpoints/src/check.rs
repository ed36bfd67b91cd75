//! TriggerServiceEndpointCheck: prove reachability and auth without delivering a message.
//!
//! Owns the probe request per contract (documented on [`crate::check`]). It must not post a context.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use weft_store::system::Contract;

use crate::endpoint::{Auth, Endpoint};
use crate::error::PostError;
use crate::send::{BATCH_CONTENT_TYPE, execute, sas_token, webhook_url};

pub(crate) async fn check(http: &reqwest::Client, ep: &Endpoint) -> Result<(), PostError> {
    if ep.contract == Contract::Webhook {
        let mut req = http.head(webhook_url(ep)?);
        if let Auth::Headers(hs) = &ep.auth {
            for (n, v) in hs {
                req = req.header(n, v);
            }
        }
        return match execute(ep, req, false, None).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status_code(), Some(401 | 403)) => Err(e),
            Err(e) if e.status_code().is_some() => Ok(()),
            Err(e) => Err(e),
        };
    }
    if ep.is_relay() {
        let req = http
            .head(ep.target())
            .header("ServiceBusAuthorization", sas_token(ep)?);
        return execute(ep, req, true, None).await.map(|_| ());
    }
    let req = http
        .post(format!("{}/messages", ep.target()))
        .header(AUTHORIZATION, sas_token(ep)?)
        .header(CONTENT_TYPE, BATCH_CONTENT_TYPE)
        .body("[]");
    execute(ep, req, false, None).await.map(|_| ())
}
