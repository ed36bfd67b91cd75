//! The pipeline's replaceable registration: the loaded plug-ins and the ordered steps, held as one immutable
//! [`Registry`] snapshot behind [`Registries`].
//!
//! Owns the snapshot rule of hot replacement (issue 3 point 4): a top-level operation takes the current
//! snapshot once and it, with every child operation its plug-ins issue, runs on that snapshot to the end; a
//! replacement publishes a new snapshot that only operations starting afterwards see. It must not load
//! components or write the store: [`super::Pipeline`] does both before publishing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use uuid::Uuid;
use weft_store::system::PluginAssembly;

use crate::registration::{CustomApiDecl, StepDecl};
use crate::sandbox::LoadedPlugin;

/// A loaded plug-in with the assembly row it came from.
#[derive(Clone)]
pub(crate) struct RegisteredPlugin {
    pub(crate) assembly: PluginAssembly,
    pub(crate) loaded: Arc<LoadedPlugin>,
}

/// One version of the registration, never changed once published.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    /// Plug-in type id → plug-in.
    pub(crate) plugins: HashMap<Uuid, RegisteredPlugin>,
    /// Steps ordered by stage, rank, id (Dataverse breaks rank ties by filter id; weft by step id).
    pub(crate) steps: Vec<StepDecl>,
    /// Declared Custom APIs by unique name.
    pub(crate) custom_apis: HashMap<String, CustomApiDecl>,
    /// Background workflows, validated against the loaded activity types.
    pub(crate) workflows: Vec<weft_workflows::WorkflowDef>,
}

impl Registry {
    /// Restores the steps' execution order after a change.
    pub(crate) fn sort_steps(&mut self) {
        self.steps
            .sort_by_key(|s| (s.def.stage.value(), s.def.rank, s.def.id));
    }
}

/// The current snapshot, and the lock that serializes replacements.
pub(crate) struct Registries {
    current: RwLock<Arc<Registry>>,
    /// Held by a replacement from reading the snapshot to publishing its successor, so two replacements
    /// never lose each other's change. Operations never take it.
    writer: Mutex<()>,
}

impl Registries {
    pub(crate) fn new(registry: Registry) -> Self {
        Registries {
            current: RwLock::new(Arc::new(registry)),
            writer: Mutex::new(()),
        }
    }

    /// The snapshot an operation starting now runs on.
    pub(crate) fn snapshot(&self) -> Arc<Registry> {
        // A poisoned lock still holds a complete snapshot: publishing is a single assignment.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Starts a replacement: the caller holds the guard while it prepares and publishes the next snapshot.
    pub(crate) fn begin(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `next` the snapshot of every operation that starts from now on.
    pub(crate) fn publish(&self, _writer: &MutexGuard<'_, ()>, next: Registry) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_store::system::{EventHandler, InvocationSource, Stage, StepDef, StepMode, StepState};

    fn step(name: &str, rank: i32) -> StepDecl {
        StepDecl {
            def: StepDef {
                id: Uuid::new_v4(),
                name: name.into(),
                message: "Create".into(),
                primary_entity: None,
                stage: Stage::PreOperation,
                mode: StepMode::Synchronous,
                rank,
                filtering_attributes: Vec::new(),
                configuration: None,
                images: Vec::new(),
                state: StepState::Enabled,
                impersonating_user_id: None,
                invocation_source: InvocationSource::Parent,
                async_auto_delete: false,
                event_handler: EventHandler::PluginType(Uuid::nil()),
            },
            secure_configuration: None,
        }
    }

    /// An operation's snapshot keeps the version it started with after a replacement; the next one sees the new.
    #[test]
    fn a_snapshot_outlives_its_replacement() {
        let registries = Registries::new(Registry {
            plugins: HashMap::new(),
            steps: vec![step("old", 1)],
            custom_apis: HashMap::new(),
            workflows: Vec::new(),
        });
        let in_flight = registries.snapshot();
        {
            let writer = registries.begin();
            let mut next = (*registries.snapshot()).clone();
            next.steps[0].def.configuration = Some("new".into());
            registries.publish(&writer, next);
        }
        assert_eq!(in_flight.steps[0].def.configuration, None);
        assert_eq!(
            registries.snapshot().steps[0].def.configuration.as_deref(),
            Some("new")
        );
    }

    /// Changing a rank reorders the steps of the next snapshot.
    #[test]
    fn sort_steps_orders_by_rank() {
        let mut r = Registry {
            plugins: HashMap::new(),
            steps: vec![step("b", 2), step("a", 1)],
            custom_apis: HashMap::new(),
            workflows: Vec::new(),
        };
        r.sort_steps();
        assert_eq!(r.steps[0].def.name, "a");
        r.steps[0].def.rank = 3;
        r.sort_steps();
        assert_eq!(r.steps[0].def.name, "b");
    }
}
