//! `docs/weft-toml.md` stays true to the code.
//!
//! - Every ```` ```toml ```` block whose first line is `# complete example` loads with the real loaders
//!   (`Registration::load`, `JobsSettings::into_config`, `BusConfig::from_toml_str`), declares what it
//!   shows, names components that `weft build` really produces, and its endpoints would be authorized by its
//!   own `[bus]` (right entity, address, SAS policy, key and rights).
//! - Every key table (a table whose header starts `| Key |`) under a section heading lists exactly the keys
//!   the code accepts there. The code's keys are not copied into this test: they are read from the loaders'
//!   own "unknown field …, expected one of …" errors, by adding an unknown key to each section of the
//!   complete examples. A key added to a serde struct without a row here, or a row left behind by a removed
//!   key, fails this test.

use crate::fixtures;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};
use std::time::{SystemTime, UNIX_EPOCH};
use weft_bus::BusConfig;
use weft_bus::connection_string::ConnectionString;
use weft_bus::sas::{self, Right};
use weft_host::registration::{EndpointDecl, Registration};
use weft_store::system::{
    AuthType, Contract, EndpointSecrets, EventHandler, SecretUpdate, ServiceEndpoint,
};

/// The reference, compiled in so the test reads nothing outside the repository at run time.
const DOC: &str = include_str!("../../docs/weft-toml.md");

/// The first line that marks a block as a whole `weft.toml`.
const COMPLETE: &str = "# complete example";

/// A key no section accepts.
const BOGUS: &str = "zz_not_a_weft_key";

/// A ```` ```toml ```` block: the line its fence is on (1-based) and its text.
struct Block {
    line: usize,
    text: String,
}

impl Block {
    fn title(&self) -> String {
        let first = self.text.lines().next().unwrap_or_default();
        format!("docs/weft-toml.md:{} ({first})", self.line)
    }
}

fn toml_blocks() -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in DOC.lines().enumerate() {
        match &mut open {
            None if line.trim_start().starts_with("```toml") => {
                open = Some(Block {
                    line: i + 1,
                    text: String::new(),
                });
            }
            None => {}
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(open.take()),
            Some(b) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
        }
    }
    assert!(
        open.is_none(),
        "docs/weft-toml.md: a ```toml block is not closed"
    );
    blocks
}

fn complete_blocks() -> Vec<Block> {
    let blocks: Vec<Block> = toml_blocks()
        .into_iter()
        .filter(|b| b.text.starts_with(COMPLETE))
        .collect();
    assert!(
        !blocks.is_empty(),
        "docs/weft-toml.md has no block starting `{COMPLETE}`"
    );
    blocks
}

fn parse(b: &Block) -> toml::Table {
    toml::from_str(&b.text).unwrap_or_else(|e| panic!("{}: not TOML: {e}", b.title()))
}

fn array_len(t: &toml::Table, key: &str) -> usize {
    t.get(key)
        .and_then(toml::Value::as_array)
        .map_or(0, Vec::len)
}

/// The repository root (the host crate's parent).
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate lives in the repository")
}

/// Writes the block as `dir/weft.toml`, with each `[[plugin]] component` it names copied from the component
/// `weft build` makes: the doc's path, read from the repository root, must be where that build puts it.
fn write_config(b: &Block, doc: &toml::Table, dir: &Path) -> std::path::PathBuf {
    for p in doc
        .get("plugin")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
    {
        let rel = Path::new(
            p.get("component")
                .and_then(toml::Value::as_str)
                .unwrap_or_else(|| panic!("{}: a plug-in without a component", b.title())),
        );
        assert!(
            rel.components().all(|c| matches!(c, Component::Normal(_))),
            "{}: component {} must be a plain relative path (it is written under a temporary folder)",
            b.title(),
            rel.display()
        );
        let package = rel
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .replace('_', "-");
        let built = fixtures::component(&package);
        assert_eq!(
            repo_root().join(rel).canonicalize().ok(),
            built.canonicalize().ok(),
            "{}: component {} is not where `weft build` puts package `{package}` ({})",
            b.title(),
            rel.display(),
            built.display()
        );
        let dest = dir.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&built, &dest).unwrap();
    }
    let path = dir.join("weft.toml");
    std::fs::write(&path, &b.text).unwrap();
    path
}

