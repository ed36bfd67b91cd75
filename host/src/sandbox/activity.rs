//! Custom workflow activities in the sandbox: the signatures a 0.2.0 component's `activity-types` answers
//! (checked once, at load) and one run of `execute-activity` on a workflow's execution context.
//!
//! Owns the bounds on what `activity-types` may answer and the [`Sandbox::invoke_activity`] entry point.
//! Must not know workflows (the weft-workflows crate binds arguments and checks outputs against a
//! workflow's steps) nor jobs.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;

use super::bindings::v2;
use super::state::{ContextView, InvocationState};
use super::wit::context::ExecutionContext;
use super::{Call, HostServices, LoadedPlugin, Outcome, RaisedError, Sandbox};

pub use super::bindings::v2::weft::plugin::workflow::{
    ActivitySignature, Argument, ArgumentSpec, ArgumentType, WorkflowContext as WorkflowInfo,
};

/// Most activity types one component may hold, arguments one activity may declare, and the longest name:
/// `activity-types` is read from untrusted code at load.
const MAX_ACTIVITY_TYPES: usize = 256;
const MAX_ARGUMENTS: usize = 64;
const MAX_NAME: usize = 256;

/// One activity run's outcome: the invocation's, and the outputs the activity set (empty on failure).
pub struct ActivityOutcome {
    /// Traces, usage and the result (its changes are what the context's setters recorded).
    pub outcome: Outcome<()>,
    /// The outputs, as the activity returned them.
    pub outputs: Vec<Argument>,
}

/// What `execute-activity` is called with.
pub(super) struct ActivityCall {
    activity_type: String,
    workflow: WorkflowInfo,
    inputs: Vec<Argument>,
}

/// Checks `activity-types`' answer: bounded counts and names, no name twice (among activities, or among
/// an activity's inputs or outputs), a reference target only on an entity-reference argument.
pub(super) fn check_signatures(
    activities: Vec<ActivitySignature>,
) -> Result<Vec<ActivitySignature>, String> {
    if activities.len() > MAX_ACTIVITY_TYPES {
        return Err(format!(
            "named {} activity types; at most {MAX_ACTIVITY_TYPES} are allowed",
            activities.len()
        ));
    }
    let bad_name = |n: &str| n.is_empty() || n.len() > MAX_NAME || n.chars().any(char::is_control);
    let shown = |n: &str| n.chars().take(80).collect::<String>();
    let mut names = std::collections::HashSet::new();
    for a in &activities {
        if bad_name(&a.name) {
            return Err(format!(
                "named an activity type that is empty, over {MAX_NAME} bytes or has control characters: {:?}",
                shown(&a.name)
            ));
        }
        if !names.insert(a.name.as_str()) {
            return Err(format!("named the activity type \"{}\" twice", a.name));
        }
        for (direction, args) in [("input", &a.inputs), ("output", &a.outputs)] {
            if args.len() > MAX_ARGUMENTS {
                return Err(format!(
                    "\"{}\" declares {} {direction}s; at most {MAX_ARGUMENTS} are allowed",
                    a.name,
                    args.len()
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for arg in args.iter() {
                if bad_name(&arg.name) {
                    return Err(format!(
                        "\"{}\" declares an {direction} whose name is empty, over {MAX_NAME} bytes or has \
                         control characters: {:?}",
                        a.name,
                        shown(&arg.name)
                    ));
                }
                if !seen.insert(arg.name.as_str()) {
                    return Err(format!(
                        "\"{}\" declares the {direction} \"{}\" twice",
                        a.name, arg.name
                    ));
                }
                if arg.reference_target.is_some() && arg.type_ != ArgumentType::EntityReference {
                    return Err(format!(
                        "\"{}\": the {direction} \"{}\" has a reference target but is not an entity reference",
                        a.name, arg.name
                    ));
                }
            }
        }
    }
    Ok(activities)
}

/// Approximate bytes of returned arguments, counted against the return quota with the context changes.
pub(super) fn arguments_bytes(args: &[Argument]) -> usize {
    args.iter()
        .map(|a| a.name.len() + 16 + super::state::value_bytes(&a.value))
        .sum()
}

/// Runs `execute-activity` on the invocation's context, lent as a borrowed `execution-context`.
pub(super) fn call(
    pre: &v2::PluginPre<InvocationState>,
    store: &mut Store<InvocationState>,
    call: ActivityCall,
) -> wasmtime::Result<Result<Vec<Argument>, RaisedError>> {
    let view = store.data_mut().table.push(ContextView { level: 0 })?;
    let instance = pre.instantiate(&mut *store)?;
    let raised = instance.call_execute_activity(
        &mut *store,
        &call.activity_type,
        view,
        &call.workflow,
        &call.inputs,
    )?;
    Ok(raised.map_err(|e| RaisedError {
        message: e.message,
        status: e.status as u8,
        error_code: e.error_code,
    }))
}

impl Sandbox {
    /// Runs the activity type `activity_type` of `plugin` once on a workflow's `context`, with `inputs`
    /// (every declared input; `null` when unbound), in a fresh store with the usual limits, stopped at
    /// `deadline` when that comes first. An unknown activity type is refused without running anything.
    #[allow(clippy::too_many_arguments)]
    pub fn invoke_activity(
        &self,
        plugin: &LoadedPlugin,
        activity_type: &str,
        context: Arc<ExecutionContext>,
        workflow: WorkflowInfo,
        inputs: Vec<Argument>,
        services: &mut dyn HostServices,
        deadline: Option<Instant>,
    ) -> ActivityOutcome {
        if !plugin
            .activity_types()
            .iter()
            .any(|a| a.name == activity_type)
        {
            let held: Vec<&str> = plugin
                .activity_types()
                .iter()
                .map(|a| a.name.as_str())
                .collect();
            let why = format!(
                "plug-in \"{}\" holds no activity type \"{activity_type}\" (it holds {}){}",
                plugin.name(),
                if held.is_empty() {
                    "none".into()
                } else {
                    held.join(", ")
                },
                crate::suggest::did_you_mean(activity_type, held.iter().copied())
            );
            return ActivityOutcome {
                outcome: self.refused(
                    plugin,
                    Instant::now(),
                    super::FailureKind::InvalidComponent,
                    why,
                ),
                outputs: Vec::new(),
            };
        }
        let call = Call::Activity(ActivityCall {
            activity_type: activity_type.to_owned(),
            workflow,
            inputs,
        });
        let (outcome, outputs) =
            self.run_call(plugin, context, None, None, services, deadline, call);
        ActivityOutcome { outcome, outputs }
    }
}
