//! Custom API messages in the pipeline: the request check before any stage runs, the stage-30 step that runs
//! the declared plug-in, and the response check after it. (That an Entity-bound API's Target row exists is
//! checked in the transaction by [`super::Inner`], which holds it.)
//!
//! It must not run plug-ins itself ([`super::Inner::run_step`] does) nor touch the store.

use weft_store::system::{
    EventHandler, InvocationSource, Stage as StoreStage, StepDef, StepMode, StepState,
};

use super::PipelineError;
use crate::registration::{Binding, CustomApiDecl, StepDecl};
use crate::sandbox::wit::types::{Parameter, ParameterValue, Value};

/// The primary entity name of an unbound message (Dataverse's `none`).
pub(super) const UNBOUND: &str = "none";

/// Refuses a request whose parameters do not match the declaration: an unknown or repeated parameter, a
/// missing required one, a value of the wrong type, an Entity-bound API's `Target` missing or on another table.
pub(super) fn check_request(
    api: &CustomApiDecl,
    parameters: &[(String, Value)],
) -> Result<(), PipelineError> {
    let invalid = |why: String| {
        Err(PipelineError::Invalid(format!(
            "{}: {why}",
            api.unique_name
        )))
    };
    for (i, (name, value)) in parameters.iter().enumerate() {
        if parameters[..i].iter().any(|(n, _)| n == name) {
            return invalid(format!("the parameter {name} is given twice"));
        }
        if name == "Target"
            && let Binding::Entity(table) = &api.binding
        {
            match value {
                Value::EntityReference(r) if &r.logical_name == table => continue,
                _ => {
                    return invalid(format!(
                        "the parameter Target must be a reference to a `{table}` row"
                    ));
                }
            }
        }
        let Some(declared) = api.request_parameters.iter().find(|p| &p.name == name) else {
            return invalid(format!("the parameter {name} is not declared"));
        };
        if !declared.kind.matches(value) {
            return invalid(format!(
                "the parameter {name} must be of type {:?}",
                declared.kind
            ));
        }
    }
    let given = |name: &str| parameters.iter().any(|(n, _)| n == name);
    if matches!(api.binding, Binding::Entity(_)) && !given("Target") {
        return invalid("the required parameter Target is missing".into());
    }
    if let Some(missing) = api
        .request_parameters
        .iter()
        .find(|p| !p.optional && !given(&p.name))
    {
        return invalid(format!(
            "the required parameter {} is missing",
            missing.name
        ));
    }
    Ok(())
}

/// The declared response properties taken from `output`, in declaration order; why not, when one is
/// missing or of the wrong type.
pub(super) fn check_response(
    api: &CustomApiDecl,
    output: &[Parameter],
) -> Result<Vec<(String, Value)>, String> {
    api.response_properties
        .iter()
        .map(|p| match output.iter().find(|o| o.name == p.name) {
            Some(Parameter {
                value: ParameterValue::Value(v),
                ..
            }) if p.kind.matches(v) => Ok((p.name.clone(), v.clone())),
            Some(_) => Err(format!(
                "the response property {} is not of type {:?}",
                p.name, p.kind
            )),
            None => Err(format!(
                "the plug-in did not set the response property {}",
                p.name
            )),
        })
        .collect()
}

/// The stage-30 step that runs the API's plug-in (never stored: it exists only while the message runs).
pub(super) fn main_step(api: &CustomApiDecl) -> StepDecl {
    StepDecl {
        def: StepDef {
            id: api.id,
            name: api.unique_name.clone(),
            message: api.unique_name.clone(),
            primary_entity: api.binding.table().map(str::to_owned),
            stage: StoreStage::MainOperation,
            mode: StepMode::Synchronous,
            rank: 1,
            filtering_attributes: Vec::new(),
            configuration: None,
            images: Vec::new(),
            state: StepState::Enabled,
            impersonating_user_id: None,
            invocation_source: InvocationSource::Parent,
            async_auto_delete: false,
            event_handler: EventHandler::PluginType(api.plugin_type),
        },
        secure_configuration: None,
    }
}
