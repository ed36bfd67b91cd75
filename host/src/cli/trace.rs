//! `weft trace [--follow]`: the plug-in trace log as an operator reads it — operations newest first,
//! the steps of one operation (one correlation id) in the order they ran, each named by its step's name
//! (and the plug-in it ran), failures with their message first. `--follow` keeps printing new entries
//! as operations run, like `tail -f`. Reads the store only; never writes.

use super::data::RuntimeArgs;
use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;
use uuid::Uuid;
use weft_store::system::{TraceFilter, TraceLog, TraceOutcome};
use weft_store::{Store, StoreExt};

/// Flags of `weft trace`.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Only this correlation id (one operation with its child operations).
    #[arg(long)]
    correlation: Option<Uuid>,
    /// Only this step id.
    #[arg(long)]
    step: Option<Uuid>,
    /// At most this many entries.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Keep printing new entries as they are written (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    follow: bool,
}

/// How often `--follow` looks for new entries.
const FOLLOW_POLL: Duration = Duration::from_millis(300);

/// Step names by id, as registered now (a deleted step shows its id).
fn step_names(store: &dyn Store) -> anyhow::Result<HashMap<Uuid, String>> {
    let steps = store.read(|r| r.steps())?;
    Ok(steps.into_iter().map(|s| (s.def.id, s.def.name)).collect())
}

/// One entry's lines: the step (by name), what it ran, where, how long, the outcome; then its traces.
pub fn entry_text(log: &TraceLog, names: &HashMap<Uuid, String>) -> String {
    let e = &log.entry;
    // A step by its name; one that is not registered (a Custom API's main operation, a deleted
    // step) by the plug-in it ran.
    let step = e
        .step_id
        .and_then(|id| names.get(&id))
        .map_or_else(|| e.plugin.clone(), |n| format!("\"{n}\""));
    let outcome = match e.outcome {
        TraceOutcome::Succeeded => "ok".to_owned(),
        // The message (a panic's, a plug-in's) before any backtrace lines.
        TraceOutcome::Failed => format!(
            "FAILED: {}",
            e.error
                .as_deref()
                .and_then(|t| t.lines().next())
                .unwrap_or("")
        ),
    };
    let mut text = format!(
        "  step {step} ({}) {} {} depth {} in {} ms: {outcome}\n",
        e.plugin,
        e.message_name,
        e.primary_entity.as_deref().unwrap_or("-"),
        e.depth,
        e.duration_ms,
    );
    for line in e.trace.lines() {
        text.push_str(&format!("    | {line}\n"));
    }
    if e.outcome == TraceOutcome::Failed {
        text.push_str(&format!(
            "    trace row {}: reproduce with `weft plugin replay {}`\n",
            log.id, log.id
        ));
    }
    text
}

/// Entries grouped by operation: newest operation first, its steps in execution order.
fn grouped(mut logs: Vec<TraceLog>) -> Vec<(Uuid, Vec<TraceLog>)> {
    // The store answers newest first; execution order is the reverse.
    logs.reverse();
    let mut groups: Vec<(Uuid, Vec<TraceLog>)> = Vec::new();
    for log in logs {
        match groups
            .iter_mut()
            .find(|(c, _)| *c == log.entry.correlation_id)
        {
            Some((_, entries)) => entries.push(log),
            None => groups.push((log.entry.correlation_id, vec![log])),
        }
    }
    // Newest operation (by its last entry) first.
    groups.sort_by_key(|(_, entries)| std::cmp::Reverse(entries.last().map(|e| e.created_on)));
    groups
}

/// `weft trace`.
pub fn trace(args: TraceArgs) -> anyhow::Result<ExitCode> {
    let store = args.runtime.store()?;
    let filter = TraceFilter {
        step_id: args.step,
        correlation_id: args.correlation,
        limit: Some(args.limit),
        ..TraceFilter::default()
    };
    let logs = store.read(|r| r.trace_logs(&filter))?;
    let mut names = step_names(store.as_ref())?;
    let mut seen: HashSet<Uuid> = logs.iter().map(|l| l.id).collect();
    for (correlation, entries) in grouped(logs) {
        println!("operation {correlation}");
        for log in &entries {
            print!("{}", entry_text(log, &names));
        }
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(FOLLOW_POLL);
        let mut fresh: Vec<TraceLog> = store
            .read(|r| r.trace_logs(&filter))?
            .into_iter()
            .filter(|l| !seen.contains(&l.id))
            .collect();
        if fresh.is_empty() {
            continue;
        }
        if fresh
            .iter()
            .any(|l| l.entry.step_id.is_some_and(|id| !names.contains_key(&id)))
        {
            names = step_names(store.as_ref())?;
        }
        fresh.reverse();
        for log in fresh {
            seen.insert(log.id);
            println!("operation {}", log.entry.correlation_id);
            print!("{}", entry_text(&log, &names));
        }
        use std::io::Write as _;
        std::io::stdout().flush()?;
    }
}
