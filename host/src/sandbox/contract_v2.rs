//! The host side of `weft:plugin@0.2.0`'s imports: the `execution-context`
//! resource a plug-in reads on demand and changes through setters, and the
//! 0.2.0 versions of the services (the same services as 0.1.0's, over the same
//! [`HostServices`](super::HostServices)).
//!
//! The context itself stays the 0.1.0 record the pipeline builds (shared,
//! read-only); the setters record [`ContextChanges`] exactly as 0.1.0's
//! returned value did, so the pipeline applies them with the same stage rules.
//! Must not hold per-invocation state of its own: everything lives in
//! [`InvocationState`].

use super::bindings::v2::weft::plugin::{
    configuration, context, notification_service, organization_service, tracing, workflow,
};
use super::state::{AttributeChange, ContextView, InvocationState};
use super::wit::context::{
    ContextChanges, ContextFrame, IsolationMode as IsolationModeV1, Mode as ModeV1,
    Stage as StageV1,
};
use super::wit::organization_service as org_v1;
use super::wit::types::{
    Attribute, Entity, EntityCollection, Guid, Image, Parameter, ParameterValue, Value,
};
use super::wit::types::{Parameters, ServiceError};
use context::Collection;
use wasmtime::component::Resource;

impl InvocationState {
    /// The frame `view` reads: the invocation's own or one of its ancestors.
    fn frame_of(&self, view: &Resource<ContextView>) -> wasmtime::Result<&ContextFrame> {
        let level = self.table.get(view)?.level;
        Ok(match level {
            0 => &self.context.frame,
            n => &self.context.parents[n - 1],
        })
    }

    /// A collection as `view` sees it: with the changes made so far for the
    /// invocation's own context (noted `set-input-attribute` calls folded in
    /// first, so every read of InputParameters sees them).
    fn collection(
        &mut self,
        view: &Resource<ContextView>,
        which: Collection,
    ) -> wasmtime::Result<&Parameters> {
        if matches!(which, Collection::Input) {
            self.settle_input();
        }
        let level = self.table.get(view)?.level;
        let frame = self.frame_of(view)?;
        let (original, changed) = match which {
            Collection::Input => (&frame.input_parameters, &self.changes.input_parameters),
            Collection::Output => (&frame.output_parameters, &self.changes.output_parameters),
            Collection::Shared => (&frame.shared_variables, &self.changes.shared_variables),
        };
        Ok(match changed {
            Some(changed) if level == 0 => changed,
            _ => original,
        })
    }

    fn parameter(
        &mut self,
        view: &Resource<ContextView>,
        which: Collection,
        name: &str,
    ) -> wasmtime::Result<Option<ParameterValue>> {
        Ok(self
            .collection(view, which)?
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.clone()))
    }

    /// Records one setter call. A parent context's setters change nothing that
    /// leaves the invocation (Dataverse ignores them too), so they are dropped.
    /// Every call counts against the return quota, so a loop of setters cannot
    /// grow host memory past it.
    fn set(
        &mut self,
        view: &Resource<ContextView>,
        which: Collection,
        name: String,
        value: Option<ParameterValue>,
    ) -> wasmtime::Result<()> {
        self.count_set(&name, value.as_ref())?;
        if self.table.get(view)?.level != 0 {
            return Ok(());
        }
        self.settle_input();
        let frame = &self.context.frame;
        let (original, changed) = match which {
            Collection::Input => (&frame.input_parameters, &mut self.changes.input_parameters),
            Collection::Output => (
                &frame.output_parameters,
                &mut self.changes.output_parameters,
            ),
            Collection::Shared => (&frame.shared_variables, &mut self.changes.shared_variables),
        };
        let params = changed.get_or_insert_with(|| original.clone());
        match (params.iter().position(|p| p.name == name), value) {
            (Some(i), Some(value)) => params[i].value = value,
            (Some(i), None) => {
                params.remove(i);
            }
            (None, Some(value)) => params.push(Parameter { name, value }),
            (None, None) => {}
        }
        Ok(())
    }

    /// Records one `set-input-attribute` call: the attribute of the entity the
    /// input parameter holds, changed in place, appended or removed — what
    /// [`InvocationState::set`] with the whole entity changed this way records.
    /// Counts the attribute against the return quota.
    ///
    /// While InputParameters are otherwise unchanged the change is only noted
    /// (see [`InvocationState::settle_input`]): copying the whole collection to
    /// change one attribute of a 1 KB Target was a tenth of a step's cost, and
    /// when the invocation holds the only reference to its context the copy is
    /// never needed.
    fn set_attribute(
        &mut self,
        view: &Resource<ContextView>,
        parameter: &str,
        attribute: String,
        value: Option<Value>,
    ) -> wasmtime::Result<()> {
        self.count_set_attribute(parameter, &attribute, value.as_ref())?;
        if self.table.get(view)?.level != 0 {
            return Ok(());
        }
        match &mut self.changes.input_parameters {
            Some(params) => patch_entity(params, parameter, attribute, value),
            // Absent, or not an entity: nothing to change (and the collection is not marked changed).
            None if holds_entity(&self.context.frame.input_parameters, parameter) => {
                self.attribute_changes.push(AttributeChange {
                    parameter: parameter.to_owned(),
                    attribute,
                    value,
                });
            }
            None => {}
        }
        Ok(())
    }
}

