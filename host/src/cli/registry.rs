//! Registration from the command line: `weft plugins list`, `weft steps list|enable|disable`,
//! `weft endpoints list` and `weft plugin push NAME FILE` (hot replacement), each against the data
//! directory (`--config`/`--data`) or a running `weft up` (`--server URL`, as the Web API's own
//! `sdkmessageprocessingsteps`, `pluginassemblies` and `serviceendpoints` routes are used). Steps and
//! plug-ins are named by name or id, wherever an id is taken.
//!
//! Owns the command shapes and their printing. The rules (what a change may do, when it takes effect)
//! are the pipeline's, reached through [`crate::pipeline::Pipeline`] in-process or the API remotely.

use super::data::RuntimeArgs;
use super::remote::Remote;
use crate::pipeline::StepChange;
use crate::runtime::Runtime;
use anyhow::{Context as _, bail};
use reqwest::Method;
use serde_json::{Value as Json, json};
use std::path::PathBuf;
use std::process::ExitCode;
use uuid::Uuid;
use weft_store::StoreExt as _;
use weft_store::system::StepState;

/// Where the registration lives: a data directory, or a running weft's Web API.
#[derive(Debug, clap::Args)]
pub struct Target {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// A running `weft up` (e.g. `http://127.0.0.1:5380`) instead of the data directory.
    #[arg(long)]
    server: Option<String>,
    /// With --server: the key sent as `Authorization: Bearer …`. Never printed.
    #[arg(long, env = "WEFT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl Target {
    fn remote(&self) -> anyhow::Result<Option<Remote>> {
        self.server
            .as_deref()
            .map(|s| Remote::new(s, self.api_key.clone(), &None, &None))
            .transpose()
    }
}

