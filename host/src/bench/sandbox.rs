//! `weft bench sandbox`: in one run, the floor (fresh store + instance + one
//! call of an echo export, same engine settings), a plug-in step (fresh
//! instance, 1 KB context, read the Target, set one attribute, one trace,
//! return: the enricher, a weft:plugin@0.2.0 component), the same kind of step
//! through weft:plugin@0.1.0 (the whole context lowered in, the changes lifted
//! out: the `contract-v01` fixture), a 0.2.0 validator step (reads the Target
//! and the message name only) and the cost of one host import call (the
//! difference between 1 000 calls and none, divided by 1 000). Each step is
//! handed a fresh copy of the context made before its clock starts, as the
//! floor's input is: the copy is the benchmark's, not the sandbox's.

use super::percentiles;
use crate::builder::{self, Artifact};
use crate::context::{self, ContextSpec};
use crate::sandbox::wit::context::{ExecutionContext, Mode, Stage};
use crate::sandbox::wit::types::{Parameter, ParameterValue, Value};
use crate::sandbox::{Invocation, Limits, LoadedPlugin, RecordingServices, Sandbox};
use anyhow::{Context as _, bail};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Timed runs of the floor and of each step, by default (the import figure takes a tenth as many).
pub const RUNS: u32 = 20_000;
const IMPORT_CALLS: i32 = 1_000;

/// A Create of an account whose Target carries about 1 KB of attributes.
pub fn one_kb_context() -> ExecutionContext {
    let json = serde_json::json!({
        "name": "Fourth Coffee Roasters and Bakery, Seattle Waterfront",
        "description": "Wholesale coffee roaster supplying cafes across the Pacific Northwest; \
                        prefers deliveries before 7am; net-30 terms; contact the buyer first.",
        "address1_line1": "1200 Alaskan Way, Pier 57",
        "address1_city": "Seattle",
        "address1_stateorprovince": "WA",
        "address1_postalcode": "98101",
        "address1_country": "United States",
        "telephone1": "+1 206 555 0142",
        "emailaddress1": "orders@fourthcoffee.example.com",
        "websiteurl": "https://fourthcoffee.example.com/wholesale",
        "numberofemployees": 180,
        "revenue": {"money": "12500000.00"},
        "creditlimit": {"money": "250000.00"},
        "industrycode": {"option": 19},
        "customertypecode": {"option": 3},
        "donotemail": false,
        "primarycontactid": {"ref": {"table": "contact", "id": "6d81597f-0f9f-e711-8122-000d3aa2331c"}},
        "ownerid": {"ref": {"table": "systemuser", "id": "75c2dd85-e89e-e711-8122-000d3aa2331c"}},
        "tickersymbol": "FCOF",
        "sic": "5149",
        "stockexchange": "NASDAQ",
        "paymenttermscode": {"option": 2},
    });
    let target = context::entity_from_json("account", &json).expect("the fixed JSON is valid");
    context::build_context(ContextSpec {
        message: "Create".into(),
        table: "account".into(),
        stage: Stage::PreOperation,
        mode: Mode::Synchronous,
        target: Some(target),
        depth: 1,
        created_on_ms: 0,
    })
}

/// Times `runs` calls of `once`, each given a fresh `input` made before its
/// clock starts: what a caller hands the sandbox (a context the pipeline has
/// built) is not the sandbox's cost, and the floor's input is not built in its
/// timed region either.
fn time_runs<I>(
    runs: usize,
    mut input: impl FnMut() -> I,
    mut once: impl FnMut(I) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    // Warm up: fill the pool's slots and the caches first.
    for _ in 0..runs / 10 {
        once(input())?;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let given = input();
        let started = Instant::now();
        once(given)?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

fn invoke_ok(
    sandbox: &Sandbox,
    plugin: &LoadedPlugin,
    context: ExecutionContext,
) -> anyhow::Result<()> {
    let outcome = sandbox.invoke(
        plugin,
        Invocation {
            context,
            unsecure_config: None,
            secure_config: None,
            services: RecordingServices::default(),
        },
    );
    match outcome.result {
        Ok(_) => Ok(()),
        Err(failure) => bail!("{failure}"),
    }
}

fn find<'a>(artifacts: &'a [Artifact], package: &str) -> anyhow::Result<&'a Artifact> {
    artifacts
        .iter()
        .find(|a| a.package == package)
        .with_context(|| format!("no component built for `{package}`"))
}

/// The measured figures, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SandboxFigures {
    /// Floor p50.
    pub floor_p50_ns: u128,
    /// Floor p99.
    pub floor_p99_ns: u128,
    /// Step p50.
    pub step_p50_ns: u128,
    /// Step p99.
    pub step_p99_ns: u128,
    /// One host import call, p50.
    pub import_p50_ns: u128,
    /// The 0.1.0 step (contract-v01) p50.
    pub step_v01_p50_ns: u128,
    /// The 0.2.0 validator step p50.
    pub validator_p50_ns: u128,
}

