//! # weft-workflows
//!
//! Background workflows, as Dataverse's classic processes (category 0 Workflow, mode 0 Background): the
//! definition model, its validation and the interpreter that runs one for one event. Each run is a system
//! job of the asynchronous service (operation type 10, Workflow); the host queues it in the operation's
//! transaction, and its job runner drives [`Run`] through a [`RunHost`] that reaches the store and the
//! sandbox.
//!
//! # Layout
//! - [`model`]: the declaration (`[[workflow]]` in weft.toml): trigger, run-as, steps, bindings.
//! - [`validate`]: checks against tables and activity signatures ([`Catalog`]), typed constants.
//! - [`run`]: the interpreter ([`Run`], [`RunHost`], [`Finish`], [`StepFailure`]).
//! - [`trigger`]: which workflows an operation starts.
//!
//! Must not: touch the store, the sandbox or job states itself (the host implements [`Catalog`] and
//! [`RunHost`] and maps the outcome to the job).
//!
//! # Supported Dataverse step types
//! Check Condition (with Otherwise), Create Record, Update Record (the workflow's record or a row created
//! earlier), Stop Workflow (Succeeded or Canceled) and custom workflow activities. Not yet: Wait
//! conditions and timeouts, Send Email, Assign Record, Change Status, child workflows, Perform Action,
//! dynamic values from related rows, real-time (synchronous) workflows.

pub mod model;
pub mod run;
pub mod trigger;
pub mod validate;

pub use model::{
    Binding, Condition, Constant, Operator, RunAs, Step, StopStatus, TriggerEvent, WorkflowDef,
};
pub use run::{Finish, Retry, Run, RunHost, StepFailure};
pub use trigger::starts;
pub use validate::{ArgumentSpec, Catalog, Kind, Signature, validate};

/// `asyncoperation.operationtype` of a workflow's system job: 10, Workflow.
pub const WORKFLOW_OPERATION_TYPE: i32 = 10;

/// The id of a workflow declared without one: stable across restarts, derived from its name.
pub fn id_for(name: &str) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("weft-workflow\0{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}
