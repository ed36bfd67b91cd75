//! Registration changes while the host runs: the registry the pipeline starts with (the file applied over
//! what runtime changes left in the store), and creating, changing and deleting steps and replacing
//! plug-in components through [`Pipeline`]'s methods.
//!
//! Owns the order of every change: validate, write the system tables in one transaction, then publish a
//! new [`Registry`] snapshot (operations already running finish on the old one, see `registry`). A change
//! that fails validation or the store leaves both the tables and the running registration as they were.
//! It must not run operations nor speak HTTP.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;
use weft_store::system::{
    AssemblyContent, EndpointSecrets, EventHandler, PluginAssembly, PluginType, SecretUpdate,
    ServiceEndpoint,
};
use weft_store::{Change, Store, StoreError, StoreExt, Tx};

use super::registry::{RegisteredPlugin, Registry};
use super::{Pipeline, PipelineError, StepChange};
use crate::registration::{
    ApplyReport, Catalog, CatalogPlugin, EndpointDecl, MESSAGES, RawStep, Registration, StepDecl,
    check_endpoint, image_support, plugin_type_id, step_decl,
};
use crate::sandbox::Sandbox;

const STEP_TABLE: &str = "sdkmessageprocessingstep";
const ENDPOINT_TABLE: &str = "serviceendpoint";

/// Applies `registration` to the store and builds the registry the pipeline starts on: the plug-ins
/// (a component replaced at runtime is loaded from the store, the others from their files) and the steps as
/// stored. A stored step that no longer fits the file (its plug-in, table or message is gone) stops the
/// start with an error naming it, rather than running without it.
pub(super) fn startup_registry(
    store: &Arc<dyn Store>,
    sandbox: &Sandbox,
    registration: &Registration,
) -> Result<(Registry, ApplyReport), PipelineError> {
    let applied = registration.clone();
    let (report, stored_steps, contents, stored_workflows) = store.transact(move |tx| {
        let report = applied.apply(tx)?;
        let stored_workflows = tx.workflows()?;
        let mut steps = Vec::new();
        for s in tx.steps()? {
            let secure_configuration = if s.is_secure_configuration_set {
                tx.step_secure_configuration_for_sandbox(s.def.id)?
            } else {
                None
            };
            steps.push(StepDecl {
                def: s.def,
                secure_configuration,
            });
        }
        let mut contents = HashMap::new();
        for p in &applied.plugins {
            if let Some(c) = tx.plugin_assembly_content(p.assembly.id)? {
                contents.insert(p.assembly.id, c);
            }
        }
        Ok::<_, StoreError>((report, steps, contents, stored_workflows))
    })?;
    let file = &registration.file;
    let mut plugins = HashMap::new();
    for p in &registration.plugins {
        let (loaded, sha256) = match contents.get(&p.assembly.id) {
            Some(c) => (
                sandbox.load(&p.assembly.name, &c.content).map_err(|e| {
                    PipelineError::Invalid(format!(
                        "{file}: plug-in \"{}\": the component replaced at runtime (sha256 {}) no longer \
                         loads: {e}",
                        p.assembly.name, c.sha256
                    ))
                })?,
                Some(c.sha256.clone()),
            ),
            None => (
                sandbox
                    .load_file(&p.assembly.name, &p.path)
                    .map_err(|e| PipelineError::Invalid(format!("{file}: {e}")))?,
                p.assembly.sha256.clone(),
            ),
        };
        let loaded = loaded.with_outbound(Arc::new(p.outbound.clone()));
        let assembly = PluginAssembly {
            sha256,
            ..p.assembly.clone()
        };
        for t in &p.named_types {
            loaded.for_type(&t.type_name).map_err(|e| {
                PipelineError::Invalid(format!(
                    "{file}: a step names plug-in type \"{}\": {e}",
                    t.type_name
                ))
            })?;
        }
        plugins.extend(typed_entries(&assembly, loaded));
    }
    let types = type_rows(&plugins);
    store.transact(move |tx| types.iter().try_for_each(|t| tx.put_plugin_type(t)))?;
    let mut registry = Registry {
        plugins,
        steps: Vec::new(),
        custom_apis: registration
            .custom_apis
            .iter()
            .map(|c| (c.unique_name.clone(), c.clone()))
            .collect(),
        workflows: Vec::new(),
    };
    // One schema for every check, read once.
    let schema = store.schema();
    registry.workflows =
        super::workflow::validated(&registry, &schema, registration, stored_workflows)?;
    for s in stored_steps {
        if let Err(why) = fits(&registry, &schema, &s) {
            return Err(PipelineError::Invalid(format!(
                "{file}: step \"{}\" ({}), registered at runtime, no longer fits: {why}. Declare what it \
                 needs again, start, delete the step (DELETE /api/data/v9.2/sdkmessageprocessingsteps({})), \
                 then remove the declaration",
                s.def.name, s.def.id, s.def.id
            )));
        }
        registry.steps.push(s);
    }
    registry.sort_steps();
    Ok((registry, report))
}