/// Whether `parameter` is present in `params` and holds an entity.
fn holds_entity(params: &Parameters, parameter: &str) -> bool {
    params
        .iter()
        .any(|p| p.name == parameter && matches!(p.value, ParameterValue::Entity(_)))
}

/// Sets (`Some`), appends or removes (`None`) one attribute of the entity the
/// first parameter named `parameter` holds; nothing when it holds none.
pub(super) fn patch_entity(
    params: &mut Parameters,
    parameter: &str,
    attribute: String,
    value: Option<Value>,
) {
    let Some(ParameterValue::Entity(entity)) = params
        .iter_mut()
        .find(|p| p.name == parameter)
        .map(|p| &mut p.value)
    else {
        return;
    };
    let at = entity.attributes.iter().position(|a| a.name == attribute);
    match (at, value) {
        (Some(i), Some(value)) => entity.attributes[i].value = value,
        (Some(i), None) => {
            entity.attributes.remove(i);
        }
        (None, Some(value)) => entity.attributes.push(Attribute {
            name: attribute,
            value,
        }),
        (None, None) => {}
    }
}

fn image(images: &[Image], alias: &str) -> Option<Entity> {
    images
        .iter()
        .find(|i| i.alias == alias)
        .map(|i| i.entity.clone())
}

fn stage(s: StageV1) -> context::Stage {
    match s {
        StageV1::PreValidation => context::Stage::PreValidation,
        StageV1::PreOperation => context::Stage::PreOperation,
        StageV1::MainOperation => context::Stage::MainOperation,
        StageV1::PostOperation => context::Stage::PostOperation,
    }
}

fn mode(m: ModeV1) -> context::Mode {
    match m {
        ModeV1::Synchronous => context::Mode::Synchronous,
        ModeV1::Asynchronous => context::Mode::Asynchronous,
    }
}

/// 0.1.0's frame as 0.2.0's record (the same fields), with `changes` in place
/// of the collections they replace.
fn frame(f: &ContextFrame, changes: Option<&ContextChanges>) -> context::ContextFrame {
    let pick = |original: &Parameters, changed: Option<&Option<Parameters>>| {
        changed.and_then(Option::as_ref).unwrap_or(original).clone()
    };
    context::ContextFrame {
        message_name: f.message_name.clone(),
        primary_entity_name: f.primary_entity_name.clone(),
        secondary_entity_name: f.secondary_entity_name.clone(),
        primary_entity_id: f.primary_entity_id,
        stage: stage(f.stage),
        mode: mode(f.mode),
        depth: f.depth,
        user_id: f.user_id,
        initiating_user_id: f.initiating_user_id,
        initiating_user_agent: f.initiating_user_agent.clone(),
        initiating_user_azure_active_directory_object_id: f
            .initiating_user_azure_active_directory_object_id,
        user_azure_active_directory_object_id: f.user_azure_active_directory_object_id,
        business_unit_id: f.business_unit_id,
        organization_id: f.organization_id,
        organization_name: f.organization_name.clone(),
        correlation_id: f.correlation_id,
        request_id: f.request_id,
        operation_id: f.operation_id,
        operation_created_on: f.operation_created_on,
        is_in_transaction: f.is_in_transaction,
        is_executing_offline: f.is_executing_offline,
        is_offline_playback: f.is_offline_playback,
        isolation_mode: match f.isolation_mode {
            IsolationModeV1::None => context::IsolationMode::None,
            IsolationModeV1::Sandbox => context::IsolationMode::Sandbox,
        },
        owning_extension: f.owning_extension.clone(),
        input_parameters: pick(&f.input_parameters, changes.map(|c| &c.input_parameters)),
        output_parameters: pick(&f.output_parameters, changes.map(|c| &c.output_parameters)),
        shared_variables: pick(&f.shared_variables, changes.map(|c| &c.shared_variables)),
        pre_entity_images: f.pre_entity_images.clone(),
        post_entity_images: f.post_entity_images.clone(),
    }
}

impl context::Host for InvocationState {}

