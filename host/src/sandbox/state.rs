//! [`InvocationState`]: what one fresh `Store` holds for one invocation — the
//! capability-free WASI context, the memory limiter, the host-call quotas and
//! counters, the trace, and the services serving the plug-in's imports — and
//! the implementations of 0.1.0's WIT imports on top of it (0.2.0's are in
//! `contract_v2`). With a 0.2.0 component it also holds the changes made
//! through the context's setters.

use super::error::{Quota, QuotaExceeded};
use super::limits::Limits;
use super::outbound::{Ledger, Outbound, OutboundPolicy};
use super::output::TailPipe;
use super::services::HostServices;
use super::wit::context::{self, ContextChanges, ExecutionContext};
use super::wit::types::{
    self, Entity, EntityCollection, Guid, Parameter, ParameterValue, ServiceError, Value,
};
use super::wit::{configuration, notification_service, organization_service, tracing};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Host-call counters of one invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `tracing.trace` calls.
    pub trace_calls: u32,
    /// Bytes of trace text.
    pub trace_bytes: usize,
    /// `notification-service.execute` calls.
    pub execute_calls: u32,
    /// Bytes of changes sent through `execute`.
    pub execute_bytes: usize,
    /// Organization-service calls.
    pub organization_calls: u32,
    /// Outbound HTTP calls (refused ones included).
    pub http_calls: u32,
    /// Request body bytes sent by outbound calls.
    pub http_sent_bytes: u64,
    /// Answer body bytes received by outbound calls.
    pub http_received_bytes: u64,
}

/// Refuses memory growth past the limit and remembers that it did, so the
/// resulting trap is reported as a memory-limit error rather than the guest's
/// `unreachable` (Rust aborts when an allocation fails).
pub struct MemoryLimiter {
    limit: usize,
    table_elements: usize,
    /// Largest linear memory size granted, in bytes.
    pub peak: usize,
    /// Whether a growth was refused.
    pub denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit || maximum.is_some_and(|max| desired > max) {
            self.denied = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements && maximum.is_none_or(|max| desired <= max))
    }
}

/// A wall clock frozen at the operation's creation time: plug-ins get no real
/// clock (their results must not depend on when a retry happens to run).
struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that never moves, for the same reason.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The caller's `&mut dyn HostServices`, with its lifetime erased so it can
/// sit in a `Store` (whose data must be `'static`). This lets the pipeline
/// serve imports with services that borrow its open transaction.
pub(super) struct ServicesRef(NonNull<dyn HostServices + 'static>);

// SAFETY: the store holding a `ServicesRef` is created, used and dropped inside
// one `Sandbox::invoke_with` call on one thread; it never reaches another
// thread. `Send` is only needed because WASI's view trait requires it.
#[allow(unsafe_code)]
unsafe impl Send for ServicesRef {}

impl ServicesRef {
    /// # Safety
    /// Everything holding the result must be dropped before `services` is, and
    /// must not use it while the caller uses `services`.
    #[allow(unsafe_code)]
    pub(super) unsafe fn new<'a>(services: &'a mut (dyn HostServices + 'a)) -> ServicesRef {
        let ptr: NonNull<dyn HostServices + 'a> = NonNull::from(services);
        // SAFETY: only the lifetime changes; `new`'s contract keeps the
        // pointee alive and unaliased for as long as this value exists.
        ServicesRef(unsafe {
            std::mem::transmute::<NonNull<dyn HostServices + 'a>, NonNull<dyn HostServices + 'static>>(
                ptr,
            )
        })
    }

    fn get(&mut self) -> &mut dyn HostServices {
        // SAFETY: see `new`: the pointee outlives this value and nothing else
        // uses it meanwhile.
        #[allow(unsafe_code)]
        unsafe {
            self.0.as_mut()
        }
    }
}

/// What a 0.2.0 `execution-context` handle in the resource table points at:
/// the invocation's own context (level 0) or its `level`-th ancestor.
pub struct ContextView {
    pub(super) level: usize,
}

/// A `set-input-attribute` call not yet folded into the changes (see
/// [`InvocationState::settle_input`]).
pub(super) struct AttributeChange {
    pub(super) parameter: String,
    pub(super) attribute: String,
    pub(super) value: Option<Value>,
}

/// No changes: what a 0.2.0 invocation starts with.
pub(super) fn no_changes() -> ContextChanges {
    ContextChanges {
        input_parameters: None,
        output_parameters: None,
        shared_variables: None,
    }
}

/// The data of one invocation's store.
pub struct InvocationState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    limits: Arc<Limits>,
    pub(super) counters: Counters,
    pub(super) traces: Vec<String>,
    pub(super) context: Arc<ExecutionContext>,
    /// The changes a 0.2.0 plug-in made through the context's setters.
    pub(super) changes: ContextChanges,
    /// `set-input-attribute` calls made while InputParameters were otherwise
    /// unchanged, in order: folded into `changes` when something reads or
    /// replaces InputParameters, or when the invocation ends.
    pub(super) attribute_changes: Vec<AttributeChange>,
    /// Approximate bytes passed to the setters so far (bounded by the return quota).
    pub(super) set_bytes: usize,
    unsecure: Option<String>,
    secure: Option<String>,
    services: ServicesRef,
    pub(super) stdout: TailPipe,
    pub(super) stderr: TailPipe,
    /// wasi:http's context (a 0.2.0 component's outbound calls).
    http: WasiHttpCtx,
    /// The outbound calls' policy, ledger and deadline.
    pub(super) outbound: Outbound,
}