/// `weft steps …`.
#[derive(Debug, clap::Subcommand)]
pub enum StepsCommand {
    /// The registered steps in execution order, with their ids.
    List(Target),
    /// Enable a step (by name or id).
    Enable {
        /// The step's name or id.
        step: String,
        #[command(flatten)]
        target: Target,
    },
    /// Disable a step (by name or id): it stops firing for operations that start afterwards.
    Disable {
        /// The step's name or id.
        step: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `weft plugin push NAME FILE`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The plug-in (assembly) name or id.
    pub plugin: String,
    /// The new component (.wasm).
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
}

/// The annotation suffix that carries a lookup's display name.
const FORMATTED: &str = "@OData.Community.Display.V1.FormattedValue";

/// One step row, as both sources give it.
struct StepRow {
    id: Uuid,
    name: String,
    message: String,
    table: String,
    stage: i64,
    mode: i64,
    rank: i64,
    enabled: bool,
}

fn text(row: &Json, key: &str) -> String {
    row.get(key)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn steps(target: &Target) -> anyhow::Result<Vec<StepRow>> {
    if let Some(remote) = target.remote()? {
        let rows = remote.get_json("sdkmessageprocessingsteps")?;
        let list = rows["value"].as_array().cloned().unwrap_or_default();
        return list
            .iter()
            .map(|r| {
                Ok(StepRow {
                    id: text(r, "sdkmessageprocessingstepid").parse()?,
                    name: text(r, "name"),
                    message: text(r, &format!("_sdkmessageid_value{FORMATTED}")),
                    table: text(r, &format!("_sdkmessagefilterid_value{FORMATTED}")),
                    stage: r["stage"].as_i64().unwrap_or_default(),
                    mode: r["mode"].as_i64().unwrap_or_default(),
                    rank: r["rank"].as_i64().unwrap_or_default(),
                    enabled: r["statecode"].as_i64() == Some(0),
                })
            })
            .collect();
    }
    // The store answers them ordered by message, stage and rank.
    let store = target.runtime.store()?;
    let rows = store.read(|r| r.steps())?;
    Ok(rows
        .into_iter()
        .map(|s| StepRow {
            id: s.def.id,
            name: s.def.name,
            message: s.def.message,
            table: s.def.primary_entity.unwrap_or_default(),
            stage: s.def.stage.value().into(),
            mode: s.def.mode.value().into(),
            rank: s.def.rank.into(),
            enabled: s.def.state == StepState::Enabled,
        })
        .collect())
}

/// The one entry of `rows` (`(id, name)`) that `name_or_id` names; `kind` ("step", "plug-in") for the
/// errors, which list the near names of an unknown one and the ids of an ambiguous one.
fn find_named<'r>(
    kind: &str,
    rows: &'r [(Uuid, String)],
    name_or_id: &str,
) -> anyhow::Result<&'r (Uuid, String)> {
    if let Ok(id) = name_or_id.parse::<Uuid>()
        && let Some(row) = rows.iter().find(|(i, _)| *i == id)
    {
        return Ok(row);
    }
    let matches: Vec<&(Uuid, String)> = rows.iter().filter(|(_, n)| n == name_or_id).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "no {kind} is named \"{name_or_id}\"{}",
            crate::suggest::did_you_mean(name_or_id, rows.iter().map(|(_, n)| n.as_str()))
        ),
        many => bail!(
            "{} {kind}s are named \"{name_or_id}\": give an id ({})",
            many.len(),
            many.iter()
                .map(|(id, _)| id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `weft steps …`.
pub fn steps_command(command: StepsCommand) -> anyhow::Result<ExitCode> {
    let (step, target, state) = match command {
        StepsCommand::List(target) => {
            for r in steps(&target)? {
                println!(
                    "{}  \"{}\"  {} {}  stage {} mode {} rank {}{}",
                    r.id,
                    r.name,
                    r.message,
                    if r.table.is_empty() {
                        "(any table)"
                    } else {
                        &r.table
                    },
                    r.stage,
                    r.mode,
                    r.rank,
                    if r.enabled { "" } else { "  (disabled)" }
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        StepsCommand::Enable { step, target } => (step, target, StepState::Enabled),
        StepsCommand::Disable { step, target } => (step, target, StepState::Disabled),
    };
    let rows: Vec<(Uuid, String)> = steps(&target)?
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect();
    let (id, _) = *find_named("step", &rows, &step)?;
    if let Some(remote) = target.remote()? {
        remote.send_json(
            Method::PATCH,
            &format!("sdkmessageprocessingsteps({id})"),
            &json!({ "statecode": state.value() }),
        )?;
    } else {
        let runtime = Runtime::open(&target.runtime.config, &target.runtime.data)?;
        runtime
            .pipeline
            .update_step(
                id,
                StepChange {
                    state: Some(state),
                    ..Default::default()
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    println!(
        "step {id} {}",
        if state == StepState::Enabled {
            "enabled"
        } else {
            "disabled"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `weft plugins list`.
pub fn plugins_list(target: Target) -> anyhow::Result<ExitCode> {
    let rows: Vec<(String, String, String)> = if let Some(remote) = target.remote()? {
        let rows = remote.get_json("pluginassemblies")?;
        rows["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    text(r, "pluginassemblyid"),
                    text(r, "name"),
                    text(r, "sourcehash"),
                )
            })
            .collect()
    } else {
        let store = target.runtime.store()?;
        let assemblies = store.read(|r| r.plugin_assemblies())?;
        let mut rows = Vec::new();
        for a in assemblies {
            // What runs: a component replaced at runtime, else the file (whose sha256 the row
            // holds only when weft.toml pinned it).
            let replaced = store.read(move |r| r.plugin_assembly_content(a.id))?;
            let sha = match (replaced, &a.sha256) {
                (Some(content), _) => content.sha256,
                (None, Some(sha)) => sha.clone(),
                (None, None) => std::fs::read(&a.component_path)
                    .map(|bytes| crate::sandbox::sha256_hex(&bytes))
                    .unwrap_or_else(|_| "? (component file unreadable)".to_owned()),
            };
            rows.push((a.id.to_string(), a.name, sha));
        }
        rows
    };
    for (id, name, sha) in rows {
        println!("{id}  {name}  sha256 {sha}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `weft endpoints list`.
pub fn endpoints_list(target: Target) -> anyhow::Result<ExitCode> {
    let rows: Vec<Json> = if let Some(remote) = target.remote()? {
        remote.get_json("serviceendpoints")?["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    } else {
        let store = target.runtime.store()?;
        store
            .read(|r| r.service_endpoints())?
            .into_iter()
            .map(|e| {
                json!({
                    "serviceendpointid": e.def.id, "name": e.def.name, "contract": e.def.contract.value(),
                    "messageformat": e.def.message_format.value(), "authtype": e.def.auth_type.value(),
                })
            })
            .collect()
    };
    for r in rows {
        println!(
            "{}  \"{}\"  contract {} format {} auth {}",
            text(&r, "serviceendpointid"),
            text(&r, "name"),
            r["contract"],
            r["messageformat"],
            r["authtype"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `weft plugin push NAME FILE`: replaces the plug-in's component without a restart.
pub fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let target = &args.target;
    if let Some(remote) = target.remote()? {
        let listed = remote.get_json("pluginassemblies")?;
        let rows: Vec<(Uuid, String)> = listed["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((text(r, "pluginassemblyid").parse().ok()?, text(r, "name"))))
            .collect();
        let (id, name) = find_named("plug-in", &rows, &args.plugin)?;
        use base64::Engine as _;
        let answer = remote.send_json(
            Method::PATCH,
            &format!("pluginassemblies({id})"),
            &json!({ "content": base64::engine::general_purpose::STANDARD.encode(&bytes) }),
        )?;
        println!("{name} now runs sha256 {}", text(&answer, "sourcehash"));
    } else {
        let runtime = Runtime::open(&target.runtime.config, &target.runtime.data)?;
        let rows: Vec<(Uuid, String)> = runtime
            .pipeline
            .assemblies()
            .into_iter()
            .map(|a| (a.id, a.name))
            .collect();
        let (_, name) = find_named("plug-in", &rows, &args.plugin)?;
        let assembly = runtime
            .pipeline
            .replace_plugin(name, &bytes)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "{name} now runs sha256 {}",
            assembly.sha256.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
