//! The plug-in sandbox: runs untrusted WebAssembly components with wasmtime.
//!
//! Owns the engine (pooling allocator with keep-resident memory, epoch
//! interruption, optional fuel), the linkers (WASI p2 minus sockets, with no
//! preopens, environment, arguments or real clocks, plus the `weft:plugin`
//! imports; for `weft:plugin@0.2.0` components also `wasi:http`'s outgoing
//! handler under the plug-in's [`OutboundPolicy`]), the cache of precompiled components, and one fresh `Store` per
//! invocation, thrown away afterwards — trap or not. Every failure comes back
//! as a typed [`PluginFailure`].
//!
//! Must not know about tables, jobs or HTTP: callers serve the imports through
//! [`HostServices`].
//!
//! # Layout
//! - `bindings`: the `bindgen!` of each contract version the host runs:
//!   `weft:plugin@0.1.0` (re-exported as [`wit`]; its types are the host's
//!   context types) and `weft:plugin@0.2.0` ([`wit2`]). A component is run
//!   through the version its exports match.
//! - `contract_v2`: 0.2.0's `execution-context` resource and services.
//! - `activity`: custom workflow activities (0.2.0's `activity-types` and
//!   `execute-activity`): their signatures, read at load, and one run.
//! - `admission`: how many invocations run at once; a bounded wait for one.
//! - [`limits`]: every bound and its default.
//! - [`outbound`]: outbound HTTP (wasi:http) under Dataverse's sandbox rules.
//! - `deadline_io`: `wasi:io` whose blocking calls end at the invocation's deadline.
//! - `state`: the per-invocation store data and the import implementations.
//! - `cache`: precompiled components on disk, verified before use.
//! - `output`: bounded stdout/stderr capture.
//! - [`services`]: the [`HostServices`] seam and [`RecordingServices`].
//! - `error`: [`PluginFailure`] and [`FailureKind`].

mod activity;
mod admission;
mod bindings;
mod cache;
mod contract_v2;
mod deadline_io;
mod error;
pub mod limits;
pub mod outbound;
mod output;
mod packed;
pub mod services;
mod state;

pub use activity::{
    ActivityOutcome, ActivitySignature, Argument, ArgumentSpec, ArgumentType, WorkflowInfo,
};
pub use bindings::v1::weft::plugin as wit;
pub use bindings::v2::weft::plugin as wit2;
pub use cache::{CacheOutcome, sha256_hex};
pub use error::{FailureKind, PluginFailure, Quota, QuotaExceeded};
pub use limits::Limits;
pub use outbound::{AddressClass, HttpCall, OutboundPolicy};
pub use services::{HostServices, RecordedCall, RecordingServices};
pub use state::Counters;

use admission::Admission;
use bindings::{v1, v2};
use cache::ComponentCache;
use state::{ContextView, InvocationState, ServicesRef};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, ComponentExportIndex, HasSelf, Linker, Resource, TypedFunc};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wit::context::{ContextChanges, ExecutionContext};

/// What one invocation used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Wall-clock time of the call (instantiation included).
    pub elapsed: Duration,
    /// Fuel consumed, when fuel metering is on.
    pub fuel_consumed: Option<u64>,
    /// Largest linear memory granted, in bytes.
    pub peak_memory_bytes: usize,
    /// Host calls made.
    pub calls: Counters,
    /// Approximate bytes of the returned changes.
    pub return_bytes: usize,
    /// Bytes captured from stdout and stderr (tails).
    pub output_bytes: usize,
}

/// Most plug-in types one component may hold, and the longest type name:
/// `plugin-types` is read from untrusted code.
const MAX_PLUGIN_TYPES: usize = 256;
const MAX_PLUGIN_TYPE_NAME: usize = 256;

/// What a 0.2.0 component holds: its plug-in type names and its activity types.
type ComponentTypes = (Arc<[String]>, Arc<[ActivitySignature]>);

/// The contract version a component was built against, pre-linked for it.
#[derive(Clone)]
enum Contract {
    /// `weft:plugin@0.1.0`: one plug-in type, named like the plug-in.
    V1(v1::PluginPre<InvocationState>),
    /// `weft:plugin@0.2.0`: the types `plugin-types` and the activities
    /// `activity-types` named at load.
    V2 {
        pre: v2::PluginPre<InvocationState>,
        /// Where `execute` is among the component's exports (its type checked once, at load).
        execute: ComponentExportIndex,
        types: Arc<[String]>,
        activities: Arc<[ActivitySignature]>,
    },
}

