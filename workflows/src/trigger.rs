//! Which workflows an operation starts: the message, the table and, for Update, the columns it changed.
//! Must not know how the job is written (the pipeline does that).

use crate::model::{TriggerEvent, WorkflowDef};

/// Whether `def` starts for `message` on `table`; `changed` are the columns an Update set.
pub fn starts(def: &WorkflowDef, message: &str, table: &str, changed: &[&str]) -> bool {
    if !def.enabled || def.table != table {
        return false;
    }
    def.on.iter().any(|event| {
        event.message() == message
            && (*event != TriggerEvent::Update
                || def.attributes.is_empty()
                || def.attributes.iter().any(|a| changed.contains(&a.as_str())))
    })
}