impl InvocationState {
    /// State for one invocation: WASI with no preopens, no environment, no
    /// arguments, no sockets, frozen clocks and bounded stdout/stderr; outbound
    /// HTTP under `outbound` (linked for 0.2.0 components only) until `deadline`.
    pub fn new(
        limits: Arc<Limits>,
        context: Arc<ExecutionContext>,
        unsecure: Option<String>,
        secure: Option<String>,
        services: ServicesRef,
        outbound: Arc<OutboundPolicy>,
        deadline: Instant,
    ) -> InvocationState {
        let stdout = TailPipe::new(limits.output_bytes);
        let stderr = TailPipe::new(limits.output_bytes);
        let created_ms = u64::try_from(context.frame.operation_created_on).unwrap_or(0);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenWallClock(Duration::from_millis(created_ms)))
            .monotonic_clock(FrozenMonotonicClock)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        InvocationState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: limits.memory_bytes,
                table_elements: limits.table_elements,
                peak: 0,
                denied: false,
            },
            counters: Counters::default(),
            traces: Vec::new(),
            context,
            changes: no_changes(),
            attribute_changes: Vec::new(),
            set_bytes: 0,
            unsecure,
            secure,
            services,
            stdout,
            stderr,
            http: WasiHttpCtx::new(),
            outbound: Outbound {
                policy: outbound,
                ledger: Arc::new(Ledger::default()),
                deadline,
                limits: Arc::clone(&limits),
                calls: 0,
                quota_hit: false,
            },
            limits,
        }
    }

    /// Folds the pending `set-input-attribute` calls into the changed
    /// InputParameters, copying the context's collection first if it is not
    /// changed yet.
    pub(super) fn settle_input(&mut self) {
        if self.attribute_changes.is_empty() {
            return;
        }
        let original = &self.context.frame.input_parameters;
        let params = self
            .changes
            .input_parameters
            .get_or_insert_with(|| original.clone());
        for c in self.attribute_changes.drain(..) {
            super::contract_v2::patch_entity(params, &c.parameter, c.attribute, c.value);
        }
    }

    /// The changes the plug-in made, taken out at the end of the invocation.
    /// When only attributes of InputParameters changed and nothing else holds
    /// the context, its collection is moved out and changed in place instead
    /// of copied (the context is not read again).
    pub(super) fn take_changes(&mut self) -> ContextChanges {
        if !self.attribute_changes.is_empty()
            && self.changes.input_parameters.is_none()
            && let Some(context) = Arc::get_mut(&mut self.context)
        {
            self.changes.input_parameters =
                Some(std::mem::take(&mut context.frame.input_parameters));
        }
        self.settle_input();
        std::mem::replace(&mut self.changes, no_changes())
    }

    /// The time every blocking host call and outbound call must end by.
    pub(super) fn deadline(&self) -> Instant {
        self.outbound.deadline
    }

    /// Moves the deadline earlier (the operation's remaining budget).
    pub(super) fn shorten_deadline(&mut self, deadline: Instant) {
        self.outbound.deadline = self.outbound.deadline.min(deadline);
    }

    /// The outbound calls made so far.
    pub(super) fn ledger(&self) -> &Ledger {
        &self.outbound.ledger
    }

    /// The outbound calls attempted, and whether one went past the `http_calls` quota.
    pub(super) fn http_calls(&self) -> (u32, bool) {
        (self.outbound.calls, self.outbound.quota_hit)
    }

    /// Counts one 0.2.0 setter call against the return quota: what the setters
    /// record is what 0.1.0 returned.
    pub(super) fn count_set(
        &mut self,
        name: &str,
        value: Option<&ParameterValue>,
    ) -> wasmtime::Result<()> {
        // What `parameters_bytes` counts for this parameter (without cloning the value to ask it).
        let value_bytes = value.map_or(0, |v| ELEMENT_OVERHEAD + parameter_value_bytes(v));
        self.set_bytes += ELEMENT_OVERHEAD + name.len() + value_bytes;
        check(self.set_bytes, self.limits.return_bytes, Quota::ReturnBytes)
    }

    /// Counts one `set-input-attribute` call against the return quota, as
    /// [`Self::count_set`] counts a whole parameter.
    pub(super) fn count_set_attribute(
        &mut self,
        parameter: &str,
        attribute: &str,
        value: Option<&Value>,
    ) -> wasmtime::Result<()> {
        self.set_bytes +=
            ELEMENT_OVERHEAD + parameter.len() + attribute.len() + value.map_or(0, value_bytes);
        check(self.set_bytes, self.limits.return_bytes, Quota::ReturnBytes)
    }

    /// `notification-service.execute` of either version: posts the context with
    /// `changes` (0.1.0 passes them) or the setters' changes (0.2.0).
    pub(super) fn notify_with_changes(
        &mut self,
        endpoint: Guid,
        changes: Option<ContextChanges>,
    ) -> wasmtime::Result<Result<String, ServiceError>> {
        self.settle_input();
        let changes = changes.as_ref().unwrap_or(&self.changes);
        self.counters.execute_calls += 1;
        self.counters.execute_bytes += changes_bytes(changes);
        check(
            self.counters.execute_calls as usize,
            self.limits.execute_calls as usize,
            Quota::ExecuteCalls,
        )?;
        check(
            self.counters.execute_bytes,
            self.limits.execute_bytes,
            Quota::ExecuteBytes,
        )?;
        Ok(self.services.get().notify(endpoint, &self.context, changes))
    }

    fn count_organization_call(&mut self) -> wasmtime::Result<()> {
        self.counters.organization_calls += 1;
        check(
            self.counters.organization_calls as usize,
            self.limits.organization_calls as usize,
            Quota::OrganizationCalls,
        )
    }
}