/// A loaded plug-in: its precompiled component, pre-linked and ready to
/// instantiate cheaply, and the plug-in type an invocation runs
/// ([`LoadedPlugin::for_type`]).
#[derive(Clone)]
pub struct LoadedPlugin {
    name: String,
    sha256: String,
    cache: Option<CacheOutcome>,
    contract: Contract,
    /// The plug-in type invocations run (0.2.0 only); `None` runs the only one.
    selected: Option<String>,
    /// Where its outbound calls may go (0.2.0 only: 0.1.0 has no wasi:http).
    outbound: Arc<OutboundPolicy>,
}

impl LoadedPlugin {
    /// The contract version the component targets, e.g. `0.2.0`.
    pub fn contract_version(&self) -> &'static str {
        match self.contract {
            Contract::V1(_) => "0.1.0",
            Contract::V2 { .. } => "0.2.0",
        }
    }

    /// The plug-in type names the component holds: what `plugin-types` answered
    /// for a 0.2.0 component; the plug-in's own name for a 0.1.0 one.
    pub fn plugin_types(&self) -> Vec<String> {
        match &self.contract {
            Contract::V1(_) => vec![self.name.clone()],
            Contract::V2 { types, .. } => types.to_vec(),
        }
    }

    /// The custom workflow activity types the component holds, with their
    /// arguments (none for a 0.1.0 component).
    pub fn activity_types(&self) -> &[ActivitySignature] {
        match &self.contract {
            Contract::V1(_) => &[],
            Contract::V2 { activities, .. } => activities,
        }
    }

    /// The plug-in type invocations run, when one was chosen.
    pub fn selected_type(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// The same component, running the plug-in type `plugin_type` (cheap: the
    /// compiled code is shared). The error names the types it holds, with a
    /// "did you mean" when one is near.
    pub fn for_type(&self, plugin_type: &str) -> Result<LoadedPlugin, String> {
        let Contract::V2 { types, .. } = &self.contract else {
            return Err(format!(
                "plug-in \"{}\" is a weft:plugin@0.1.0 component, which holds one plug-in type: \
                 name none (types are weft:plugin@0.2.0)",
                self.name
            ));
        };
        if !types.iter().any(|t| t == plugin_type) {
            return Err(format!(
                "plug-in \"{}\" holds no plug-in type \"{plugin_type}\" (it holds {}){}",
                self.name,
                types.join(", "),
                crate::suggest::did_you_mean(plugin_type, types.iter().map(String::as_str))
            ));
        }
        Ok(LoadedPlugin {
            selected: Some(plugin_type.to_owned()),
            ..self.clone()
        })
    }

    /// The type a 0.2.0 invocation runs: the chosen one, or the only one.
    fn type_to_run<'a>(&'a self, types: &'a [String]) -> Result<&'a str, String> {
        match (&self.selected, types) {
            (Some(t), _) => Ok(t),
            (None, [only]) => Ok(only),
            (None, _) => Err(format!(
                "the component holds several plug-in types ({}): the step must name one with `type`",
                types.join(", ")
            )),
        }
    }

    /// The same component with `policy` governing its outbound HTTP calls.
    pub fn with_outbound(self, policy: Arc<OutboundPolicy>) -> LoadedPlugin {
        LoadedPlugin {
            outbound: policy,
            ..self
        }
    }

    /// The policy governing its outbound HTTP calls.
    pub fn outbound(&self) -> &Arc<OutboundPolicy> {
        &self.outbound
    }

    /// The plug-in's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of the component's bytes, in hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// How the compiled code was obtained (`None` without a cache).
    pub fn cache_outcome(&self) -> Option<CacheOutcome> {
        self.cache
    }
}

/// One invocation's input.
pub struct Invocation<S> {
    /// The execution context.
    pub context: ExecutionContext,
    /// The step's unsecure configuration.
    pub unsecure_config: Option<String>,
    /// The step's secure configuration.
    pub secure_config: Option<String>,
    /// What serves the plug-in's imports.
    pub services: S,
}

/// One invocation's result.
pub struct Outcome<S> {
    /// The changes the plug-in returned, or why it failed.
    pub result: Result<ContextChanges, PluginFailure>,
    /// Trace lines, in order.
    pub traces: Vec<String>,
    /// Tail of stdout.
    pub stdout: String,
    /// Tail of stderr.
    pub stderr: String,
    /// What the invocation used.
    pub usage: Usage,
    /// The services, given back (e.g. to read what they recorded).
    pub services: S,
}

impl<S> Outcome<S> {
    /// The same outcome with its services turned into something else (e.g. the part a report reads).
    pub fn map_services<T>(self, f: impl FnOnce(S) -> T) -> Outcome<T> {
        Outcome {
            result: self.result,
            traces: self.traces,
            stdout: self.stdout,
            stderr: self.stderr,
            usage: self.usage,
            services: f(self.services),
        }
    }
}

