//! `weft quickstart`: builds the example plug-ins from source and runs each in
//! the sandbox the way `weft plugin run` does, showing traces, calls, changes
//! and outcomes; then shows a runaway plug-in being stopped; then runs the
//! seed scenario end to end (`seed`). Exits 0 only when everything behaved as
//! expected.

use crate::builder::{self, Artifact};
use crate::context::{self, ContextSpec};
use crate::sandbox::wit::context::{Mode, Stage};
use crate::sandbox::{FailureKind, Invocation, Limits, RecordingServices, Sandbox};
use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `weft quickstart`.
#[derive(Debug, clap::Args)]
pub struct QuickstartArgs {
    /// The plug-in workspace to build the examples from.
    #[arg(long, default_value_os_t = builder::default_plugins_dir())]
    pub plugins: PathBuf,
    /// Where to put the build.
    #[arg(long, default_value_os_t = builder::default_target_dir())]
    pub target_dir: PathBuf,
    /// Where the seed scenario writes its weft.toml, data directory and bus (emptied first) [default:
    /// `quickstart/` beside the build directory].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run the seed scenario on this PostgreSQL database (`postgres://…`, written to its weft.toml as
    /// `[store] url`) instead of the data directory's SQLite file; it must hold no accounts and no system
    /// jobs.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

const ENDPOINT: &str = "c0ffee00-0000-4000-8000-000000000001";

struct Case {
    title: &'static str,
    plugin: &'static str,
    stage: Stage,
    target: &'static str,
    config: Option<&'static str>,
    expect_ok: bool,
}

const CASES: &[Case] = &[
    Case {
        title: "validator accepts a good account (Create, PreValidation)",
        plugin: "validator",
        stage: Stage::PreValidation,
        target: r#"{"name":"Contoso","emailaddress1":"info@contoso.com"}"#,
        config: None,
        expect_ok: true,
    },
    Case {
        title: "validator rejects an account without a name",
        plugin: "validator",
        stage: Stage::PreValidation,
        target: r#"{"name":"","creditlimit":{"money":"100.00"}}"#,
        config: None,
        expect_ok: false,
    },
    Case {
        title: "enricher sets the account number (Create, PreOperation)",
        plugin: "enricher",
        stage: Stage::PreOperation,
        target: r#"{"name":"Fourth Coffee"}"#,
        config: None,
        expect_ok: true,
    },
    Case {
        title: "the custom Azure-aware plug-in posts the context (Create, PostOperation)",
        plugin: "azure-aware",
        stage: Stage::PostOperation,
        target: r#"{"name":"Fourth Coffee","accountnumber":"ACC-FC-1"}"#,
        config: Some(ENDPOINT),
        expect_ok: true,
    },
    Case {
        title: "the custom Azure-aware plug-in without configuration fails clearly",
        plugin: "azure-aware",
        stage: Stage::PostOperation,
        target: r#"{"name":"Fourth Coffee"}"#,
        config: None,
        expect_ok: false,
    },
];

fn find<'a>(artifacts: &'a [Artifact], package: &str) -> anyhow::Result<&'a Artifact> {
    artifacts
        .iter()
        .find(|a| a.package == package)
        .with_context(|| format!("the build produced no component for `{package}`"))
}