fn check(used: usize, limit: usize, quota: Quota) -> wasmtime::Result<()> {
    if used > limit {
        return Err(wasmtime::Error::new(QuotaExceeded {
            quota,
            limit: limit as u64,
        }));
    }
    Ok(())
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What one element of a collection (an attribute, a formatted value, a
/// parameter, a list item) costs beyond its text once encoded: about the
/// smallest JSON form of an empty one (`{"key":"","value":""}` is 22 bytes, an
/// XML `KeyValuePair` more). Counting it keeps a flood of empty elements from
/// slipping under the byte quotas: 1.2 million empty formatted values are
/// 19 MB here, as they are on the wire.
pub const ELEMENT_OVERHEAD: usize = 16;

/// Approximate bytes of a value tree: the text it carries plus
/// [`ELEMENT_OVERHEAD`] per node and per list item. Bounds quotas on what
/// crosses the boundary, cheaply.
pub(crate) fn value_bytes(value: &Value) -> usize {
    ELEMENT_OVERHEAD
        + match value {
            Value::Decimal(s) | Value::Money(s) | Value::String(s) => s.len(),
            Value::EntityReference(r) => {
                r.logical_name.len() + r.name.as_ref().map_or(0, String::len)
            }
            Value::OptionSetValueCollection(v) => v.len() * ELEMENT_OVERHEAD,
            Value::EntityReferenceCollection(v) => v
                .iter()
                .map(|r| ELEMENT_OVERHEAD + 24 + r.logical_name.len())
                .sum(),
            Value::StringArray(v) => v.iter().map(|s| ELEMENT_OVERHEAD + s.len()).sum(),
            _ => 0,
        }
}

fn entity_bytes(entity: &Entity) -> usize {
    ELEMENT_OVERHEAD
        + entity.logical_name.len()
        + entity
            .attributes
            .iter()
            .map(|a| a.name.len() + value_bytes(&a.value))
            .sum::<usize>()
        + entity
            .formatted_values
            .iter()
            .map(|(k, v)| ELEMENT_OVERHEAD + k.len() + v.len())
            .sum::<usize>()
}

/// Approximate bytes of one parameter's value.
fn parameter_value_bytes(value: &ParameterValue) -> usize {
    match value {
        ParameterValue::Value(v) => value_bytes(v),
        ParameterValue::Entity(e) => entity_bytes(e),
        ParameterValue::EntityCollection(c) => c.entities.iter().map(entity_bytes).sum(),
    }
}

/// Approximate bytes of a parameter collection.
pub fn parameters_bytes(params: &[Parameter]) -> usize {
    params
        .iter()
        .map(|p| ELEMENT_OVERHEAD + p.name.len() + parameter_value_bytes(&p.value))
        .sum()
}

/// Approximate bytes of a set of context changes.
pub fn changes_bytes(changes: &ContextChanges) -> usize {
    [
        &changes.input_parameters,
        &changes.output_parameters,
        &changes.shared_variables,
    ]
    .into_iter()
    .flatten()
    .map(|p| parameters_bytes(p))
    .sum()
}

impl WasiHttpView for InvocationState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl types::Host for InvocationState {}
impl context::Host for InvocationState {}

impl tracing::Host for InvocationState {
    fn trace(&mut self, text: String) -> wasmtime::Result<()> {
        self.counters.trace_calls += 1;
        self.counters.trace_bytes += text.len();
        check(
            self.counters.trace_calls as usize,
            self.limits.trace_calls as usize,
            Quota::TraceCalls,
        )?;
        check(
            self.counters.trace_bytes,
            self.limits.trace_bytes,
            Quota::TraceBytes,
        )?;
        self.traces.push(text);
        Ok(())
    }
}

impl notification_service::Host for InvocationState {
    fn execute(
        &mut self,
        endpoint: Guid,
        changes: ContextChanges,
    ) -> wasmtime::Result<Result<String, ServiceError>> {
        self.notify_with_changes(endpoint, Some(changes))
    }
}

impl organization_service::Host for InvocationState {
    fn create(&mut self, entity: Entity) -> wasmtime::Result<Result<Guid, ServiceError>> {
        self.count_organization_call()?;
        Ok(self.services.get().create(entity))
    }

    fn retrieve(
        &mut self,
        entity_name: String,
        id: Guid,
        columns: Option<Vec<String>>,
    ) -> wasmtime::Result<Result<Entity, ServiceError>> {
        self.count_organization_call()?;
        Ok(self.services.get().retrieve(entity_name, id, columns))
    }

    fn retrieve_multiple(
        &mut self,
        query: organization_service::Query,
    ) -> wasmtime::Result<Result<EntityCollection, ServiceError>> {
        self.count_organization_call()?;
        Ok(self.services.get().retrieve_multiple(query))
    }

    fn update(&mut self, entity: Entity) -> wasmtime::Result<Result<(), ServiceError>> {
        self.count_organization_call()?;
        Ok(self.services.get().update(entity))
    }

    fn delete(
        &mut self,
        entity_name: String,
        id: Guid,
    ) -> wasmtime::Result<Result<(), ServiceError>> {
        self.count_organization_call()?;
        Ok(self.services.get().delete(entity_name, id))
    }
}

impl configuration::Host for InvocationState {
    fn unsecure(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.unsecure.clone())
    }

    fn secure(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.secure.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_entity(entity: Entity) -> ContextChanges {
        ContextChanges {
            input_parameters: None,
            output_parameters: None,
            shared_variables: Some(vec![Parameter {
                name: "flood".into(),
                value: ParameterValue::Entity(entity),
            }]),
        }
    }

    /// Issue #10 finding 7: 1.2 million empty formatted values carry no text,
    /// but they are 26 MB in a job row; they must exceed the 4 MiB return quota.
    #[test]
    fn empty_elements_count_towards_the_quota() {
        let entity = Entity {
            logical_name: "account".into(),
            id: None,
            attributes: Vec::new(),
            formatted_values: vec![(String::new(), String::new()); 1_200_000],
            row_version: None,
        };
        let bytes = changes_bytes(&shared_entity(entity));
        assert!(
            bytes > Limits::default().return_bytes,
            "1.2 million empty formatted values counted as {bytes} bytes"
        );
        let list = ContextChanges {
            input_parameters: None,
            output_parameters: None,
            shared_variables: Some(vec![Parameter {
                name: "list".into(),
                value: ParameterValue::Value(Value::StringArray(vec![String::new(); 300_000])),
            }]),
        };
        assert!(changes_bytes(&list) > 4 << 20);
    }
}