/// The registry entries of one loaded component: its default plug-in type (what a step naming no type
/// runs) and, for a weft:plugin@0.2.0 component, one per type its `plugin-types` names.
fn typed_entries(
    assembly: &PluginAssembly,
    loaded: crate::sandbox::LoadedPlugin,
) -> Vec<(Uuid, RegisteredPlugin)> {
    let entry = |loaded| RegisteredPlugin {
        assembly: assembly.clone(),
        loaded: Arc::new(loaded),
    };
    let mut entries = Vec::new();
    if loaded.contract_version() != "0.1.0" {
        for t in loaded.plugin_types() {
            if let Ok(typed) = loaded.for_type(&t) {
                entries.push((plugin_type_id(&assembly.name, &t), entry(typed)));
            }
        }
    }
    entries.push((
        plugin_type_id(&assembly.name, &assembly.name),
        entry(loaded),
    ));
    entries
}

/// A `plugintype` row per registry entry: what the components' `plugin-types` answered.
fn type_rows<'a>(
    entries: impl IntoIterator<Item = (&'a Uuid, &'a RegisteredPlugin)>,
) -> Vec<PluginType> {
    entries
        .into_iter()
        .map(|(id, p)| PluginType {
            id: *id,
            assembly_id: p.assembly.id,
            type_name: p
                .loaded
                .selected_type()
                .unwrap_or(&p.assembly.name)
                .to_owned(),
        })
        .collect()
}

/// Whether a stored step's references still exist in the registration the host starts with.
fn fits(registry: &Registry, schema: &weft_store::Schema, s: &StepDecl) -> Result<(), String> {
    let d = &s.def;
    if let EventHandler::PluginType(id) = d.event_handler {
        let Some(plugin) = registry.plugins.get(&id) else {
            return Err(format!("its plug-in type {id} is not declared"));
        };
        let types = plugin.loaded.plugin_types();
        if plugin.loaded.selected_type().is_none() && types.len() > 1 {
            return Err(format!(
                "plug-in \"{}\" holds several plug-in types ({}): the step must name one with `type`",
                plugin.assembly.name,
                types.join(", ")
            ));
        }
    }
    if !MESSAGES.contains(&d.message.as_str()) && !registry.custom_apis.contains_key(&d.message) {
        return Err(format!("its message `{}` is not declared", d.message));
    }
    if !d.images.is_empty() && image_support(&d.message).is_none() {
        return Err(format!("message `{}` has no images", d.message));
    }
    if let Some(t) = &d.primary_entity {
        let Some(table) = schema.table(t) else {
            return Err(format!("its table `{t}` is not declared"));
        };
        let attributes = d
            .filtering_attributes
            .iter()
            .chain(d.images.iter().flat_map(|i| &i.attributes));
        for a in attributes {
            if table.attribute(a).is_none() {
                return Err(format!("table `{t}` has no attribute `{a}` any more"));
            }
        }
    }
    Ok(())
}

fn step_not_found(id: Uuid) -> PipelineError {
    PipelineError::Store(StoreError::NotFound {
        table: STEP_TABLE.into(),
        id,
    })
}