/// Advances the engine's epoch every tick until the sandbox is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread (only fails when the OS is out of threads)");
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The sandbox: one engine and its linkers, shared by every plug-in.
pub struct Sandbox {
    engine: Engine,
    /// Everything, wasi:http included: what a 0.2.0 component is linked with.
    linker: Linker<InvocationState>,
    /// Without wasi:http: what a 0.1.0 component is linked with (its contract predates outbound calls).
    linker_v1: Linker<InvocationState>,
    limits: Arc<Limits>,
    cache: Option<ComponentCache>,
    admission: Admission,
    /// Plug-in executions run so far (see [`Sandbox::executions`]).
    executions: AtomicU64,
    _ticker: Ticker,
}

/// The engine configuration every plug-in (and the benchmark floor) runs with.
pub fn engine_config(limits: &Limits) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let instances = limits.max_instances;
    pool.total_component_instances(instances)
        // A Rust component holds a few core instances (main module plus
        // adapter shims), one memory and a few tables.
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 8)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_core_instances_per_component(16)
        .max_memory_size(limits.memory_bytes)
        .table_elements(limits.table_elements)
        // Resetting a slot's memory between instances is the floor's main
        // cost. With PAGEMAP_SCAN (Linux 6.7+; `Auto` falls back elsewhere)
        // wasmtime resets only the pages an instance touched, by memset, up to
        // the keep-resident size, so nothing is unmapped and the next instance
        // takes no page faults; decommits that remain are batched to share TLB
        // flushes. Measured with `weft bench sandbox` under load: floor p50
        // 12.4 µs -> 3.3 µs, step p50 36.9 µs -> 22.8 µs. (Without the scan, 1 MiB
        // kept resident cost more than it saved: the whole of it was zeroed on
        // every reuse.) Worst case this keeps 2 MiB per slot resident.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(2 << 20)
        .decommit_batch_size(8)
        .table_keep_resident(64 << 10);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(limits.fuel.is_some())
        .max_wasm_stack(limits.wasm_stack_bytes)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

