//! The web console's view of this server ([`weft_console::ConsoleHost`]): the store, the running
//! registration, the embedded bus (when `weft up` started one), and the two actions whose code lives with the Web API — a step's enable/disable (the
//! `sdkmessageprocessingsteps` PATCH) and TriggerServiceEndpointCheck.
//!
//! Owns nothing but the adaptation; it must not add rules of its own, so the console and the API can
//! never disagree about what an action does.

use std::sync::Arc;

use uuid::Uuid;
use weft_console::{ConsoleHost, HostFuture};
use weft_store::Store;
use weft_store::system::{PluginAssembly, StepDef, StepState};

use super::system::{self, Checker};
use crate::pipeline::StepChange;
use crate::runtime::Runtime;

/// A running server as the console sees it.
pub(super) struct Bridge {
    pub(super) runtime: Arc<Runtime>,
    pub(super) checker: Checker,
}

impl ConsoleHost for Bridge {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.runtime.store)
    }

    fn assemblies(&self) -> Vec<PluginAssembly> {
        self.runtime.pipeline.assemblies()
    }

    fn steps(&self) -> Vec<StepDef> {
        self.runtime
            .pipeline
            .steps()
            .into_iter()
            .map(|s| s.def)
            .collect()
    }

    fn set_step_enabled(&self, id: Uuid, enabled: bool) -> HostFuture<'_, Result<(), String>> {
        let pipeline = self.runtime.pipeline.clone();
        let change = StepChange {
            state: Some(if enabled {
                StepState::Enabled
            } else {
                StepState::Disabled
            }),
            ..StepChange::default()
        };
        Box::pin(async move {
            super::blocking(move || pipeline.update_step(id, change))
                .await
                .map(|_| ())
                .map_err(|e| e.message)
        })
    }

    fn bus(&self) -> Option<Arc<weft_bus::server::Bus>> {
        self.runtime.bus()
    }

    fn check_endpoint(&self, id: Uuid) -> HostFuture<'_, Result<(), String>> {
        Box::pin(async move {
            system::check_endpoint(&self.runtime, &self.checker, id)
                .await
                .map_err(|e| e.message)
        })
    }
}