impl Pipeline {
    /// Registers a new step, declared as a `[[step]]` of `weft.toml` would be and validated by the same rules
    /// (its plug-in must be loaded, its service endpoint stored, names unique). Persisted in the system
    /// tables, then used by every operation that starts afterwards; it survives restarts (the file does not
    /// declare it, so start-up keeps it). Returns the step as registered.
    pub(crate) fn create_step(&self, raw: RawStep) -> Result<StepDecl, PipelineError> {
        let registries = &self.inner.registries;
        let writer = registries.begin();
        let mut next = (*registries.snapshot()).clone();
        let endpoints = self
            .inner
            .store
            .read(|r| r.service_endpoints())?
            .into_iter()
            .map(|e| (e.def.name, e.def.id))
            .collect();
        let schema = self.inner.store.schema();
        let catalog = Catalog {
            schema: &schema,
            plugins: next
                .plugins
                .iter()
                .filter(|(_, p)| p.loaded.selected_type().is_none())
                .map(|(id, p)| CatalogPlugin {
                    name: p.assembly.name.as_str(),
                    default_type: *id,
                    types: Some(p.loaded.plugin_types()),
                })
                .collect(),
            endpoints,
            custom_apis: next.custom_apis.values().collect(),
        };
        let step = step_decl(raw, &catalog).map_err(PipelineError::Invalid)?;
        if next.steps.iter().any(|s| s.def.id == step.def.id) {
            return Err(PipelineError::Store(StoreError::DuplicateId {
                table: STEP_TABLE.into(),
                id: step.def.id,
            }));
        }
        if let Some(other) = next.steps.iter().find(|s| s.def.name == step.def.name) {
            return Err(PipelineError::Invalid(format!(
                "a step named \"{}\" is already registered ({})",
                other.def.name, other.def.id
            )));
        }
        let def = step.def.clone();
        let secure = step
            .secure_configuration
            .clone()
            .map_or(SecretUpdate::Clear, SecretUpdate::Set);
        self.inner.store.transact(move |tx| {
            if tx.steps()?.iter().any(|s| s.def.id == def.id) {
                // Registered by an earlier run but filtered out of this one: refuse rather than overwrite.
                return Err(StoreError::DuplicateId {
                    table: STEP_TABLE.into(),
                    id: def.id,
                });
            }
            tx.put_step(&def, secure)
        })?;
        next.steps.push(step.clone());
        next.sort_steps();
        registries.publish(&writer, next);
        Ok(step)
    }

    /// Unregisters a step: deleted from the system tables, then no operation that starts afterwards runs
    /// it (running ones finish with it). A step `weft.toml` declares stays deleted across restarts until
    /// the file changes its declaration. System jobs it already queued fail when they run. Returns the
    /// step as it was.
    pub(crate) fn delete_step(&self, id: Uuid) -> Result<StepDecl, PipelineError> {
        let registries = &self.inner.registries;
        let writer = registries.begin();
        let mut next = (*registries.snapshot()).clone();
        let Some(at) = next.steps.iter().position(|s| s.def.id == id) else {
            return Err(step_not_found(id));
        };
        self.inner.store.transact(move |tx| tx.delete_step(id))?;
        let removed = next.steps.remove(at);
        registries.publish(&writer, next);
        Ok(removed)
    }

    /// Changes a step's state, rank and/or unsecure configuration (`None` leaves a field as it is): persisted
    /// in the system tables, then used by every operation that starts afterwards. Operations already running
    /// finish with the step as it was. Returns the step as it now is.
    pub fn update_step(&self, id: Uuid, change: StepChange) -> Result<StepDecl, PipelineError> {
        let registries = &self.inner.registries;
        let writer = registries.begin();
        let mut next = (*registries.snapshot()).clone();
        let Some(step) = next.steps.iter_mut().find(|s| s.def.id == id) else {
            return Err(step_not_found(id));
        };
        if let Some(state) = change.state {
            step.def.state = state;
        }
        if let Some(rank) = change.rank {
            step.def.rank = rank;
        }
        if let Some(configuration) = change.configuration {
            step.def.configuration = configuration;
        }
        let changed = step.clone();
        let def = changed.def.clone();
        self.inner
            .store
            .transact(move |tx| tx.put_step(&def, SecretUpdate::Keep))?;
        next.sort_steps();
        registries.publish(&writer, next);
        Ok(changed)
    }

