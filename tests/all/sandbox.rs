//! The sandbox against real components: examples behave, every hostile
//! fixture is contained with the right typed error, and the sandbox keeps
//! serving afterwards.

use crate::fixtures;
use std::time::Duration;
use weft_host::context::{self, ContextSpec};
use weft_host::sandbox::wit::context::{ExecutionContext, Mode, Stage};
use weft_host::sandbox::wit::types::{ParameterValue, Value};
use weft_host::sandbox::{
    CacheOutcome, FailureKind, Invocation, Limits, Outcome, Quota, RecordedCall, RecordingServices,
    Sandbox,
};

fn account_context(stage: Stage, target: &str) -> ExecutionContext {
    let json = serde_json::from_str(target).unwrap();
    context::build_context(ContextSpec {
        message: "Create".into(),
        table: "account".into(),
        stage,
        mode: Mode::Synchronous,
        target: Some(context::entity_from_json("account", &json).unwrap()),
        depth: 1,
        created_on_ms: 1_700_000_000_000,
    })
}

fn sandbox(limits: Limits) -> Sandbox {
    Sandbox::new(
        Limits {
            max_instances: 4,
            ..limits
        },
        None,
    )
    .unwrap()
}

fn run(
    sandbox: &Sandbox,
    package: &str,
    context: ExecutionContext,
    config: Option<&str>,
) -> Outcome<RecordingServices> {
    let plugin = fixtures::load(sandbox, package);
    sandbox.invoke(
        &plugin,
        Invocation {
            context,
            unsecure_config: config.map(str::to_owned),
            secure_config: None,
            services: RecordingServices {
                response: "Success".into(),
                ..RecordingServices::default()
            },
        },
    )
}

/// Runs a fixture on an empty Create of an account.
fn hostile(sandbox: &Sandbox, package: &str, stage: Stage) -> Outcome<RecordingServices> {
    run(sandbox, package, account_context(stage, "{}"), None)
}

/// Runs the probe fixture with `commands` (its unsecure configuration) on an empty Create of an account.
fn probe(sandbox: &Sandbox, commands: &str) -> Outcome<RecordingServices> {
    run(
        sandbox,
        "probe",
        account_context(Stage::PreOperation, "{}"),
        Some(commands),
    )
}

