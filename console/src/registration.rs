//! The registration: plug-in assemblies (sha256 of the running component, their types), steps (message,
//! table, stage, mode, rank, enabled, with a toggle) and service endpoints (contract, format, auth type,
//! secrets only as set/unset, the check action).
//!
//! Owns the rendering and the two forms. It must not change registration itself: the toggle and the check
//! go through [`crate::ConsoleHost`], the code behind `sdkmessageprocessingsteps` PATCH and
//! TriggerServiceEndpointCheck. Secret values never reach this module: the store returns flags only.

use std::collections::HashMap;

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use uuid::Uuid;
use weft_store::system::{EventHandler, StepState};

use crate::Console;
use crate::page::{self, Nav};

/// The page's query (the outcome of the last action).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Notice {
    #[serde(default)]
    notice: String,
    #[serde(default)]
    error: String,
}

/// `GET /console/registration`.
pub(crate) async fn show(State(console): State<Console>, Query(n): Query<Notice>) -> Response {
    let read = crate::read(&console, |r| {
        Ok((r.plugin_types()?, r.service_endpoints()?))
    })
    .await;
    let (types, endpoints) = match read {
        Ok(v) => v,
        Err(r) => return r,
    };
    let assemblies = console.host.assemblies();
    let mut steps = console.host.steps();
    steps.sort_by(|a, b| {
        (
            a.message.as_str(),
            a.primary_entity.as_deref(),
            a.stage.value(),
            a.rank,
            a.name.as_str(),
        )
            .cmp(&(
                b.message.as_str(),
                b.primary_entity.as_deref(),
                b.stage.value(),
                b.rank,
                b.name.as_str(),
            ))
    });
    let type_names: HashMap<Uuid, &str> =
        types.iter().map(|t| (t.id, t.type_name.as_str())).collect();
    let endpoint_names: HashMap<Uuid, &str> = endpoints
        .iter()
        .map(|e| (e.def.id, e.def.name.as_str()))
        .collect();
    let flag = |set: bool| if set { "set" } else { "unset" };
    let body = html! {
        h1 { "Registration" }
        (page::notice(Some(n.notice.as_str()), n.error == "1"))
        h2 #plugins { "Plug-in assemblies" }
        table aria-labelledby="plugins" {
            thead { tr { th { "Name" } th { "sha256" } th { "Types" } th { "Component" } } }
            tbody {
                @for a in &assemblies {
                    tr {
                        td { (a.name) }
                        td.mono { (a.sha256.as_deref().unwrap_or("–")) }
                        td { @for t in types.iter().filter(|t| t.assembly_id == a.id) { code { (t.type_name) } " " } }
                        td.mono { (a.component_path) }
                    }
                }
                @if assemblies.is_empty() { tr { td colspan="4" .muted { "No plug-in registered." } } }
            }
        }
        h2 #steps { "Steps" }
        table aria-labelledby="steps" {
            thead { tr { th { "Name" } th { "Message" } th { "Table" } th { "Stage" } th { "Mode" } th { "Rank" } th { "Runs" } th { "Enabled" } } }
            tbody {
                @for s in &steps {
                    @let enabled = s.state == StepState::Enabled;
                    tr data-step=(s.id) {
                        td { (s.name) }
                        td { (s.message) }
                        td { (s.primary_entity.as_deref().unwrap_or("(all)")) }
                        td { (s.stage.value()) " " span.muted { (format!("{:?}", s.stage)) } }
                        td { (s.mode.value()) " " span.muted { (format!("{:?}", s.mode)) } }
                        td.num { (s.rank) }
                        td { @match s.event_handler {
                            EventHandler::PluginType(t) => { code { (type_names.get(&t).copied().unwrap_or("?")) } },
                            EventHandler::ServiceEndpoint(e) => { "endpoint " (endpoint_names.get(&e).copied().unwrap_or("?")) },
                        } }
                        td {
                            form.inline method="post" action={ "/console/registration/steps/" (s.id) } {
                                input type="hidden" name="enabled" value=(if enabled { "0" } else { "1" });
                                span class=(if enabled { "ok" } else { "muted" }) { (if enabled { "Enabled" } else { "Disabled" }) } " "
                                button type="submit" aria-label={ (if enabled { "Disable " } else { "Enable " }) (s.name) } {
                                    (if enabled { "Disable" } else { "Enable" })
                                }
                            }
                        }
                    }
                }
                @if steps.is_empty() { tr { td colspan="8" .muted { "No step registered." } } }
            }
        }
        h2 #endpoints { "Service endpoints" }
        table aria-labelledby="endpoints" {
            thead { tr { th { "Name" } th { "Contract" } th { "Format" } th { "Auth type" } th { "Address" } th { "Secrets" } th { "Check" } } }
            tbody {
                @for e in &endpoints {
                    @let d = &e.def;
                    tr data-endpoint=(d.id) {
                        td { (d.name) }
                        td { (d.contract.value()) " " span.muted { (format!("{:?}", d.contract)) } }
                        td { (d.message_format.value()) " " span.muted { (format!("{:?}", d.message_format)) } }
                        td { (d.auth_type.value()) " " span.muted { (format!("{:?}", d.auth_type)) } }
                        td.mono { (d.url.as_deref().or(d.namespace_address.as_deref()).unwrap_or("–")) @if let Some(p) = &d.path { " " (p) } }
                        td { "SAS key " (flag(e.is_sas_key_set)) ", SAS token " (flag(e.is_sas_token_set)) ", auth value " (flag(e.is_auth_value_set)) }
                        td {
                            form.inline method="post" action={ "/console/registration/endpoints/" (d.id) "/check" } {
                                button type="submit" aria-label={ "Check " (d.name) } { "Check" }
                            }
                        }
                    }
                }
                @if endpoints.is_empty() { tr { td colspan="7" .muted { "No service endpoint registered." } } }
            }
        }
    };
    page::frame_with(
        "Registration",
        Nav::Registration,
        console.host.bus().is_some(),
        body,
    )
    .into_response()
}