    /// Replaces the component of the plug-in assembly `name` with `bytes` without a restart: the component
    /// is compiled and checked by the sandbox first (a bad one is refused with the load error and the old one
    /// keeps serving), the bytes and their sha256 are stored with the assembly (so a restart loads them
    /// rather than the file, until the file's component changes), then every operation that starts
    /// afterwards runs the new version while running ones finish on the old. Returns the assembly row.
    pub fn replace_plugin(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<PluginAssembly, PipelineError> {
        let registries = &self.inner.registries;
        let writer = registries.begin();
        let mut next = (*registries.snapshot()).clone();
        let Some(plugin) = next.plugins.values().find(|p| p.assembly.name == name) else {
            return Err(PipelineError::Invalid(format!(
                "no plug-in assembly is named \"{name}\""
            )));
        };
        let old_assembly = plugin.assembly.clone();
        let loaded = self
            .inner
            .sandbox
            .load(name, bytes)
            .map_err(|e| PipelineError::Invalid(format!("plug-in assembly \"{name}\": {e}")))?
            // The new component keeps the assembly's outbound policy (weft.toml's, not the bytes').
            .with_outbound(Arc::clone(plugin.loaded.outbound()));
        // Steps naming a plug-in type keep running it: the new component must still hold it.
        let kept_types: Vec<String> = next
            .plugins
            .values()
            .filter(|p| p.assembly.name == name)
            .filter_map(|p| p.loaded.selected_type().map(str::to_owned))
            .collect();
        let used: Vec<&String> = kept_types
            .iter()
            .filter(|t| {
                let id = plugin_type_id(name, t);
                next.steps
                    .iter()
                    .any(|s| s.def.event_handler == EventHandler::PluginType(id))
            })
            .collect();
        for t in used {
            loaded.for_type(t).map_err(|e| {
                PipelineError::Invalid(format!(
                    "plug-in assembly \"{name}\": a step runs plug-in type \"{t}\": {e}"
                ))
            })?;
        }
        let mut assembly = old_assembly;
        assembly.sha256 = Some(loaded.sha256().to_owned());
        let content = AssemblyContent {
            sha256: loaded.sha256().to_owned(),
            content: bytes.to_vec(),
        };
        let stored = assembly.clone();
        let entries = typed_entries(&assembly, loaded);
        let types = type_rows(entries.iter().map(|(id, p)| (id, p)));
        self.inner.store.transact(move |tx| {
            tx.put_plugin_assembly(&stored)?;
            types.iter().try_for_each(|t| tx.put_plugin_type(t))?;
            tx.put_plugin_assembly_content(stored.id, Some(&content))
        })?;
        next.plugins.retain(|_, p| p.assembly.name != name);
        next.plugins.extend(entries);
        registries.publish(&writer, next);
        Ok(assembly)
    }
}

impl Pipeline {
    /// Follows the other hosts sharing this pipeline's store (PostgreSQL, woken by their NOTIFY): jobs they
    /// commit wake `jobs` (this host's asynchronous service) at once instead of at its next poll, and
    /// registration they change is taken up with [`Pipeline::reload_registration`]. False when the store
    /// has no other hosts (SQLite). The store's listener holds the pipeline weakly (no cycle through the
    /// store it owns).
    pub fn follow_other_hosts(&self, jobs: Option<weft_jobs::Notifier>) -> bool {
        let inner = Arc::downgrade(&self.inner);
        self.inner
            .store
            .watch_changes(Arc::new(move |change| match change {
                Change::Jobs => {
                    if let Some(jobs) = &jobs {
                        jobs.notify();
                    }
                }
                Change::Registration => {
                    if let Some(inner) = inner.upgrade()
                        && let Err(e) = (Pipeline { inner }).reload_registration()
                    {
                        tracing::warn!(error = %e, "cannot take up another host's registration change");
                    }
                }
            }))
    }