/// Builds the fixtures and measures.
pub fn measure(runs: usize, progress: impl FnMut(&str)) -> anyhow::Result<SandboxFigures> {
    let packages: Vec<String> = [
        "echo",
        "enricher",
        "bench-imports",
        "contract-v01",
        "validator",
    ]
    .map(String::from)
    .to_vec();
    let artifacts = builder::build(
        &builder::default_plugins_dir(),
        &builder::default_target_dir(),
        &packages,
        progress,
    )?;
    let sandbox = Sandbox::new(
        Limits {
            max_instances: 8,
            ..Limits::default()
        },
        None,
    )?;
    let echo_bytes = std::fs::read(&find(&artifacts, "echo")?.path)?;
    let echo = sandbox.load_echo(&echo_bytes, one_kb_context())?;
    let mut floor = time_runs(runs, || (), |()| sandbox.call_echo(&echo, "x").map(drop))?;

    let enricher = sandbox.load_file("enricher", &find(&artifacts, "enricher")?.path)?;
    let context = one_kb_context();
    let mut step = time_runs(
        runs,
        || context.clone(),
        |c| invoke_ok(&sandbox, &enricher, c),
    )?;

    let v01 = sandbox.load_file("contract-v01", &find(&artifacts, "contract-v01")?.path)?;
    let mut step_v01 = time_runs(runs, || context.clone(), |c| invoke_ok(&sandbox, &v01, c))?;
    let validator = sandbox.load_file("validator", &find(&artifacts, "validator")?.path)?;
    let mut validate = time_runs(
        runs,
        || context.clone(),
        |c| invoke_ok(&sandbox, &validator, c),
    )?;

    let imports = sandbox.load_file("bench-imports", &find(&artifacts, "bench-imports")?.path)?;
    let with_count = |count: i32| {
        let mut ctx = context.clone();
        ctx.frame.input_parameters.push(Parameter {
            name: "count".into(),
            value: ParameterValue::Value(Value::Integer(count)),
        });
        ctx
    };
    let (none, many) = (with_count(0), with_count(IMPORT_CALLS));
    let mut zero = time_runs(
        runs / 10,
        || none.clone(),
        |c| invoke_ok(&sandbox, &imports, c),
    )?;
    let mut thousand = time_runs(
        runs / 10,
        || many.clone(),
        |c| invoke_ok(&sandbox, &imports, c),
    )?;

    let floor = percentiles(&mut floor);
    let step = percentiles(&mut step);
    let zero = percentiles(&mut zero);
    let thousand = percentiles(&mut thousand);
    let step_v01 = percentiles(&mut step_v01);
    let validate = percentiles(&mut validate);
    Ok(SandboxFigures {
        step_v01_p50_ns: step_v01.p50.as_nanos(),
        validator_p50_ns: validate.p50.as_nanos(),
        floor_p50_ns: floor.p50.as_nanos(),
        floor_p99_ns: floor.p99.as_nanos(),
        step_p50_ns: step.p50.as_nanos(),
        step_p99_ns: step.p99.as_nanos(),
        import_p50_ns: thousand.p50.saturating_sub(zero.p50).as_nanos() / IMPORT_CALLS as u128,
    })
}

/// `weft bench sandbox [--json]`.
pub fn run(json: bool, runs: usize) -> anyhow::Result<ExitCode> {
    let f = measure(runs, |line| eprintln!("{line}"))?;
    let over_floor = |ns: u128| ns as f64 / f.floor_p50_ns.max(1) as f64;
    let ratio = over_floor(f.step_p50_ns);
    let v01_ratio = over_floor(f.step_v01_p50_ns);
    let validator_ratio = over_floor(f.validator_p50_ns);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "floor_p50_ns": f.floor_p50_ns,
                "floor_p99_ns": f.floor_p99_ns,
                "step_p50_ns": f.step_p50_ns,
                "step_p99_ns": f.step_p99_ns,
                "import_p50_ns": f.import_p50_ns,
                "step_over_floor": (ratio * 100.0).round() / 100.0,
                "step_v01_p50_ns": f.step_v01_p50_ns,
                "step_v01_over_floor": (v01_ratio * 100.0).round() / 100.0,
                "validator_p50_ns": f.validator_p50_ns,
                "validator_over_floor": (validator_ratio * 100.0).round() / 100.0,
            })
        );
    } else {
        println!(
            "floor  (fresh instance + echo call)  p50 {:>8} ns  p99 {:>8} ns",
            f.floor_p50_ns, f.floor_p99_ns
        );
        println!(
            "step   (1 KB context, enricher)      p50 {:>8} ns  p99 {:>8} ns  ({ratio:.2}x floor)",
            f.step_p50_ns, f.step_p99_ns
        );
        println!(
            "step   (same, weft:plugin@0.1.0)     p50 {:>8} ns              ({v01_ratio:.2}x floor)",
            f.step_v01_p50_ns
        );
        println!(
            "step   (0.2.0 validator)             p50 {:>8} ns              ({validator_ratio:.2}x floor)",
            f.validator_p50_ns
        );
        println!(
            "import (one host call)               p50 {:>8} ns",
            f.import_p50_ns
        );
        println!("goals: step p50 <= 15000 ns and <= 3x floor; import <= 1000 ns");
    }
    Ok(ExitCode::SUCCESS)
}
