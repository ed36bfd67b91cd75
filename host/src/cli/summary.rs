//! What `weft up` serves, said once at start-up (on stderr, so stdout's lines stay the listening
//! addresses): the tables, the plug-ins with the sha256 of the component each runs, the steps in
//! execution order and the service endpoints with their ids — the effective registration, runtime
//! changes included. Reads only; never shows a secret or a configuration value.

use crate::runtime::Runtime;
use std::fmt::Write as _;
use weft_store::StoreExt as _;
use weft_store::system::{EventHandler, StepState};

/// The summary's lines.
pub fn startup_summary(runtime: &Runtime) -> anyhow::Result<String> {
    let mut out = String::new();
    let tables = runtime.registration.schema.tables();
    writeln!(out, "tables ({}):", tables.len())?;
    for table in tables {
        writeln!(
            out,
            "  {} ({}), {} attributes",
            table.logical_name,
            table.entity_set_name,
            table.attributes.len()
        )?;
    }
    let assemblies = runtime.pipeline.assemblies();
    writeln!(out, "plug-ins ({}):", assemblies.len())?;
    for assembly in &assemblies {
        let sha = assembly.sha256.as_deref().unwrap_or("?");
        writeln!(out, "  {}  sha256 {sha}", assembly.name)?;
    }
    let endpoints = runtime.store.read(|r| r.service_endpoints())?;
    let steps = runtime.pipeline.steps();
    writeln!(out, "steps ({}), in execution order:", steps.len())?;
    for step in &steps {
        let def = &step.def;
        let handler = match def.event_handler {
            EventHandler::PluginType(id) => runtime.pipeline.plugin(id).map_or_else(
                || format!("plug-in type {id}"),
                |(name, _)| format!("plug-in {name}"),
            ),
            EventHandler::ServiceEndpoint(id) => {
                endpoints.iter().find(|e| e.def.id == id).map_or_else(
                    || format!("endpoint {id}"),
                    |e| format!("endpoint \"{}\"", e.def.name),
                )
            }
        };
        writeln!(
            out,
            "  \"{}\": {} {} stage {} mode {} rank {} -> {handler}{}",
            def.name,
            def.message,
            def.primary_entity.as_deref().unwrap_or("(any table)"),
            def.stage.value(),
            def.mode.value(),
            def.rank,
            if def.state == StepState::Disabled {
                " (disabled)"
            } else {
                ""
            }
        )?;
    }
    writeln!(out, "service endpoints ({}):", endpoints.len())?;
    for endpoint in &endpoints {
        let def = &endpoint.def;
        writeln!(
            out,
            "  \"{}\" {}: contract {:?} ({}), format {}, auth {}",
            def.name,
            def.id,
            def.contract,
            def.contract.value(),
            def.message_format.value(),
            def.auth_type.value()
        )?;
    }
    Ok(out)
}