    /// Takes up registration another host changed in the shared store: the stored steps replace this host's
    /// (a step this host cannot run — its plug-in, message or table not declared here — is left out with a
    /// warning), a plug-in whose stored component differs from the loaded one is loaded from the store
    /// (one that no longer loads keeps the old version, with a warning), and the stored workflows replace
    /// this host's (one whose definition does not fit here — a table, column or activity type this host
    /// lacks — is left out with a warning, as a step is). Service endpoints are read from the store again
    /// at their next post (the job runner's cache is dropped). Operations already running finish on the
    /// old snapshot. Returns the number of steps now registered.
    pub fn reload_registration(&self) -> Result<usize, PipelineError> {
        self.endpoints_changed();
        let registries = &self.inner.registries;
        let writer = registries.begin();
        let mut next = (*registries.snapshot()).clone();
        // One entry per assembly: its default type's, which carries the assembly row and the outbound policy.
        let assemblies: HashMap<Uuid, RegisteredPlugin> = next
            .plugins
            .values()
            .filter(|p| p.loaded.selected_type().is_none())
            .map(|p| (p.assembly.id, p.clone()))
            .collect();
        let ids: Vec<Uuid> = assemblies.keys().copied().collect();
        let (stored_steps, contents, stored_workflows) = self.inner.store.read(|r| {
            let mut steps = Vec::new();
            for s in r.steps()? {
                let secure_configuration = if s.is_secure_configuration_set {
                    r.step_secure_configuration_for_sandbox(s.def.id)?
                } else {
                    None
                };
                steps.push(StepDecl {
                    def: s.def,
                    secure_configuration,
                });
            }
            let mut contents = Vec::new();
            for id in &ids {
                if let Some(c) = r.plugin_assembly_content(*id)? {
                    contents.push((*id, c));
                }
            }
            Ok::<_, StoreError>((steps, contents, r.workflows()?))
        })?;
        for (id, content) in contents {
            let Some(plugin) = assemblies.get(&id) else {
                continue;
            };
            if plugin.assembly.sha256.as_deref() == Some(content.sha256.as_str()) {
                continue;
            }
            let name = &plugin.assembly.name;
            let loaded = match self.inner.sandbox.load(name, &content.content) {
                Ok(l) => l.with_outbound(Arc::clone(plugin.loaded.outbound())),
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, "another host's component does not load here: the old one keeps serving");
                    continue;
                }
            };
            let assembly = PluginAssembly {
                sha256: Some(content.sha256.clone()),
                ..plugin.assembly.clone()
            };
            next.plugins.retain(|_, p| p.assembly.id != id);
            next.plugins.extend(typed_entries(&assembly, loaded));
        }
        next.steps.clear();
        // One schema for the steps and the workflows, read once.
        let schema = self.inner.store.schema();
        for s in stored_steps {
            match fits(&next, &schema, &s) {
                Ok(()) => next.steps.push(s),
                Err(why) => tracing::warn!(
                    step = %s.def.name,
                    id = %s.def.id,
                    "another host's step cannot run here, left out: {why}"
                ),
            }
        }
        next.sort_steps();
        let catalog = super::workflow::WorkflowCatalog {
            registry: &next,
            schema: &schema,
        };
        let mut workflows = Vec::new();
        for row in stored_workflows {
            let checked = super::workflow::stored_definition(&row)
                .map_err(|e| format!("its stored definition cannot be read: {e}"))
                .and_then(|def| {
                    weft_workflows::validate(&def, &catalog)
                        .map(|()| def)
                        .map_err(|errors| errors.join("; "))
                });
            match checked {
                Ok(def) => workflows.push(def),
                Err(why) => tracing::warn!(
                    workflow = %row.name,
                    id = %row.id,
                    "another host's workflow cannot run here, left out: {why}"
                ),
            }
        }
        next.workflows = workflows;
        let steps = next.steps.len();
        registries.publish(&writer, next);
        Ok(steps)
    }
}

/// Checks `decl` (name unique, postable with the secrets it will have over `stored`) and writes it.
fn put_endpoint(
    tx: &mut dyn Tx,
    decl: &EndpointDecl,
    stored: Option<&EndpointSecrets>,
) -> Result<ServiceEndpoint, PipelineError> {
    let id = decl.def.id;
    if let Some(other) = tx
        .service_endpoints()?
        .into_iter()
        .find(|e| e.def.name == decl.def.name && e.def.id != id)
    {
        return Err(PipelineError::Invalid(format!(
            "a service endpoint named \"{}\" is already registered ({})",
            other.def.name, other.def.id
        )));
    }
    check_endpoint(&decl.def, &decl.secrets, stored).map_err(PipelineError::Invalid)?;
    tx.put_service_endpoint(&decl.def, &decl.secrets)?;
    Ok(tx
        .service_endpoint(id)?
        .ok_or_else(|| endpoint_not_found(id))?)
}

fn endpoint_not_found(id: Uuid) -> StoreError {
    StoreError::NotFound {
        table: ENDPOINT_TABLE.into(),
        id,
    }
}

/// Turns the stored endpoint into the endpoint as it must be after a change; run inside the change's
/// transaction, so concurrent changes of one endpoint never lose each other's columns.
pub(crate) type EndpointChange =
    Box<dyn FnOnce(&ServiceEndpoint) -> Result<EndpointDecl, String> + Send>;