fn back(notice: &str, error: bool) -> Response {
    let flag = if error { "&error=1" } else { "" };
    Redirect::to(&format!(
        "/console/registration?notice={}{flag}",
        page::encode(notice)
    ))
    .into_response()
}

/// The toggle's field: `1` enables, `0` disables.
#[derive(Debug, Deserialize)]
pub(crate) struct Toggle {
    enabled: String,
}

/// `POST /console/registration/steps/{id}`.
pub(crate) async fn toggle_step(
    State(console): State<Console>,
    Path(id): Path<String>,
    Form(t): Form<Toggle>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return back(&format!("{id:?} is not a step id (a GUID)"), true);
    };
    let enabled = match t.enabled.as_str() {
        "1" => true,
        "0" => false,
        other => return back(&format!("enabled must be 1 or 0, not {other:?}"), true),
    };
    let name = console
        .host
        .steps()
        .into_iter()
        .find(|s| s.id == id)
        .map_or_else(|| id.to_string(), |s| s.name);
    match console.host.set_step_enabled(id, enabled).await {
        Ok(()) => back(
            &format!(
                "Step {name} {}.",
                if enabled { "enabled" } else { "disabled" }
            ),
            false,
        ),
        Err(e) => back(&e, true),
    }
}

/// `POST /console/registration/endpoints/{id}/check`.
pub(crate) async fn check_endpoint(
    State(console): State<Console>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return back(
            &format!("{id:?} is not a service endpoint id (a GUID)"),
            true,
        );
    };
    match console.host.check_endpoint(id).await {
        Ok(()) => back("The endpoint answered with its credentials.", false),
        Err(e) => back(&format!("Check failed: {e}"), true),
    }
}