fn secret(u: &SecretUpdate) -> Option<String> {
    match u {
        SecretUpdate::Set(v) => Some(v.clone()),
        SecretUpdate::Keep | SecretUpdate::Clear => None,
    }
}

/// What the bus would answer this endpoint's post: its entity exists with the contract's kind, at the bus's
/// address, and a token made from its credentials passes the bus's own SAS check with the Send right.
fn check_against_bus(b: &Block, e: &EndpointDecl, bus: Option<&BusConfig>) {
    let def = &e.def;
    let what = format!("{}: service endpoint \"{}\"", b.title(), def.name);
    let secrets = EndpointSecrets {
        sas_key: secret(&e.secrets.sas_key),
        sas_token: secret(&e.secrets.sas_token),
        auth_value: secret(&e.secrets.auth_value),
    };
    let row = ServiceEndpoint {
        def: def.clone(),
        is_sas_key_set: secrets.sas_key.is_some(),
        is_sas_token_set: secrets.sas_token.is_some(),
        is_auth_value_set: secrets.auth_value.is_some(),
    };
    let endpoint =
        weft_endpoints::Endpoint::new(&row, &secrets).unwrap_or_else(|err| panic!("{what}: {err}"));
    if def.contract == Contract::Webhook {
        return;
    }
    let bus = bus.unwrap_or_else(|| panic!("{what} posts to a bus but the block has no [bus]"));
    let base = format!("http://{}/", bus.bind);
    let entity = endpoint
        .target()
        .strip_prefix(&base)
        .unwrap_or_else(|| panic!("{what}: {} is not on the bus at {base}", endpoint.target()));
    let names: Vec<&str> = match def.contract {
        Contract::Queue | Contract::QueuePersistent => {
            bus.queues.iter().map(|q| q.name.as_str()).collect()
        }
        Contract::Topic => bus.topics.iter().map(|t| t.name.as_str()).collect(),
        Contract::EventHub => bus.event_hubs.iter().map(|h| h.name.as_str()).collect(),
        _ => bus.relays.iter().map(|r| r.name.as_str()).collect(),
    };
    assert!(
        names.iter().any(|n| n.eq_ignore_ascii_case(entity)),
        "{what}: the bus has no {:?} entity `{entity}` (it has {names:?})",
        def.contract
    );
    if bus.sas_policies.is_empty() {
        return; // an open loopback bus takes any token
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |key_name: &str, key: &str| {
        sas::generate_token(endpoint.target(), key_name, key, now + 3600)
    };
    let token = match def.auth_type {
        AuthType::SasKey => sign(
            def.sas_key_name.as_deref().unwrap_or_default(),
            secrets.sas_key.as_deref().unwrap_or_default(),
        ),
        AuthType::SasToken => secrets.sas_token.clone().unwrap_or_default(),
        AuthType::ConnectionString => {
            let cs = ConnectionString::parse(secrets.auth_value.as_deref().unwrap_or_default())
                .unwrap_or_else(|err| panic!("{what}: {err}"));
            match (cs.shared_access_signature, cs.shared_access_key_name) {
                (Some(sig), _) => sig,
                (None, Some(name)) => {
                    sign(&name, cs.shared_access_key.as_deref().unwrap_or_default())
                }
                (None, None) => panic!("{what}: the connection string has no credentials"),
            }
        }
        other => panic!("{what}: auth type {other:?} on a bus contract"),
    };
    let resource = if endpoint.is_relay() {
        endpoint.target().to_owned()
    } else {
        format!("{}/messages", endpoint.target())
    };
    sas::authorize(Some(&token), &bus.sas_policies, &resource, Right::Send, now)
        .unwrap_or_else(|err| panic!("{what}: the bus would refuse its post: {err}"));
}

/// Every complete example is a `weft.toml` weft accepts, and means what it shows.
#[test]
fn complete_examples_load_and_reach_their_bus() {
    for b in complete_blocks() {
        let doc = parse(&b);
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(&b, &doc, dir.path());
        let reg = Registration::load(&path).unwrap_or_else(|e| panic!("{}: {e}", b.title()));
        reg.jobs
            .clone()
            .into_config()
            .unwrap_or_else(|e| panic!("{}: [jobs]: {e}", b.title()));
        let declared = [
            ("table", reg.schema.tables().len()),
            ("relationship", reg.schema.relationships().len()),
            ("plugin", reg.plugins.len()),
            ("step", reg.steps.len()),
            ("service_endpoint", reg.endpoints.len()),
            ("custom_api", reg.custom_apis.len()),
        ];
        for (key, loaded) in declared {
            assert_eq!(loaded, array_len(&doc, key), "{}: [[{key}]]", b.title());
        }
        let bus = doc.contains_key("bus").then(|| {
            BusConfig::from_toml_str(&b.text).unwrap_or_else(|e| panic!("{}: {e:#}", b.title()))
        });
        if let (Some(bus), Some(raw)) = (&bus, doc.get("bus").and_then(toml::Value::as_table)) {
            let counts = [
                ("queues", bus.queues.len()),
                ("topics", bus.topics.len()),
                ("event_hubs", bus.event_hubs.len()),
                ("relays", bus.relays.len()),
                ("sas_policies", bus.sas_policies.len()),
            ];
            for (key, loaded) in counts {
                assert_eq!(loaded, array_len(raw, key), "{}: [[bus.{key}]]", b.title());
            }
        }
        for e in &reg.endpoints {
            check_against_bus(&b, e, bus.as_ref());
        }
        // A custom Azure-aware plug-in reads the endpoint it posts to from its unsecure configuration.
        for s in &reg.steps {
            let EventHandler::PluginType(id) = s.def.event_handler else {
                continue;
            };
            let plugin = reg.plugins.iter().find(|p| p.plugin_type.id == id).unwrap();
            if plugin.assembly.name != "azure-aware" {
                continue;
            }
            let config = s.def.configuration.as_deref().unwrap_or_default();
            assert!(
                reg.endpoints
                    .iter()
                    .any(|e| e.def.id.to_string() == config || e.def.name == config),
                "{}: step \"{}\" posts to `{config}`, which is no endpoint of the block",
                b.title(),
                s.def.name
            );
        }
    }
}

/// One step down a TOML document: a key, or an element of an array.
#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every table reachable by the dotted `path` (arrays are walked element by element), as step lists.
fn reach(value: &toml::Value, path: &[&str], at: Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match value {
        toml::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let mut next = at.clone();
                next.push(Step::Index(i));
                reach(item, path, next, out);
            }
        }
        toml::Value::Table(t) => match path.split_first() {
            None => out.push(at),
            Some((key, rest)) => {
                if let Some(v) = t.get(*key) {
                    let mut next = at;
                    next.push(Step::Key((*key).to_owned()));
                    reach(v, rest, next, out);
                }
            }
        },
        _ => {}
    }
}