pub fn run(args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    println!(
        "== building the example plug-ins from source ({})",
        builder::TARGET
    );
    let packages: Vec<String> = [
        "validator",
        "enricher",
        "azure-aware",
        "infinite-loop",
        "outbound",
    ]
    .map(String::from)
    .to_vec();
    let artifacts = builder::build(&args.plugins, &args.target_dir, &packages, |line| {
        println!("   {line}")
    })?;
    let sandbox = Sandbox::new(
        Limits {
            max_instances: 4,
            ..Limits::default()
        },
        None,
    )?;
    let mut ran = 0;
    for case in CASES {
        let artifact = find(&artifacts, case.plugin)?;
        let plugin = sandbox.load_file(case.plugin, &artifact.path)?;
        let json = serde_json::from_str(case.target)?;
        let spec = ContextSpec {
            message: "Create".into(),
            table: "account".into(),
            stage: case.stage,
            mode: Mode::Synchronous,
            target: Some(context::entity_from_json("account", &json)?),
            depth: 1,
            created_on_ms: 0,
        };
        let outcome = sandbox.invoke(
            &plugin,
            Invocation {
                context: context::build_context(spec),
                unsecure_config: case.config.map(str::to_owned),
                secure_config: None,
                services: RecordingServices {
                    response: "Success".into(),
                    ..RecordingServices::default()
                },
            },
        );
        println!("\n== {}", case.title);
        print!("{}", super::plugin::report(case.plugin, &outcome, &sandbox));
        if outcome.result.is_ok() != case.expect_ok {
            bail!(
                "`{}` did not behave as expected: {}",
                case.plugin,
                case.title
            );
        }
        ran += 1;
    }
    println!("\n== a runaway plug-in is stopped at its deadline (200 ms here)");
    let strict = Sandbox::new(
        Limits {
            deadline_ms: 200,
            max_instances: 2,
            ..Limits::default()
        },
        None,
    )?;
    let looping = strict.load_file("infinite-loop", &find(&artifacts, "infinite-loop")?.path)?;
    let outcome = strict.invoke(
        &looping,
        Invocation {
            context: context::build_context(ContextSpec {
                message: "Create".into(),
                table: "account".into(),
                stage: Stage::PreOperation,
                mode: Mode::Synchronous,
                target: None,
                depth: 1,
                created_on_ms: 0,
            }),
            unsecure_config: None,
            secure_config: None,
            services: RecordingServices::default(),
        },
    );
    print!(
        "{}",
        super::plugin::report("infinite-loop", &outcome, &strict)
    );
    match &outcome.result {
        Err(f) if f.kind == FailureKind::Timeout => ran += 1,
        _ => bail!("the runaway plug-in was not stopped with a timeout"),
    }
    let outbound_calls = outbound_demo(&sandbox, find(&artifacts, "outbound")?)?;
    ran += 1;
    println!(
        "\n== the seed scenario: pipeline, asynchronous service, service endpoints, listeners"
    );
    let dir = args.dir.unwrap_or_else(|| {
        let parent = args.target_dir.parent().unwrap_or(&args.target_dir);
        parent.join("quickstart")
    });
    if dir.join("weft.toml").exists() {
        // A previous quickstart's: the scenario counts from an empty store.
        std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
    } else if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} is not empty and holds no quickstart: choose another --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let counts = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(super::seed::run(&artifacts, &dir, args.store.as_deref()))?;
    let shown = dir.display();
    println!(
        "its weft.toml and data are in {shown}: `weft trace --config {shown}/weft.toml --data {shown}/data`, \
         `weft jobs list --config {shown}/weft.toml --data {shown}/data`"
    );
    println!(
        "\nquickstart ok: {ran} sandbox runs; {} operations ({} rejected); {} system jobs succeeded; \
         {} queue messages, {} webhook call and 1 two-way relay answer received; {} workflow run; \
         {outbound_calls} outbound HTTP call",
        counts.operations,
        counts.rejected,
        counts.jobs_succeeded,
        counts.queue_messages,
        counts.webhook_calls,
        counts.workflow_runs
    );
    Ok(ExitCode::SUCCESS)
}

/// External endpoint access: the `outbound` example plug-in posts an account to a receiver started here on
/// 127.0.0.1. Returns the calls the receiver got.
fn outbound_demo(sandbox: &Sandbox, artifact: &Artifact) -> anyhow::Result<usize> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    println!(
        "\n== the outbound plug-in calls an external endpoint over HTTP (a receiver on this machine)"
    );
    println!(
        "   [plugin.outbound] allow_loopback_for_development = true -- for this local demo only: by default \
         plug-ins reach named hosts with public addresses only"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/accounts",
        axum::routing::post(move |body: String| async move {
            counter.fetch_add(1, Ordering::SeqCst);
            println!("   receiver got: {body}");
            (axum::http::StatusCode::CREATED, "")
        }),
    );
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    // The receiver runs on its own thread while the sandbox (which blocks) runs on this one.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        runtime.block_on(async {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        })
    });
    let plugin = sandbox
        .load_file("outbound", &artifact.path)?
        .with_outbound(Arc::new(
            crate::sandbox::OutboundPolicy::loopback_for_development(),
        ));
    let outcome = sandbox.invoke(
        &plugin,
        Invocation {
            context: context::build_context(ContextSpec {
                message: "Create".into(),
                table: "account".into(),
                stage: Stage::PostOperation,
                mode: Mode::Synchronous,
                target: Some(context::entity_from_json(
                    "account",
                    &serde_json::json!({"name": "Fourth Coffee"}),
                )?),
                depth: 1,
                created_on_ms: 0,
            }),
            unsecure_config: Some(format!("http://localhost:{port}/accounts")),
            secure_config: None,
            services: RecordingServices::default(),
        },
    );
    print!("{}", super::plugin::report("outbound", &outcome, sandbox));
    let _ = stop.send(());
    let _ = server.join();
    if let Err(f) = &outcome.result {
        bail!("the outbound plug-in failed: {f}");
    }
    Ok(received.load(Ordering::SeqCst))
}