impl Sandbox {
    /// A sandbox with these limits; `cache_dir` enables the precompiled-component
    /// cache.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<Sandbox> {
        limits
            .validate()
            .map_err(|why| anyhow::anyhow!("invalid sandbox limits: {why}"))?;
        let engine = Engine::new(&engine_config(&limits))?;
        let mut linker = Linker::<InvocationState>::new(&engine);
        add_wasi(&mut linker)?;
        v1::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        v2::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        // 0.2.0's types reuse 0.1.0's bindings (see `bindings`), which link
        // them under 0.1.0's name only; the (function-less) instance must also
        // exist under 0.2.0's.
        linker.instance("weft:plugin/types@0.2.0")?;
        let linker_v1 = linker.clone();
        add_http(&mut linker)?;
        let cache = cache_dir.map(|dir| ComponentCache::new(dir, &engine));
        let ticker = Ticker::start(engine.clone(), limits.epoch_tick());
        let admission = Admission::new(
            Admission::permits_for(limits.max_instances),
            limits.instance_wait(),
        );
        Ok(Sandbox {
            engine,
            linker,
            linker_v1,
            limits: Arc::new(limits),
            cache,
            admission,
            executions: AtomicU64::new(0),
            _ticker: ticker,
        })
    }

    /// The engine (shared with the benchmark floor).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many plug-in executions (`execute` of a plug-in type, `execute-activity`) this sandbox has
    /// run, whatever came of them; refused ones (no instance free, no type to run) are not counted.
    /// `weft bench pipeline` counts what really ran with it.
    pub fn executions(&self) -> u64 {
        self.executions.load(Ordering::Relaxed)
    }

    /// Loads a component file.
    // Loading is not a hot path, and the failure carries the full report.
    #[allow(clippy::result_large_err)]
    pub fn load_file(&self, name: &str, path: &Path) -> Result<LoadedPlugin, PluginFailure> {
        let bytes = std::fs::read(path).map_err(|e| {
            invalid(
                name,
                format!("cannot read component {}: {e}", path.display()),
            )
        })?;
        self.load(name, &bytes)
    }

    /// Loads a component from its bytes: compile (or take from the cache),
    /// check its imports and exports, pre-link.
    // Loading is not a hot path, and the failure carries the full report.
    #[allow(clippy::result_large_err)]
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, PluginFailure> {
        let sha256 = sha256_hex(bytes);
        let (component, cache) = match &self.cache {
            Some(cache) => cache
                .load(&self.engine, bytes, &sha256)
                .map(|(c, o)| (c, Some(o))),
            None => Component::new(&self.engine, bytes).map(|c| (c, None)),
        }
        .map_err(|e| invalid(name, format!("not a valid WebAssembly component: {e:#}")))?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            invalid(
                name,
                format!("the component needs something the sandbox does not provide: {e:#}"),
            )
        })?;
        let contract = match v2::PluginPre::new(instance_pre) {
            Ok(pre) => {
                // `PluginPre::new` found it; `read_types` type-checks it (with every export).
                let execute = pre
                    .instance_pre()
                    .component()
                    .get_export_index(None, "execute")
                    .ok_or_else(|| invalid(name, "the component exports no `execute`".into()))?;
                let (types, activities) = self.read_types(name, &pre)?;
                Contract::V2 {
                    pre,
                    execute,
                    types,
                    activities,
                }
            }
            Err(v2_error) => {
                // Not a 0.2.0 component: link it again without wasi:http, which 0.1.0 predates.
                let instance_pre = self.linker_v1.instantiate_pre(&component).map_err(|e| {
                    invalid(
                        name,
                        format!(
                            "the component needs something the sandbox does not provide to a \
                             weft:plugin@0.1.0 component (wasi:http is granted to weft:plugin@0.2.0 \
                             ones): {e:#}"
                        ),
                    )
                })?;
                match v1::PluginPre::new(instance_pre) {
                    Ok(pre) => Contract::V1(pre),
                    Err(v1_error) => {
                        return Err(invalid(
                            name,
                            format!(
                                "the component exports neither weft:plugin@0.2.0 (`plugin-types`, \
                                 `execute`, `activity-types` and `execute-activity`: {v2_error:#}) nor \
                                 weft:plugin@0.1.0 (`execute`: {v1_error:#}); \
                                 a Rust plug-in exports itself with `weft_sdk::export_plugin!(Type)`"
                            ),
                        ));
                    }
                }
            }
        };
        Ok(LoadedPlugin {
            name: name.to_owned(),
            sha256,
            cache,
            contract,
            selected: None,
            outbound: Arc::default(),
        })
    }

    /// Calls a 0.2.0 component's `plugin-types` and `activity-types` once, in
    /// a store with the usual limits, and checks the answers: unique, bounded
    /// names, at least one type of either kind.
    #[allow(clippy::result_large_err)]
    fn read_types(
        &self,
        name: &str,
        pre: &v2::PluginPre<InvocationState>,
    ) -> Result<ComponentTypes, PluginFailure> {
        let mut services = RecordingServices::default();
        // SAFETY: the store holding this reference is dropped at the end of
        // this function, before `services`.
        #[allow(unsafe_code)]
        let services = unsafe { ServicesRef::new(&mut services) };
        let context = Arc::new(crate::context::build_context(crate::context::ContextSpec {
            message: "plugin-types".into(),
            table: "none".into(),
            stage: wit::context::Stage::PreValidation,
            mode: wit::context::Mode::Synchronous,
            target: None,
            depth: 1,
            created_on_ms: 0,
        }));
        let mut store = self.new_store(context, None, None, services, Arc::default());
        let (types, activities) = pre
            .instantiate(&mut store)
            .and_then(|instance| {
                let types = instance.call_plugin_types(&mut store)?;
                let activities = instance.call_activity_types(&mut store)?;
                Ok((types, activities))
            })
            .map_err(|e| {
                let (_, message) = classify(&e, store.data().limiter.denied, &self.limits);
                invalid(
                    name,
                    format!("`plugin-types` or `activity-types` failed: {message}"),
                )
            })?;
        let activities = activity::check_signatures(activities)
            .map_err(|why| invalid(name, format!("`activity-types` {why}")))?;
        let bad = |why: String| Err(invalid(name, format!("`plugin-types` {why}")));
        if types.is_empty() && activities.is_empty() {
            return bad("named no plug-in type, and `activity-types` no activity type".into());
        }
        if types.len() > MAX_PLUGIN_TYPES {
            return bad(format!(
                "named {} plug-in types; at most {MAX_PLUGIN_TYPES} are allowed",
                types.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for t in &types {
            if t.is_empty() || t.len() > MAX_PLUGIN_TYPE_NAME || t.chars().any(char::is_control) {
                return bad(format!(
                    "named a plug-in type that is empty, over {MAX_PLUGIN_TYPE_NAME} bytes or has \
                     control characters: {:?}",
                    t.chars().take(80).collect::<String>()
                ));
            }
            if !seen.insert(t.as_str()) {
                return bad(format!("named the plug-in type \"{t}\" twice"));
            }
        }
        Ok((types.into(), activities.into()))
    }

    /// A fresh store for one invocation, with every per-invocation limit set.
    fn new_store(
        &self,
        context: Arc<ExecutionContext>,
        unsecure_config: Option<String>,
        secure_config: Option<String>,
        services: ServicesRef,
        outbound: Arc<OutboundPolicy>,
    ) -> Store<InvocationState> {
        let state = InvocationState::new(
            Arc::clone(&self.limits),
            context,
            unsecure_config,
            secure_config,
            services,
            outbound,
            Instant::now() + self.limits.deadline(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        store.epoch_deadline_trap();
        if let Some(fuel) = self.limits.fuel {
            // Cannot fail: fuel metering is on whenever a fuel limit is set.
            let _ = store.set_fuel(fuel);
        }
        store
    }

    /// Runs a plug-in once in a fresh store, with services it owns for the
    /// call and gives back in the outcome.
    pub fn invoke<S: HostServices>(
        &self,
        plugin: &LoadedPlugin,
        invocation: Invocation<S>,
    ) -> Outcome<S> {
        let Invocation {
            context,
            unsecure_config,
            secure_config,
            mut services,
        } = invocation;
        self.invoke_with(
            plugin,
            context,
            unsecure_config,
            secure_config,
            &mut services,
        )
        .map_services(|()| services)
    }

    /// Runs a plug-in once in a fresh store, with borrowed services (e.g. ones
    /// holding the pipeline's open transaction). The store is dropped before
    /// this returns.
    pub fn invoke_with(
        &self,
        plugin: &LoadedPlugin,
        context: impl Into<Arc<ExecutionContext>>,
        unsecure_config: Option<String>,
        secure_config: Option<String>,
        services: &mut dyn HostServices,
    ) -> Outcome<()> {
        self.invoke_until(
            plugin,
            context,
            unsecure_config,
            secure_config,
            services,
            None,
        )
    }

    /// Like [`Sandbox::invoke_with`], but the plug-in is also stopped at
    /// `deadline` when that comes before its own deadline: the pipeline passes
    /// what is left of the operation's 2-minute budget.
    pub fn invoke_until(
        &self,
        plugin: &LoadedPlugin,
        context: impl Into<Arc<ExecutionContext>>,
        unsecure_config: Option<String>,
        secure_config: Option<String>,
        services: &mut dyn HostServices,
        deadline: Option<Instant>,
    ) -> Outcome<()> {
        self.run_call(
            plugin,
            context.into(),
            unsecure_config,
            secure_config,
            services,
            deadline,
            Call::Execute,
        )
        .0
    }

    /// Runs one export of a plug-in in a fresh store: `execute` (a plug-in
    /// type) or `execute-activity` (an activity type, whose outputs come back
    /// beside the outcome).
    #[allow(clippy::too_many_arguments)]
    fn run_call(
        &self,
        plugin: &LoadedPlugin,
        context: Arc<ExecutionContext>,
        unsecure_config: Option<String>,
        secure_config: Option<String>,
        services: &mut dyn HostServices,
        deadline: Option<Instant>,
        call: Call,
    ) -> (Outcome<()>, Vec<activity::Argument>) {
        let started = Instant::now();
        let Some(_ticket) = self.admission.enter() else {
            return (self.busy(plugin, started), Vec::new());
        };
        let _in_use = InUse::enter();
        // SAFETY: the store that holds this reference is created below and
        // consumed by `into_data` before this function returns; `services` is
        // not touched meanwhile.
        #[allow(unsafe_code)]
        let services = unsafe { ServicesRef::new(services) };
        let mut store = self.new_store(
            Arc::clone(&context),
            unsecure_config,
            secure_config,
            services,
            Arc::clone(&plugin.outbound),
        );
        if let Some(deadline) = deadline {
            store.data_mut().shorten_deadline(deadline);
            let tick = self.limits.epoch_tick().as_nanos().max(1);
            let left = deadline.saturating_duration_since(started).as_nanos();
            // At least one tick, so an already-spent budget still traps promptly.
            let ticks = u64::try_from(left.div_ceil(tick))
                .unwrap_or(u64::MAX)
                .max(1);
            store.set_epoch_deadline(ticks.min(self.limits.deadline_ticks()));
        }
        let mut outputs = Vec::new();
        let called = match (&plugin.contract, call) {
            (Contract::V1(pre), Call::Execute) => pre
                .instantiate(&mut store)
                .and_then(|instance| instance.call_execute(&mut store, &context))
                .map(|r| r.map(Some).map_err(plugin_error_v1)),
            (
                Contract::V2 {
                    pre,
                    execute,
                    types,
                    ..
                },
                Call::Execute,
            ) => match plugin.type_to_run(types) {
                Ok(plugin_type) => call_v2(pre, execute, &mut store, plugin_type),
                Err(why) => {
                    let refused = self.refused(plugin, started, FailureKind::InvalidComponent, why);
                    return (refused, Vec::new());
                }
            },
            (Contract::V2 { pre, .. }, Call::Activity(call)) => {
                activity::call(pre, &mut store, call).map(|r| {
                    r.map(|out| {
                        outputs = out;
                        None
                    })
                })
            }
            (Contract::V1(_), Call::Activity(_)) => {
                let why = format!(
                    "plug-in \"{}\" is a weft:plugin@0.1.0 component, which holds no workflow activities",
                    plugin.name
                );
                let refused = self.refused(plugin, started, FailureKind::InvalidComponent, why);
                return (refused, Vec::new());
            }
        };
        self.executions.fetch_add(1, Ordering::Relaxed);
        let fuel_consumed = self
            .limits
            .fuel
            .map(|fuel| fuel - store.get_fuel().unwrap_or(0));
        let mut state = store.into_data();
        // Outbound calls: counted, and each one a line of the trace (after the plug-in's own lines).
        let (http_calls, sent, received) = state.ledger().snapshot();
        let (attempted, quota_hit) = state.http_calls();
        state.counters.http_calls = attempted;
        state.counters.http_sent_bytes = sent;
        state.counters.http_received_bytes = received;
        state
            .traces
            .extend(http_calls.iter().map(|c| format!("[weft] {c}")));
        // A call past `http_calls` fails the invocation, even when the plug-in went on.
        let called = match called {
            Ok(Ok(_)) if quota_hit => Err(wasmtime::Error::new(QuotaExceeded {
                quota: Quota::HttpCalls,
                limit: u64::from(self.limits.http_calls),
            })),
            other => other,
        };
        // A 0.2.0 plug-in's changes are what its setters recorded.
        // Only the state holds the context now, so `take_changes` can move InputParameters out.
        drop(context);
        let called =
            called.map(|r| r.map(|changes| changes.unwrap_or_else(|| state.take_changes())));
        let return_bytes = match &called {
            Ok(Ok(changes)) => state::changes_bytes(changes) + activity::arguments_bytes(&outputs),
            // A 0.2.0 plug-in stopped by the return quota in a setter: what it tried to set.
            _ => state.set_bytes,
        };
        let stderr = state.stderr.text();
        let stdout = state.stdout.text();
        let usage = Usage {
            elapsed: started.elapsed(),
            fuel_consumed,
            peak_memory_bytes: state.limiter.peak,
            calls: state.counters,
            return_bytes,
            output_bytes: stdout.len() + stderr.len(),
        };
        let failure = |kind, message: String, backtrace| PluginFailure {
            plugin: plugin.name.clone(),
            kind,
            message,
            backtrace,
            stderr_tail: stderr.clone(),
            usage,
        };
        let result = match called {
            Ok(Ok(_)) if return_bytes > self.limits.return_bytes => Err(failure(
                FailureKind::Quota(Quota::ReturnBytes),
                format!(
                    "the plug-in returned about {return_bytes} bytes of context changes; \
                     the limit is {}",
                    self.limits.return_bytes
                ),
                None,
            )),
            Ok(Ok(changes)) => Ok(changes),
            Ok(Err(e)) => Err(failure(
                FailureKind::Plugin {
                    status: e.status,
                    error_code: e.error_code,
                },
                e.message,
                None,
            )),
            Err(error) => {
                let (kind, mut message) = classify(&error, state.limiter.denied, &self.limits);
                // A Rust panic traps as `unreachable`; its message (on stderr) is what the author needs
                // first, the trap after it.
                if kind == FailureKind::Trap
                    && let Some(panic) = crate::sandbox::error::panic_message(&stderr)
                {
                    message = format!("{panic} ({message})");
                }
                let backtrace = error
                    .downcast_ref::<wasmtime::WasmBacktrace>()
                    .map(|b| b.to_string());
                Err(failure(kind, message, backtrace))
            }
        };
        if result.is_err() {
            outputs.clear();
        }
        let outcome = Outcome {
            result,
            traces: state.traces,
            stdout,
            stderr,
            usage,
            services: (),
        };
        (outcome, outputs)
    }
}

/// Which export an invocation calls.
enum Call {
    /// `execute`: the plug-in type chosen on the [`LoadedPlugin`].
    Execute,
    /// `execute-activity`.
    Activity(activity::ActivityCall),
}

/// An `InvalidPluginExecutionException` of either contract version.
pub(crate) struct RaisedError {
    pub(crate) message: String,
    pub(crate) status: u8,
    pub(crate) error_code: Option<i32>,
}

fn plugin_error_v1(e: wit::context::PluginError) -> RaisedError {
    RaisedError {
        message: e.message,
        status: e.status as u8,
        error_code: e.error_code,
    }
}

/// What running a plug-in returned: its own changes (0.1.0), or `None` when
/// they are the setters' record in the store (0.2.0).
pub(crate) type Called = wasmtime::Result<Result<Option<ContextChanges>, RaisedError>>;

/// `execute: func(plugin-type: string, context: borrow<execution-context>) -> result<_, plugin-error>`.
type ExecuteV2<'a> =
    TypedFunc<(&'a str, Resource<ContextView>), (Result<(), wit2::context::PluginError>,)>;

/// Runs a 0.2.0 plug-in type on the invocation's context, handed over as a
/// borrowed `execution-context` the plug-in reads on demand.
///
/// Only `execute` is looked up in the fresh instance, without checking its type again: the bindings'
/// `PluginPre::instantiate` type-checks all four exports on every instantiation (their records and
/// lists, about a tenth of a step's host time by callgrind), and the type cannot have changed since
/// `read_types` checked it on an instance of the same component.
fn call_v2(
    pre: &v2::PluginPre<InvocationState>,
    execute: &ComponentExportIndex,
    store: &mut Store<InvocationState>,
    plugin_type: &str,
) -> Called {
    let view = store.data_mut().table.push(ContextView { level: 0 })?;
    let instance = pre.instance_pre().instantiate(&mut *store)?;
    let func = instance
        .get_func(&mut *store, execute)
        .ok_or_else(|| wasmtime::Error::msg("the instance has no `execute` export"))?;
    // SAFETY: `execute` has this type: `load` kept this component only after `read_types` instantiated it
    // through `v2::PluginPre`, whose `load` type-checked `execute` against the bindings' signature (this
    // one); every instance of one component has its types.
    #[allow(unsafe_code)]
    let func = unsafe { ExecuteV2::new_unchecked(func) };
    let (raised,) = func.call(&mut *store, (plugin_type, view))?;
    Ok(raised.map(|()| None).map_err(|e| RaisedError {
        message: e.message,
        status: e.status as u8,
        error_code: e.error_code,
    }))
}

impl Sandbox {
    /// The outcome of an invocation that found every instance busy for the
    /// whole wait: the host's capacity, not the plug-in's fault.
    fn busy(&self, plugin: &LoadedPlugin, started: Instant) -> Outcome<()> {
        self.refused(
            plugin,
            started,
            FailureKind::Capacity,
            format!(
                "all {} plug-in instances stayed busy for {} ms",
                self.limits.max_instances, self.limits.instance_wait_ms
            ),
        )
    }

    /// The outcome of an invocation that never started: the component is not
    /// run (e.g. a 0.2.0 component with several types and none chosen).
    fn refused(
        &self,
        plugin: &LoadedPlugin,
        started: Instant,
        kind: FailureKind,
        message: String,
    ) -> Outcome<()> {
        let usage = Usage {
            elapsed: started.elapsed(),
            ..Usage::default()
        };
        Outcome {
            result: Err(PluginFailure {
                plugin: plugin.name.clone(),
                kind,
                message,
                backtrace: None,
                stderr_tail: String::new(),
                usage,
            }),
            traces: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
            usage,
            services: (),
        }
    }
}

/// A component exporting `echo: func(input: string) -> string`: the benchmark
/// floor (fresh store and instance plus one call, no SDK, no context).
pub struct EchoComponent {
    pre: wasmtime::component::InstancePre<InvocationState>,
    context: Arc<ExecutionContext>,
}

impl Sandbox {
    /// Loads the benchmark floor component.
    pub fn load_echo(
        &self,
        bytes: &[u8],
        context: ExecutionContext,
    ) -> anyhow::Result<EchoComponent> {
        let component = Component::new(&self.engine, bytes)?;
        Ok(EchoComponent {
            pre: self.linker.instantiate_pre(&component)?,
            context: Arc::new(context),
        })
    }

    /// One floor iteration: a fresh store (same state and limits as a plug-in
    /// invocation), a fresh instance and one `echo` call.
    pub fn call_echo(&self, echo: &EchoComponent, input: &str) -> anyhow::Result<String> {
        let mut services = RecordingServices::default();
        // SAFETY: the store holding this reference is dropped at the end of
        // this function, before `services`.
        #[allow(unsafe_code)]
        let services = unsafe { ServicesRef::new(&mut services) };
        let mut store = self.new_store(
            Arc::clone(&echo.context),
            None,
            None,
            services,
            Arc::default(),
        );
        let instance = echo.pre.instantiate(&mut store)?;
        let func = instance.get_typed_func::<(&str,), (String,)>(&mut store, "echo")?;
        let (out,) = func.call(&mut store, (input,))?;
        Ok(out)
    }
}

fn invalid(name: &str, message: String) -> PluginFailure {
    PluginFailure {
        plugin: name.to_owned(),
        kind: FailureKind::InvalidComponent,
        message,
        backtrace: None,
        stderr_tail: String::new(),
        usage: Usage::default(),
    }
}

/// Names the cause of a trap. A refused memory growth wins over the trap it
/// leads to (Rust aborts with `unreachable` when an allocation fails).
fn classify(
    error: &wasmtime::Error,
    memory_denied: bool,
    limits: &Limits,
) -> (FailureKind, String) {
    if let Some(quota) = error.downcast_ref::<QuotaExceeded>() {
        return (FailureKind::Quota(quota.quota), quota.to_string());
    }
    // The pool ran out of instances (nested invocations use its reserve): the
    // host's capacity, not a fault of the plug-in.
    if let Some(full) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return (FailureKind::Capacity, full.to_string());
    }
    let trap = error.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::Interrupt) => (
            FailureKind::Timeout,
            format!(
                "the plug-in ran past its {} ms deadline",
                limits.deadline_ms
            ),
        ),
        Some(Trap::OutOfFuel) => (
            FailureKind::OutOfFuel,
            format!(
                "the plug-in used up its {} units of fuel",
                limits.fuel.unwrap_or(0)
            ),
        ),
        Some(Trap::StackOverflow) => (
            FailureKind::StackOverflow,
            format!(
                "the plug-in overflowed its {} KiB wasm stack",
                limits.wasm_stack_bytes >> 10
            ),
        ),
        _ if memory_denied => (
            FailureKind::MemoryLimit,
            format!(
                "the plug-in tried to grow its memory past the {} MiB limit",
                limits.memory_bytes >> 20
            ),
        ),
        // The top-level message carries the whole backtrace; the root cause is
        // the trap itself (e.g. "wasm `unreachable` instruction executed").
        _ => (FailureKind::Trap, error.root_cause().to_string()),
    }
}

/// Links the WASI p2 interfaces a Rust plug-in needs, without capabilities:
/// I/O streams, clocks (frozen per invocation), random, the CLI interfaces
/// (empty environment and arguments, bounded stdout/stderr) and the
/// file-system interfaces with no preopened directory (the SDK's `write`, which
/// replaces the C library's in a component, relies on this: it knows stdout
/// and stderr only — see `guest-sdk/src/stdio.rs`). Sockets and name
/// lookup are not linked at all, so a component importing them is refused at
/// load time with an error naming the import.
fn add_wasi(linker: &mut Linker<InvocationState>) -> anyhow::Result<()> {
    use deadline_io::{DeadlineIo, HasDeadlineIo};
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
    use wasmtime_wasi::{ResourceTable, WasiView};

    /// The wasi:io interfaces reach only the resource table.
    struct HasIo;
    impl wasmtime::component::HasData for HasIo {
        type Data<'a> = &'a mut ResourceTable;
    }

    type T = InvocationState;
    let l = linker;
    sync::io::error::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    // Poll and streams end every blocking call at the invocation's deadline (`deadline_io`).
    fn deadline_io(t: &mut InvocationState) -> DeadlineIo<'_> {
        let deadline = t.deadline();
        DeadlineIo {
            table: &mut t.table,
            deadline,
        }
    }
    sync::io::poll::add_to_linker::<T, HasDeadlineIo>(l, deadline_io)?;
    sync::io::streams::add_to_linker::<T, HasDeadlineIo>(l, deadline_io)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    sync::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    Ok(())
}

/// `weft_sandbox_instances_in_use` (weft-console's /metrics): one while an invocation's instance lives,
/// taken down on drop whatever path ends the call.
struct InUse;

impl InUse {
    fn enter() -> InUse {
        metrics::gauge!("weft_sandbox_instances_in_use").increment(1.0);
        InUse
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        metrics::gauge!("weft_sandbox_instances_in_use").decrement(1.0);
    }
}

/// Links `wasi:http`'s types and outgoing handler (weft:plugin@0.2.0 components only): wasmtime-wasi-http
/// sends every request through [`outbound`]'s hooks, which count, vet and bound it.
fn add_http(linker: &mut Linker<InvocationState>) -> anyhow::Result<()> {
    use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler, types};
    use wasmtime_wasi_http::{WasiHttp, WasiHttpView};
    types::add_to_linker::<InvocationState, WasiHttp>(
        linker,
        &Default::default(),
        InvocationState::http,
    )?;
    outgoing_handler::add_to_linker::<InvocationState, WasiHttp>(linker, InvocationState::http)?;
    Ok(())
}