/// After a hostile run, the same sandbox still runs a good plug-in correctly.
fn still_serves(sandbox: &Sandbox) {
    let outcome = run(
        sandbox,
        "enricher",
        account_context(Stage::PreOperation, r#"{"name":"Fourth Coffee"}"#),
        None,
    );
    let changes = outcome
        .result
        .expect("the enricher runs after a hostile plug-in");
    assert!(changes.input_parameters.is_some());
}

fn failure_kind(outcome: &Outcome<RecordingServices>) -> FailureKind {
    match &outcome.result {
        Ok(_) => panic!("the plug-in was expected to fail"),
        Err(f) => f.kind.clone(),
    }
}

/// The enricher's change to the Target comes back as changed InputParameters.
#[test]
fn enricher_changes_the_target() {
    let sandbox = sandbox(Limits::default());
    let outcome = run(
        &sandbox,
        "enricher",
        account_context(Stage::PreOperation, r#"{"name":"Fourth Coffee"}"#),
        None,
    );
    let changes = outcome.result.unwrap();
    let input = changes.input_parameters.expect("InputParameters changed");
    let ParameterValue::Entity(target) = &input[0].value else {
        panic!("Target is an entity")
    };
    let number = target
        .attributes
        .iter()
        .find(|a| a.name == "accountnumber")
        .expect("accountnumber set");
    assert!(matches!(&number.value, Value::String(s) if s.starts_with("ACC-FC-")));
    // The rest of the Target is kept, in order (the SDK sends the one attribute it appended).
    let names: Vec<&str> = target.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["name", "accountnumber"]);
    assert!(changes.shared_variables.is_none() && changes.output_parameters.is_none());
    assert_eq!(outcome.traces.len(), 1);
    assert!(outcome.usage.peak_memory_bytes > 0);
}

/// The validator's message reaches the caller verbatim with status Failed (0).
#[test]
fn validator_message_is_verbatim() {
    let sandbox = sandbox(Limits::default());
    let outcome = run(
        &sandbox,
        "validator",
        account_context(Stage::PreValidation, r#"{"name":""}"#),
        None,
    );
    let failure = outcome.result.unwrap_err();
    assert_eq!(
        failure.kind,
        FailureKind::Plugin {
            status: 0,
            error_code: None
        }
    );
    assert_eq!(failure.message, "Account name is required.");
}

/// The Azure-aware plug-in posts to the endpoint from its configuration and
/// traces the two-way answer.
#[test]
fn azure_aware_posts_to_configured_endpoint() {
    let sandbox = sandbox(Limits::default());
    let endpoint = "c0ffee00-0000-4000-8000-000000000001";
    let outcome = run(
        &sandbox,
        "azure-aware",
        account_context(Stage::PostOperation, r#"{"name":"Contoso"}"#),
        Some(endpoint),
    );
    assert!(outcome.result.is_ok(), "{:?}", outcome.result.err());
    assert_eq!(
        outcome.services.calls,
        vec![RecordedCall::Notify {
            endpoint: context::parse_guid(endpoint).unwrap(),
            shared_variables: None
        }]
    );
    assert_eq!(outcome.traces.last().unwrap(), "Response: Success");
    // Without configuration it fails clearly and posts nothing.
    let outcome = run(
        &sandbox,
        "azure-aware",
        account_context(Stage::PostOperation, r#"{"name":"Contoso"}"#),
        None,
    );
    assert!(outcome.services.calls.is_empty());
    assert!(
        outcome
            .result
            .unwrap_err()
            .message
            .contains("unsecure configuration")
    );
}

/// An infinite loop is stopped at the deadline (not before, and not hung).
#[test]
fn infinite_loop_times_out() {
    let deadline = Duration::from_millis(300);
    let sandbox = sandbox(Limits {
        deadline_ms: deadline.as_millis() as u64,
        ..Limits::default()
    });
    let outcome = hostile(&sandbox, "infinite-loop", Stage::PreOperation);
    assert_eq!(failure_kind(&outcome), FailureKind::Timeout);
    // Deadlines count epoch ticks from a ticker with its own phase, so the stop
    // lands within one tick either side of the deadline.
    let tick = Duration::from_millis(Limits::default().epoch_tick_ms);
    assert!(
        outcome.usage.elapsed >= deadline - tick,
        "{:?}",
        outcome.usage.elapsed
    );
    // Generous slack: this guards against a hang, it is not a timing goal.
    assert!(outcome.usage.elapsed < deadline + Duration::from_secs(5));
    still_serves(&sandbox);
}

/// With fuel on, the same loop ends with out-of-fuel instead.
#[test]
fn infinite_loop_runs_out_of_fuel() {
    let sandbox = sandbox(Limits {
        fuel: Some(5_000_000),
        ..Limits::default()
    });
    let outcome = hostile(&sandbox, "infinite-loop", Stage::PreOperation);
    assert_eq!(failure_kind(&outcome), FailureKind::OutOfFuel);
    assert_eq!(outcome.usage.fuel_consumed, Some(5_000_000));
    still_serves(&sandbox);
}

/// A memory bomb gets a typed memory-limit error, not "unreachable".
#[test]
fn memory_bomb_hits_memory_limit() {
    let sandbox = sandbox(Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    });
    let outcome = hostile(&sandbox, "memory-bomb", Stage::PreOperation);
    assert_eq!(failure_kind(&outcome), FailureKind::MemoryLimit);
    assert!(outcome.usage.peak_memory_bytes <= 16 << 20);
    still_serves(&sandbox);
}

/// Unbounded recursion is a stack overflow.
#[test]
fn stack_overflow_is_typed() {
    let sandbox = sandbox(Limits::default());
    let outcome = hostile(&sandbox, "stack-overflow", Stage::PreOperation);
    assert_eq!(failure_kind(&outcome), FailureKind::StackOverflow);
    still_serves(&sandbox);
}

/// A panic is a trap carrying the panic message and a demangled backtrace.
#[test]
fn panic_is_a_trap_with_stderr_and_backtrace() {
    let sandbox = sandbox(Limits::default());
    let outcome = hostile(&sandbox, "panic", Stage::PreOperation);
    let failure = outcome.result.as_ref().unwrap_err();
    assert_eq!(failure.kind, FailureKind::Trap);
    assert!(
        failure
            .stderr_tail
            .contains("plug-in panicked on purpose in Create"),
        "{}",
        failure.stderr_tail
    );
    let backtrace = failure.backtrace.as_deref().expect("a guest backtrace");
    assert!(backtrace.contains("explode"), "{backtrace}");
    still_serves(&sandbox);
}

/// What a plug-in prints reaches the outcome's stdout and stderr, though an SDK component links no WASI
/// stream: the SDK's `write` sends it through `write-output`.
#[test]
fn printed_output_reaches_the_outcome() {
    let sandbox = sandbox(Limits::default());
    let outcome = probe(
        &sandbox,
        "lean;print=to stdout;eprint=to stderr;print=again",
    );
    outcome.result.as_ref().expect("the probe runs");
    assert_eq!(outcome.stdout, "to stdout\nagain\n");
    assert_eq!(outcome.stderr, "to stderr\n");
    assert_eq!(outcome.usage.output_bytes, 26);
}

/// One print longer than a call may carry reaches the host in several calls, and the tail keeps its end.
#[test]
fn a_long_print_arrives_whole_and_the_tail_keeps_its_end() {
    let limits = Limits::default();
    let kept = limits.output_bytes;
    let sandbox = sandbox(limits);
    let outcome = probe(&sandbox, "lean;flood=200000");
    outcome.result.as_ref().expect("the probe runs");
    let printed: String = (0..200_000)
        .map(|i| char::from(b'0' + (i % 10) as u8))
        .chain(std::iter::once('\n'))
        .collect();
    assert_eq!(outcome.stdout, printed[printed.len() - kept..]);
}

/// `write-output` carries at most 64 KiB a call (as a WASI stream's write): more ends the invocation with a
/// trap naming the call, so a plug-in cannot make the host copy its whole memory again and again.
#[test]
fn write_output_refuses_more_than_64_kib_in_one_call() {
    let sandbox = sandbox(Limits::default());
    let raw_output = |n: usize| probe(&sandbox, &format!("lean;raw-output={n}"));
    let fits = raw_output(64 << 10);
    fits.result.as_ref().expect("64 KiB in one call is taken");
    let over = raw_output((64 << 10) + 1);
    let failure = over.result.as_ref().unwrap_err();
    assert_eq!(failure.kind, FailureKind::Trap, "{}", failure.message);
    assert!(
        failure
            .message
            .contains("write-output: 65537 bytes in one call; at most 65536"),
        "{}",
        failure.message
    );
    still_serves(&sandbox);
}

/// A plug-in built with the SDK imports weft's interfaces only, unless it reaches for WASI itself (the
/// filesystem fixture does): the standard library's stdio, terminals, environment and exit are not
/// linked, so a fresh instance does not pay for them.
#[test]
fn sdk_components_import_no_wasi_unless_they_use_it() {
    let sandbox = sandbox(Limits::default());
    let engine = sandbox.engine();
    let imports = |package: &str| -> Vec<String> {
        let component =
            wasmtime::component::Component::from_file(engine, fixtures::component(package))
                .unwrap();
        component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            // Interfaces only: the world also imports its exports' types by plain name.
            .filter(|name| name.contains(':'))
            .collect()
    };
    for package in ["enricher", "validator", "panic", "probe"] {
        let names = imports(package);
        assert!(
            names.iter().all(|n| n.starts_with("weft:plugin/")),
            "{package} imports {names:?}"
        );
        assert!(
            names.iter().any(|n| n == "weft:plugin/tracing@0.2.0"),
            "{package}: {names:?}"
        );
    }
    let filesystem = imports("filesystem");
    assert!(
        filesystem.iter().any(|n| n.starts_with("wasi:filesystem/")),
        "{filesystem:?}"
    );
}

/// A trace flood ends with the trace-bytes quota, keeping only what fit.
#[test]
fn trace_flood_hits_quota() {
    let limits = Limits::default();
    let sandbox = sandbox(limits.clone());
    let outcome = hostile(&sandbox, "trace-flood", Stage::PreOperation);
    assert_eq!(
        failure_kind(&outcome),
        FailureKind::Quota(Quota::TraceBytes)
    );
    let kept: usize = outcome.traces.iter().map(String::len).sum();
    assert!(kept <= limits.trace_bytes);
    still_serves(&sandbox);
}

/// A trace flood with a lower call quota ends on the call count instead.
#[test]
fn trace_flood_hits_call_quota() {
    let sandbox = sandbox(Limits {
        trace_calls: 10,
        ..Limits::default()
    });
    let outcome = hostile(&sandbox, "trace-flood", Stage::PreOperation);
    assert_eq!(
        failure_kind(&outcome),
        FailureKind::Quota(Quota::TraceCalls)
    );
    assert_eq!(outcome.traces.len(), 10);
}

/// An execute flood ends at the post quota; posts beyond it never happen.
#[test]
fn execute_flood_hits_quota() {
    let limits = Limits::default();
    let sandbox = sandbox(limits.clone());
    let outcome = hostile(&sandbox, "execute-flood", Stage::PostOperation);
    assert_eq!(
        failure_kind(&outcome),
        FailureKind::Quota(Quota::ExecuteCalls)
    );
    assert_eq!(outcome.services.calls.len(), limits.execute_calls as usize);
    still_serves(&sandbox);
}

/// A huge return value is refused with the return-bytes quota.
#[test]
fn huge_return_hits_quota() {
    let sandbox = sandbox(Limits::default());
    let outcome = hostile(&sandbox, "huge-return", Stage::PreOperation);
    assert_eq!(
        failure_kind(&outcome),
        FailureKind::Quota(Quota::ReturnBytes)
    );
    still_serves(&sandbox);
}

/// A component importing WASI sockets is refused at load, naming the import.
#[test]
fn sockets_import_is_refused_at_load() {
    let sandbox = sandbox(Limits::default());
    let failure = match sandbox.load_file("sockets", &fixtures::component("sockets")) {
        Ok(_) => panic!("a component importing sockets must not load"),
        Err(failure) => failure,
    };
    assert_eq!(failure.kind, FailureKind::InvalidComponent);
    assert!(
        failure.message.contains("wasi:sockets"),
        "{}",
        failure.message
    );
    still_serves(&sandbox);
}

/// The file system is linked with no preopened directory: reads fail.
#[test]
fn filesystem_reads_are_denied() {
    let sandbox = sandbox(Limits::default());
    let outcome = hostile(&sandbox, "filesystem", Stage::PreOperation);
    let failure = outcome.result.unwrap_err();
    assert!(
        failure.message.starts_with("denied:"),
        "{}",
        failure.message
    );
    still_serves(&sandbox);
}

/// Bytes that are not a component, and a component without the plug-in
/// export, are refused with a clear error.
#[test]
fn invalid_components_are_refused() {
    let sandbox = sandbox(Limits::default());
    let garbage = sandbox
        .load("garbage", b"\0asm\x0d\0\x01\0not really")
        .err()
        .unwrap();
    assert_eq!(garbage.kind, FailureKind::InvalidComponent);
    let echo = sandbox
        .load("echo", &fixtures::bytes("echo"))
        .err()
        .unwrap();
    assert_eq!(echo.kind, FailureKind::InvalidComponent);
    assert!(echo.message.contains("execute"), "{}", echo.message);
}

/// The component cache: compiled once, then hit; a corrupt entry is
/// recompiled and replaced, never loaded.
#[test]
fn component_cache_verifies_entries() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fixtures::bytes("enricher");
    let cached = || {
        Sandbox::new(
            Limits {
                max_instances: 2,
                ..Limits::default()
            },
            Some(dir.path().to_owned()),
        )
        .unwrap()
    };
    let first = cached();
    let plugin = first.load("enricher", &bytes).unwrap();
    assert_eq!(plugin.cache_outcome(), Some(CacheOutcome::Compiled));
    assert_eq!(
        cached().load("enricher", &bytes).unwrap().cache_outcome(),
        Some(CacheOutcome::Hit)
    );

    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let mut corrupt = std::fs::read(&artifact).unwrap();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    std::fs::write(&artifact, corrupt).unwrap();
    let sandbox = cached();
    let reloaded = sandbox.load("enricher", &bytes).unwrap();
    assert_eq!(reloaded.cache_outcome(), Some(CacheOutcome::Replaced));
    assert_eq!(
        cached().load("enricher", &bytes).unwrap().cache_outcome(),
        Some(CacheOutcome::Hit)
    );
    let outcome = sandbox.invoke(
        &reloaded,
        Invocation {
            context: account_context(Stage::PreOperation, r#"{"name":"A"}"#),
            unsecure_config: None,
            secure_config: None,
            services: RecordingServices::default(),
        },
    );
    assert!(outcome.result.is_ok());
}

/// Limits that make no sense are refused up front.
#[test]
fn nonsense_limits_are_refused() {
    let err = Sandbox::new(
        Limits {
            memory_bytes: 10,
            ..Limits::default()
        },
        None,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("memory_bytes"), "{err}");
}