impl Pipeline {
    /// Registers a new service endpoint (id and name unique), checked as the delivery service would check
    /// it before a post. Secrets are stored write-only. It survives restarts (the file does not declare
    /// it). Returns the stored row (secrets as `is…set` flags).
    pub(crate) fn create_endpoint(
        &self,
        decl: EndpointDecl,
    ) -> Result<ServiceEndpoint, PipelineError> {
        let created = self.inner.store.transact(move |tx| {
            let id = decl.def.id;
            if tx.service_endpoint(id)?.is_some() {
                return Err(PipelineError::Store(StoreError::DuplicateId {
                    table: ENDPOINT_TABLE.into(),
                    id,
                }));
            }
            put_endpoint(tx, &decl, None)
        });
        self.endpoints_changed();
        created
    }

    /// Changes service endpoint `id` to what `change` makes of the stored row (secrets it marks Keep stay
    /// as stored), checked with the secrets it will have. Posts queued before the change use the new
    /// values (the job runner's endpoint cache is dropped once the change is durable). Returns the stored
    /// row.
    pub(crate) fn update_endpoint(
        &self,
        id: Uuid,
        change: EndpointChange,
    ) -> Result<ServiceEndpoint, PipelineError> {
        let updated = self.inner.store.transact(move |tx| {
            let stored = tx
                .service_endpoint(id)?
                .ok_or_else(|| endpoint_not_found(id))?;
            let decl = change(&stored).map_err(PipelineError::Invalid)?;
            let secrets = tx.service_endpoint_secrets_for_delivery(id)?;
            put_endpoint(tx, &decl, secrets.as_ref())
        });
        self.endpoints_changed();
        updated
    }

    /// Unregisters a service endpoint; refused while a step uses it. Jobs already queued for it fail when
    /// they run. An endpoint `weft.toml` declares stays deleted across restarts until the file changes its
    /// declaration.
    pub(crate) fn delete_endpoint(&self, id: Uuid) -> Result<(), PipelineError> {
        let deleted = self
            .inner
            .store
            .transact(move |tx| tx.delete_service_endpoint(id));
        self.endpoints_changed();
        if deleted? {
            Ok(())
        } else {
            Err(PipelineError::Store(endpoint_not_found(id)))
        }
    }
}

const WORKFLOW_TABLE: &str = "workflow";

fn workflow_not_found(id: Uuid) -> PipelineError {
    PipelineError::Store(StoreError::NotFound {
        table: WORKFLOW_TABLE.into(),
        id,
    })
}

impl Pipeline {
    /// Registers a background workflow (a `workflows` row of the Web API): checked by weft-workflows'
    /// validation against the tables and the loaded activity types (every problem named, workflow and
    /// step), id and name unique, persisted, then started by every operation that starts afterwards (when
    /// activated). It survives restarts (the file does not declare it). Returns it as registered.
    pub(crate) fn create_workflow(
        &self,
        mut def: weft_workflows::WorkflowDef,
    ) -> Result<weft_workflows::WorkflowDef, PipelineError> {
        let registries = &self.inner.registries;
        let writer = registries.begin();
        let mut next = (*registries.snapshot()).clone();
        let id = *def
            .id
            .get_or_insert_with(|| weft_workflows::id_for(&def.name));
        let schema = self.inner.store.schema();
        let catalog = super::workflow::WorkflowCatalog {
            registry: &next,
            schema: &schema,
        };
        weft_workflows::validate(&def, &catalog)
            .map_err(|errors| PipelineError::Invalid(errors.join("; ")))?;
        if next.workflows.iter().any(|w| w.id == Some(id)) {
            return Err(PipelineError::Store(StoreError::DuplicateId {
                table: WORKFLOW_TABLE.into(),
                id,
            }));
        }
        if let Some(other) = next.workflows.iter().find(|w| w.name == def.name) {
            return Err(PipelineError::Invalid(format!(
                "a workflow named \"{}\" is already registered ({})",
                other.name,
                other.id.unwrap_or_default()
            )));
        }
        let row = crate::registration::stored_workflow(&def);
        self.inner.store.transact(move |tx| {
            if tx.workflows()?.iter().any(|w| w.id == row.id) {
                return Err(StoreError::DuplicateId {
                    table: WORKFLOW_TABLE.into(),
                    id: row.id,
                });
            }
            tx.put_workflow(&row)
        })?;
        next.workflows.push(def.clone());
        registries.publish(&writer, next);
        Ok(def)
    }

