//! `weft plugin replay TRACE_ID [--component NEW.wasm]`: runs a recorded execution again — the same
//! context, the same configuration and the same answers to every host call (from the recording kept with
//! the trace-log row) — so a failure seen under `weft up` reproduces on a laptop, deterministically, and a
//! fixed component can be tried against exactly what broke the old one.
//!
//! Owns finding the recording and the component and telling whether the replay matched. Reads the store and
//! `weft.toml` only (it never takes the data directory's lock, so it works beside a running `weft up`);
//! the recording format and the answering are [`crate::replay`]'s.

use super::data::RuntimeArgs;
use crate::registration::Registration;
use crate::replay::{Recording, Replayer};
use crate::sandbox::{Invocation, Sandbox, sha256_hex};
use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use uuid::Uuid;
use weft_store::StoreExt;

/// Flags of `weft plugin replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The plug-in trace log row (`plugintracelogid`: `weft trace` prints it under each failed step).
    pub trace_id: Uuid,
    /// Run this component instead of the one that ran (e.g. a fix); its calls must match the recording's.
    #[arg(long)]
    pub component: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// The bytes of the component that ran: the declared file when it still has that sha256, else the
/// component stored by a runtime replacement.
fn component_that_ran(
    registration: &Registration,
    store: &dyn weft_store::Store,
    recording: &Recording,
) -> anyhow::Result<Vec<u8>> {
    let declared = registration
        .plugins
        .iter()
        .find(|p| p.assembly.name == recording.plugin);
    if let Some(p) = declared
        && let Ok(bytes) = std::fs::read(&p.path)
        && sha256_hex(&bytes) == recording.sha256
    {
        return Ok(bytes);
    }
    let stored = match declared {
        Some(p) => store.read(|r| r.plugin_assembly_content(p.assembly.id))?,
        None => None,
    };
    match stored {
        Some(content) if content.sha256 == recording.sha256 => Ok(content.content),
        _ => bail!(
            "the component that ran (plug-in \"{}\", sha256 {}) is neither its file nor stored any more; \
             pass it with --component FILE",
            recording.plugin,
            recording.sha256
        ),
    }
}

/// `weft plugin replay`.
pub fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let registration = Registration::load(&args.runtime.config)?;
    let store = args.runtime.store()?;
    let id = args.trace_id;
    let text = store.read(|r| r.trace_recording(id))?.with_context(|| {
        format!(
            "trace log row {id} has no recording (recordings are kept for failed executions, or every \
             execution with `[pipeline] record_replays = \"all\"`, and go with the row at its retention)"
        )
    })?;
    let recording = Recording::from_json(&text).with_context(|| format!("trace log row {id}"))?;
    let bytes = match &args.component {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => component_that_ran(&registration, store.as_ref(), &recording)?,
    };
    // The secure configuration is never recorded: the step's current one, as the pipeline would pass it.
    let step = crate::convert::uuid(recording.context.frame.owning_extension.id);
    let secure_config = store.read(|r| r.step_secure_configuration_for_sandbox(step))?;
    let sandbox = Sandbox::new(registration.limits.clone(), None)?;
    let plugin = sandbox.load(&recording.plugin, &bytes)?;
    let plugin = match &recording.plugin_type {
        Some(t) => plugin.for_type(t).map_err(anyhow::Error::msg)?,
        None => plugin,
    };
    let outcome = sandbox.invoke(
        &plugin,
        Invocation {
            context: recording.context.clone(),
            unsecure_config: recording.unsecure_config.clone(),
            secure_config,
            services: Replayer::new(recording.calls.clone()),
        },
    );
    let calls = outcome.services.made.clone();
    print!(
        "{}",
        super::plugin::report_with_calls(&recording.plugin, &outcome, &calls, &sandbox)
    );
    let now = outcome.result.as_ref().err().map(|f| f.message.clone());
    println!("{}", verdict(&recording, now.as_deref(), &outcome.services));
    Ok(if outcome.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line: whether the replay did what the recorded execution did.
fn verdict(recording: &Recording, now: Option<&str>, replayer: &Replayer) -> String {
    if let Some((n, made, recorded)) = &replayer.divergence {
        return format!(
            "replay: differs from the recording at call {n}: made {made}, the recording has {recorded}"
        );
    }
    match (recording.failure.as_deref(), now) {
        (Some(then), Some(now)) if then.lines().next() == now.lines().next() => {
            format!("replay: reproduced: it fails as recorded: {now}")
        }
        (Some(then), Some(now)) => {
            format!("replay: it fails differently: recorded \"{then}\", now \"{now}\"")
        }
        (Some(then), None) => {
            format!("replay: it succeeds now; the recorded execution failed: {then}")
        }
        (None, None) => "replay: reproduced: it succeeds as recorded".into(),
        (None, Some(now)) => {
            format!("replay: it fails now; the recorded execution succeeded: {now}")
        }
    }
}