fn table_at<'a>(root: &'a mut toml::Value, steps: &[Step]) -> &'a mut toml::Table {
    let mut v = root;
    for s in steps {
        v = match s {
            Step::Key(k) => v.as_table_mut().unwrap().get_mut(k.as_str()).unwrap(),
            Step::Index(i) => &mut v.as_array_mut().unwrap()[*i],
        };
    }
    v.as_table_mut().expect("reach yields tables")
}

/// The keys the code accepts in `section` ("" = the document): those the loader's error lists for an unknown
/// key added to each occurrence of the section in the complete examples, and those the occurrences use.
/// None when no complete example has the section.
fn accepted_keys(section: &str) -> Option<BTreeSet<String>> {
    let path: Vec<&str> = section.split('.').filter(|s| !s.is_empty()).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut keys: Option<BTreeSet<String>> = None;
    for b in complete_blocks() {
        let root = toml::Value::Table(parse(&b));
        let mut spots = Vec::new();
        reach(&root, &path, Vec::new(), &mut spots);
        for spot in spots {
            let mut probe = root.clone();
            table_at(&mut probe, &spot).insert(BOGUS.into(), toml::Value::Integer(1));
            let text = toml::to_string(&probe).unwrap();
            let loaded: Result<(), String> = if path.first() == Some(&"bus") {
                BusConfig::from_toml_str(&text)
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
            } else {
                Registration::from_toml_str("probe.toml", dir.path(), &text)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            let err = loaded.expect_err("an unknown key must be refused");
            let marker = format!("unknown field `{BOGUS}`");
            let rest = err
                .split_once(&marker)
                .unwrap_or_else(|| panic!("`{section}`: expected `{marker}` in: {err}"))
                .1;
            let rest = rest.lines().next().unwrap_or_default();
            let listed = rest.split('`').skip(1).step_by(2).map(str::to_owned);
            // Keys the example uses are accepted too (it loads: `complete_examples_load_and_reach_their_bus`);
            // this counts an enum's tag (`[[relationship]] type`), which serde leaves out of its list.
            let used = table_at(&mut probe, &spot).keys().filter(|k| *k != BOGUS);
            let entry = keys.get_or_insert_with(BTreeSet::new);
            entry.extend(listed);
            entry.extend(used.cloned());
        }
    }
    keys
}

/// The doc's sections: for each heading whose first code span is a section (`[[step.image]]`, `[jobs]`),
/// the first cells of its key tables, up to the next heading.
fn documented_sections() -> BTreeMap<String, BTreeSet<String>> {
    let mut sections: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_code = false;
    let mut in_key_table = false;
    for line in DOC.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if line.starts_with('#') {
            in_key_table = false;
            current = line
                .split('`')
                .nth(1)
                .filter(|span| span.starts_with('['))
                .map(|span| span.trim_matches(|c| c == '[' || c == ']').to_owned());
            if let Some(s) = &current {
                sections.entry(s.clone()).or_default();
            }
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if !line.starts_with('|') || cells.len() < 3 {
            in_key_table = false;
            continue;
        }
        if cells[1] == "Key" {
            in_key_table = true;
        } else if in_key_table
            && let (Some(section), Some(key)) = (&current, cells[1].split('`').nth(1))
        {
            sections.get_mut(section).unwrap().insert(key.to_owned());
        }
    }
    sections
}

/// Each key table lists exactly the keys the code accepts, and every top-level section has its heading.
#[test]
fn key_tables_list_exactly_the_keys_the_code_accepts() {
    let sections = documented_sections();
    let top = accepted_keys("").expect("the document itself");
    for key in &top {
        assert!(
            sections.contains_key(key),
            "docs/weft-toml.md has no section for `{key}` (a heading with `[{key}]` or `[[{key}]]`)"
        );
    }
    let mut problems = Vec::new();
    for (section, documented) in &sections {
        let Some(accepted) = accepted_keys(section) else {
            problems.push(format!(
                "`{section}`: no complete example has this section, so its keys cannot be checked: add it to \
                 the complete file"
            ));
            continue;
        };
        for key in accepted.difference(documented) {
            problems.push(format!(
                "`{section}` accepts `{key}`, which its key table lacks"
            ));
        }
        for key in documented.difference(&accepted) {
            problems.push(format!(
                "`{section}`'s key table lists `{key}`, which the code does not accept"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/weft-toml.md:\n{}",
        problems.join("\n")
    );
}