    /// Activates (statecode 1) or deactivates (0, Draft) a workflow, as Dataverse's SetState on a
    /// `workflow`: persisted, then only operations starting afterwards see it. A deactivated workflow
    /// starts no new run; its system jobs already queued or running finish with its definition. Returns
    /// it as it now is.
    pub(crate) fn set_workflow_state(
        &self,
        id: Uuid,
        activated: bool,
    ) -> Result<weft_workflows::WorkflowDef, PipelineError> {
        let registries = &self.inner.registries;
        let writer = registries.begin();
        let mut next = (*registries.snapshot()).clone();
        let Some(def) = next.workflows.iter_mut().find(|w| w.id == Some(id)) else {
            return Err(workflow_not_found(id));
        };
        def.enabled = activated;
        let changed = def.clone();
        let row = crate::registration::stored_workflow(&changed);
        self.inner.store.transact(move |tx| tx.put_workflow(&row))?;
        registries.publish(&writer, next);
        Ok(changed)
    }

    /// Replaces the definition of a Draft workflow (`def.id` names it), checked as a new one is; an
    /// Activated workflow is refused (deactivate it first, as Dataverse requires). Persisted, then used by
    /// operations starting afterwards. Returns it as registered.
    pub(crate) fn update_workflow(
        &self,
        def: weft_workflows::WorkflowDef,
    ) -> Result<weft_workflows::WorkflowDef, PipelineError> {
        let registries = &self.inner.registries;
        let writer = registries.begin();
        let mut next = (*registries.snapshot()).clone();
        let id = def.id.unwrap_or_default();
        let Some(at) = next.workflows.iter().position(|w| w.id == Some(id)) else {
            return Err(workflow_not_found(id));
        };
        // Checked again under the writer lock: another request may have activated it meanwhile.
        if next.workflows[at].enabled {
            return Err(PipelineError::Invalid(format!(
                "Workflow \"{}\" is Activated: its definition cannot be changed. Deactivate it first \
                 (PATCH statecode 0)",
                next.workflows[at].name
            )));
        }
        let schema = self.inner.store.schema();
        let catalog = super::workflow::WorkflowCatalog {
            registry: &next,
            schema: &schema,
        };
        weft_workflows::validate(&def, &catalog)
            .map_err(|errors| PipelineError::Invalid(errors.join("; ")))?;
        if let Some(other) = next
            .workflows
            .iter()
            .find(|w| w.name == def.name && w.id != Some(id))
        {
            return Err(PipelineError::Invalid(format!(
                "a workflow named \"{}\" is already registered ({})",
                other.name,
                other.id.unwrap_or_default()
            )));
        }
        let row = crate::registration::stored_workflow(&def);
        self.inner.store.transact(move |tx| tx.put_workflow(&row))?;
        next.workflows[at] = def.clone();
        registries.publish(&writer, next);
        Ok(def)
    }

    /// Unregisters a Draft workflow; an activated one is refused, as Dataverse refuses deleting an active
    /// workflow definition. A workflow `weft.toml` declares stays deleted across restarts until the file
    /// changes its declaration. Its system jobs still queued fail when they run (the definition is gone),
    /// as a deleted step's do. Returns it as it was.
    pub(crate) fn delete_workflow(
        &self,
        id: Uuid,
    ) -> Result<weft_workflows::WorkflowDef, PipelineError> {
        let registries = &self.inner.registries;
        let writer = registries.begin();
        let mut next = (*registries.snapshot()).clone();
        let Some(at) = next.workflows.iter().position(|w| w.id == Some(id)) else {
            return Err(workflow_not_found(id));
        };
        if next.workflows[at].enabled {
            return Err(PipelineError::Invalid(format!(
                "Cannot delete an active workflow definition: deactivate workflow \"{}\" first \
                 (PATCH statecode 0)",
                next.workflows[at].name
            )));
        }
        self.inner
            .store
            .transact(move |tx| tx.delete_workflow(id))?;
        let removed = next.workflows.remove(at);
        registries.publish(&writer, next);
        Ok(removed)
    }
}