/// The activity types (`workflow`) declare no functions: the interface only names the records the
/// exports use.
impl workflow::Host for InvocationState {}

impl context::HostExecutionContext for InvocationState {
    fn message_name(&mut self, view: Resource<ContextView>) -> wasmtime::Result<String> {
        Ok(self.frame_of(&view)?.message_name.clone())
    }

    fn primary_entity_name(&mut self, view: Resource<ContextView>) -> wasmtime::Result<String> {
        Ok(self.frame_of(&view)?.primary_entity_name.clone())
    }

    fn primary_entity_id(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Guid> {
        Ok(self.frame_of(&view)?.primary_entity_id)
    }

    fn stage(&mut self, view: Resource<ContextView>) -> wasmtime::Result<context::Stage> {
        Ok(stage(self.frame_of(&view)?.stage))
    }

    fn mode(&mut self, view: Resource<ContextView>) -> wasmtime::Result<context::Mode> {
        Ok(mode(self.frame_of(&view)?.mode))
    }

    fn depth(&mut self, view: Resource<ContextView>) -> wasmtime::Result<i32> {
        Ok(self.frame_of(&view)?.depth)
    }

    fn user_id(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Guid> {
        Ok(self.frame_of(&view)?.user_id)
    }

    fn initiating_user_id(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Guid> {
        Ok(self.frame_of(&view)?.initiating_user_id)
    }

    fn business_unit_id(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Guid> {
        Ok(self.frame_of(&view)?.business_unit_id)
    }

    fn organization_id(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Guid> {
        Ok(self.frame_of(&view)?.organization_id)
    }

    fn correlation_id(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Guid> {
        Ok(self.frame_of(&view)?.correlation_id)
    }

    fn request_id(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Option<Guid>> {
        Ok(self.frame_of(&view)?.request_id)
    }

    fn operation_id(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Guid> {
        Ok(self.frame_of(&view)?.operation_id)
    }

    fn operation_created_on(&mut self, view: Resource<ContextView>) -> wasmtime::Result<i64> {
        Ok(self.frame_of(&view)?.operation_created_on)
    }

    fn is_in_transaction(&mut self, view: Resource<ContextView>) -> wasmtime::Result<bool> {
        Ok(self.frame_of(&view)?.is_in_transaction)
    }

    fn frame(&mut self, view: Resource<ContextView>) -> wasmtime::Result<context::ContextFrame> {
        self.settle_input();
        let own = self.table.get(&view)?.level == 0;
        Ok(frame(self.frame_of(&view)?, own.then_some(&self.changes)))
    }

    fn parent(
        &mut self,
        view: Resource<ContextView>,
    ) -> wasmtime::Result<Option<Resource<ContextView>>> {
        let level = self.table.get(&view)?.level;
        if level >= self.context.parents.len() {
            return Ok(None);
        }
        Ok(Some(self.table.push(ContextView { level: level + 1 })?))
    }

    fn input_parameter(
        &mut self,
        view: Resource<ContextView>,
        name: String,
    ) -> wasmtime::Result<Option<ParameterValue>> {
        self.parameter(&view, Collection::Input, &name)
    }

    fn packed_parameters(
        &mut self,
        view: Resource<ContextView>,
        which: Collection,
    ) -> wasmtime::Result<Vec<u8>> {
        Ok(super::packed::encode(self.collection(&view, which)?))
    }

    fn input_parameters(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Parameters> {
        Ok(self.collection(&view, Collection::Input)?.clone())
    }

    fn output_parameter(
        &mut self,
        view: Resource<ContextView>,
        name: String,
    ) -> wasmtime::Result<Option<ParameterValue>> {
        self.parameter(&view, Collection::Output, &name)
    }

    fn output_parameters(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Parameters> {
        Ok(self.collection(&view, Collection::Output)?.clone())
    }

    fn shared_variable(
        &mut self,
        view: Resource<ContextView>,
        name: String,
    ) -> wasmtime::Result<Option<ParameterValue>> {
        self.parameter(&view, Collection::Shared, &name)
    }

    fn shared_variables(&mut self, view: Resource<ContextView>) -> wasmtime::Result<Parameters> {
        Ok(self.collection(&view, Collection::Shared)?.clone())
    }

    fn pre_entity_image(
        &mut self,
        view: Resource<ContextView>,
        alias: String,
    ) -> wasmtime::Result<Option<Entity>> {
        Ok(image(&self.frame_of(&view)?.pre_entity_images, &alias))
    }

    fn post_entity_image(
        &mut self,
        view: Resource<ContextView>,
        alias: String,
    ) -> wasmtime::Result<Option<Entity>> {
        Ok(image(&self.frame_of(&view)?.post_entity_images, &alias))
    }

    fn set_input_parameter(
        &mut self,
        view: Resource<ContextView>,
        name: String,
        value: Option<ParameterValue>,
    ) -> wasmtime::Result<()> {
        self.set(&view, Collection::Input, name, value)
    }

    fn set_output_parameter(
        &mut self,
        view: Resource<ContextView>,
        name: String,
        value: Option<ParameterValue>,
    ) -> wasmtime::Result<()> {
        self.set(&view, Collection::Output, name, value)
    }

    fn set_shared_variable(
        &mut self,
        view: Resource<ContextView>,
        name: String,
        value: Option<ParameterValue>,
    ) -> wasmtime::Result<()> {
        self.set(&view, Collection::Shared, name, value)
    }

    fn set_input_attribute(
        &mut self,
        view: Resource<ContextView>,
        parameter: String,
        attribute: String,
        value: Option<Value>,
    ) -> wasmtime::Result<()> {
        self.set_attribute(&view, &parameter, attribute, value)
    }

    fn drop(&mut self, view: Resource<ContextView>) -> wasmtime::Result<()> {
        self.table.delete(view)?;
        Ok(())
    }
}

impl tracing::Host for InvocationState {
    fn trace(&mut self, text: String) -> wasmtime::Result<()> {
        super::wit::tracing::Host::trace(self, text)
    }

    /// Into the tails WASI's stdout and stderr write to, so the outcome reports them alike. One call
    /// carries at most what a WASI stream accepted per write, so a plug-in cannot make the host copy its
    /// whole memory on every call.
    fn write_output(
        &mut self,
        stream: tracing::StandardStream,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<()> {
        if bytes.len() > super::output::WRITE_LIMIT {
            return Err(wasmtime::Error::msg(format!(
                "write-output: {} bytes in one call; at most {}",
                bytes.len(),
                super::output::WRITE_LIMIT
            )));
        }
        match stream {
            tracing::StandardStream::Stdout => self.stdout.push(&bytes),
            tracing::StandardStream::Stderr => self.stderr.push(&bytes),
        }
        Ok(())
    }
}

impl configuration::Host for InvocationState {
    fn unsecure(&mut self) -> wasmtime::Result<Option<String>> {
        super::wit::configuration::Host::unsecure(self)
    }

    fn secure(&mut self) -> wasmtime::Result<Option<String>> {
        super::wit::configuration::Host::secure(self)
    }
}

impl notification_service::Host for InvocationState {
    fn execute(&mut self, endpoint: Guid) -> wasmtime::Result<Result<String, ServiceError>> {
        self.notify_with_changes(endpoint, None)
    }
}

/// 0.2.0's query as 0.1.0's (the same record, generated twice).
fn query(q: organization_service::Query) -> org_v1::Query {
    use org_v1::ConditionOperator as Op1;
    use organization_service::ConditionOperator as Op2;
    org_v1::Query {
        entity_name: q.entity_name,
        columns: q.columns,
        conditions: q
            .conditions
            .into_iter()
            .map(|c| org_v1::Condition {
                attribute: c.attribute,
                operator: match c.operator {
                    Op2::Equal => Op1::Equal,
                    Op2::NotEqual => Op1::NotEqual,
                    Op2::GreaterThan => Op1::GreaterThan,
                    Op2::LessThan => Op1::LessThan,
                    Op2::Null => Op1::Null,
                    Op2::NotNull => Op1::NotNull,
                },
                values: c.values,
            })
            .collect(),
        orders: q
            .orders
            .into_iter()
            .map(|o| org_v1::Order {
                attribute: o.attribute,
                descending: o.descending,
            })
            .collect(),
        top: q.top,
    }
}

impl organization_service::Host for InvocationState {
    fn create(&mut self, entity: Entity) -> wasmtime::Result<Result<Guid, ServiceError>> {
        org_v1::Host::create(self, entity)
    }

    fn retrieve(
        &mut self,
        entity_name: String,
        id: Guid,
        columns: Option<Vec<String>>,
    ) -> wasmtime::Result<Result<Entity, ServiceError>> {
        org_v1::Host::retrieve(self, entity_name, id, columns)
    }

    fn retrieve_multiple(
        &mut self,
        q: organization_service::Query,
    ) -> wasmtime::Result<Result<EntityCollection, ServiceError>> {
        org_v1::Host::retrieve_multiple(self, query(q))
    }

    fn update(&mut self, entity: Entity) -> wasmtime::Result<Result<(), ServiceError>> {
        org_v1::Host::update(self, entity)
    }

    fn delete(
        &mut self,
        entity_name: String,
        id: Guid,
    ) -> wasmtime::Result<Result<(), ServiceError>> {
        org_v1::Host::delete(self, entity_name, id)
    }
}
