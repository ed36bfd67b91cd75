//! The `workflows` entity set: background workflows registered at runtime (issue 15), as Dataverse's
//! `workflow` rows — `POST` a new one, `GET` the collection (the `[[workflow]]`s of weft.toml listed too) or
//! one row, `PATCH` `statecode`/`statuscode` to activate or deactivate it (Dataverse's SetState) or other
//! columns to change a Draft's definition, `DELETE` a Draft one.
//!
//! Owns the mapping between Dataverse's columns and weft-workflows' [`WorkflowDef`], both ways, and every
//! refusal of what weft cannot run (other categories, real-time mode, XAML, on-demand and child
//! workflows, scopes other than Organization). The definition is validated, persisted and published by the
//! pipeline ([`crate::pipeline::Pipeline::create_workflow`]) under the same restart rule as steps; this
//! module must not touch the store.
//!
//! # Columns (Dataverse's names and option values)
//! `workflowid`; `name`; `category` 0 Workflow (only); `mode` 0 Background (1 Real-time refused); `type`
//! 1 Definition (only); `primaryentity`; `scope` 4 Organization (only; the default); `runas` 0 Owner,
//! 1 Calling User; `triggeroncreate`, `triggerondelete`; `triggeronupdateattributelist` (comma-separated
//! columns of the Update trigger; `statecode` stands for "record status changes" — the SetState message —
//! and `ownerid` for "record is assigned" — Assign — as the classic designer records them; `*` is weft's
//! "any column", which Dataverse's designer cannot express); `statecode` 0 Draft / 1 Activated with
//! `statuscode` 1 Draft / 2 Activated (a new row is Draft unless it says otherwise); `ondemand` and
//! `subprocess` (false only); `clientdata`.
//!
//! # Why `clientdata` and not `xaml`
//! Dataverse stores a classic workflow's steps as XAML (Windows Workflow Foundation), which weft cannot
//! run. The steps are given instead as JSON in `clientdata` (the column Dataverse itself uses for JSON
//! process definitions): `{"step": [...]}`, each step exactly as a `[[workflow.step]]` of weft.toml writes
//! it (`kind` condition, create, update, activity or stop). A body with `xaml` is refused, saying so.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;
use weft_workflows::{RunAs, Step, TriggerEvent, WorkflowDef};

use super::error::ApiError;
use super::paging::Page;
use super::registration::{RegistrationCall, object};

/// The workflows' entity set.
pub const WORKFLOWS: &str = "workflows";

/// The columns a POST may give.
const COLUMNS: &[&str] = &[
    "workflowid",
    "name",
    "category",
    "mode",
    "type",
    "primaryentity",
    "scope",
    "runas",
    "triggeroncreate",
    "triggerondelete",
    "triggeronupdateattributelist",
    "statecode",
    "statuscode",
    "ondemand",
    "subprocess",
    "clientdata",
    "xaml",
];

/// `triggeronupdateattributelist`'s entry for "record status changes" (SetState).
const STATUS_CHANGE: &str = "statecode";
/// `triggeronupdateattributelist`'s entry for "record is assigned" (Assign).
const ASSIGNED: &str = "ownerid";
/// weft's "Update of any column".
const ANY_COLUMN: &str = "*";

/// `clientdata`: the steps, as weft.toml's `[[workflow.step]]` writes them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientData {
    step: Vec<Step>,
}

impl RegistrationCall<'_> {
    pub(super) fn list_workflows(&self, page: Page) -> Response {
        let (workflows, next) = page.slice(self.pipeline.workflows(), self.pages, &self.base);
        let rows: Vec<Json> = workflows.iter().map(workflow_json).collect();
        page.answer(self.context(false), rows, next)
    }

    fn workflow(&self, id: Uuid) -> Result<WorkflowDef, ApiError> {
        self.pipeline
            .workflows()
            .into_iter()
            .find(|w| w.id == Some(id))
            .ok_or_else(|| super::registration::not_found("workflow", id))
    }

    pub(super) fn get_workflow(&self, id: Uuid) -> Result<Response, ApiError> {
        let def = self.workflow(id)?;
        Ok(super::record(
            StatusCode::OK,
            self.context(true),
            workflow_json(&def),
        ))
    }

    pub(super) async fn create_workflow(&self, body: &[u8]) -> Result<Response, ApiError> {
        let def = workflow_from_body(body)?;
        let pipeline = self.pipeline.clone();
        let def = super::blocking(move || pipeline.create_workflow(def)).await?;
        let id = def.id.unwrap_or_default();
        let row = super::wants_representation(self.headers)
            .then(|| super::record(StatusCode::CREATED, self.context(true), workflow_json(&def)));
        super::created(&format!("{}/{WORKFLOWS}({id})", self.base), row)
    }

    pub(super) async fn patch_workflow(&self, id: Uuid, body: &[u8]) -> Result<Response, ApiError> {
        let current = self.workflow(id)?;
        let pipeline = self.pipeline.clone();
        let def = match patch_from_body(&current, body)? {
            Patch::State(activated) => {
                super::blocking(move || pipeline.set_workflow_state(id, activated)).await?
            }
            Patch::Definition(def) => {
                super::blocking(move || pipeline.update_workflow(def)).await?
            }
        };
        if super::wants_representation(self.headers) {
            Ok(super::record(
                StatusCode::OK,
                self.context(true),
                workflow_json(&def),
            ))
        } else {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }

    pub(super) async fn delete_workflow(&self, id: Uuid) -> Result<Response, ApiError> {
        let pipeline = self.pipeline.clone();
        super::blocking(move || pipeline.delete_workflow(id)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

/// A workflow as Dataverse's columns.
fn workflow_json(def: &WorkflowDef) -> Json {
    let has = |e: TriggerEvent| def.on.contains(&e);
    let mut update: Vec<String> = Vec::new();
    if has(TriggerEvent::Update) {
        if def.attributes.is_empty() {
            update.push(ANY_COLUMN.into());
        } else {
            update.extend(def.attributes.iter().cloned());
        }
    }
    if has(TriggerEvent::SetState) {
        update.push(STATUS_CHANGE.into());
    }
    if has(TriggerEvent::Assign) {
        update.push(ASSIGNED.into());
    }
    let steps = serde_json::to_string(&json!({ "step": def.steps })).unwrap_or_default();
    let (state, status) = if def.enabled { (1, 2) } else { (0, 1) };
    json!({
        "workflowid": def.id,
        "name": def.name,
        "category": 0,
        "mode": 0,
        "type": 1,
        "primaryentity": def.table,
        "scope": 4,
        "runas": def.run_as.value(),
        "triggeroncreate": has(TriggerEvent::Create),
        "triggerondelete": has(TriggerEvent::Delete),
        "triggeronupdateattributelist": if update.is_empty() { Json::Null } else { json!(update.join(",")) },
        "statecode": state,
        "statuscode": status,
        "ondemand": false,
        "subprocess": false,
        "clientdata": steps,
        "xaml": Json::Null,
    })
}

/// An optional whole-number column.
fn int(o: &Map<String, Json>, name: &str) -> Result<Option<i64>, ApiError> {
    match o.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::payload(format!("'{name}' must be a whole number, not {v}."))),
    }
}

/// An optional Yes/No column.
fn boolean(o: &Map<String, Json>, name: &str) -> Result<bool, ApiError> {
    match o.get(name) {
        None | Some(Json::Null) => Ok(false),
        Some(Json::Bool(b)) => Ok(*b),
        Some(v) => Err(ApiError::payload(format!(
            "'{name}' must be true or false, not {v}."
        ))),
    }
}

/// An optional text column.
fn text<'a>(o: &'a Map<String, Json>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match o.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(v) => Err(ApiError::payload(format!(
            "'{name}' must be a string, not {v}."
        ))),
    }
}

fn category_name(n: i64) -> &'static str {
    match n {
        1 => "Dialog",
        2 => "Business Rule",
        3 => "Action",
        4 => "Business Process Flow",
        5 => "Modern Flow",
        6 => "Desktop Flow",
        _ => "not a process category",
    }
}

/// `statecode`/`statuscode` of a body: activated or not (None when neither is given).
fn state(o: &Map<String, Json>) -> Result<Option<bool>, ApiError> {
    let from_state = |n: i64| match n {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ApiError::payload(format!(
            "statecode {n} is not 0 (Draft) or 1 (Activated)."
        ))),
    };
    let from_status = |n: i64| match n {
        1 => Ok(false),
        2 => Ok(true),
        _ => Err(ApiError::payload(format!(
            "statuscode {n} is not 1 (Draft) or 2 (Activated)."
        ))),
    };
    match (int(o, "statecode")?, int(o, "statuscode")?) {
        (None, None) => Ok(None),
        (Some(s), None) => from_state(s).map(Some),
        (None, Some(s)) => from_status(s).map(Some),
        (Some(state), Some(status)) => {
            let (a, b) = (from_state(state)?, from_status(status)?);
            if a != b {
                return Err(ApiError::payload(format!(
                    "statuscode {status} does not belong to statecode {state} (0 Draft goes with 1, \
                     1 Activated with 2)."
                )));
            }
            Ok(Some(a))
        }
    }
}

/// Reads a POST body into the definition the pipeline validates. Everything weft cannot run is refused
/// here, naming the column and what it would take instead.
fn workflow_from_body(body: &[u8]) -> Result<WorkflowDef, ApiError> {
    let o = object(body)?;
    if o.get("xaml").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::payload(
            "'xaml' is not supported: weft cannot run XAML workflow definitions. Send the steps as JSON \
             in 'clientdata' instead: {\"step\": [...]}, each step as a [[workflow.step]] of weft.toml \
             writes it (see workflows/README.md).",
        ));
    }
    if let Some(k) = o.keys().find(|k| !COLUMNS.contains(&k.as_str())) {
        return Err(ApiError::payload(format!(
            "'{k}' cannot be written to a workflow here: only {} can.",
            COLUMNS[..COLUMNS.len() - 1].join(", ")
        )));
    }
    match int(&o, "category")? {
        None | Some(0) => {}
        Some(n) => {
            return Err(ApiError::payload(format!(
                "category {n} ({}) is not supported: only 0 (Workflow, a classic background workflow) is.",
                category_name(n)
            )));
        }
    }
    match int(&o, "type")? {
        None | Some(1) => {}
        Some(n @ (2 | 3)) => {
            return Err(ApiError::payload(format!(
                "type {n} ({}) is not supported: only 1 (Definition) is; weft keeps no activation or \
                 template rows.",
                if n == 2 { "Activation" } else { "Template" }
            )));
        }
        Some(n) => {
            return Err(ApiError::payload(format!(
                "type {n} is not 1 (Definition), 2 (Activation) or 3 (Template)."
            )));
        }
    }
    match int(&o, "mode")? {
        None | Some(0) => {}
        Some(1) => {
            return Err(ApiError::payload(
                "mode 1 (Real-time) is not supported: weft runs background workflows only (mode 0, each \
                 run a system job). For logic inside the operation, register a synchronous plug-in step.",
            ));
        }
        Some(n) => {
            return Err(ApiError::payload(format!(
                "mode {n} is not 0 (Background) or 1 (Real-time)."
            )));
        }
    }
    match int(&o, "scope")? {
        None | Some(4) => {}
        Some(n @ 1..=3) => {
            return Err(ApiError::payload(format!(
                "scope {n} ({}) is not supported: only 4 (Organization) is; weft has no business units.",
                ["User", "Business Unit", "Parent: Child Business Units"][n as usize - 1]
            )));
        }
        Some(n) => {
            return Err(ApiError::payload(format!(
                "scope {n} is not 1 (User), 2 (Business Unit), 3 (Parent: Child Business Units) or 4 \
                 (Organization)."
            )));
        }
    }
    if boolean(&o, "ondemand")? {
        return Err(ApiError::payload(
            "ondemand true is not supported: weft starts workflows from their triggers only (no \
             ExecuteWorkflow).",
        ));
    }
    if boolean(&o, "subprocess")? {
        return Err(ApiError::payload(
            "subprocess true is not supported: weft has no child workflows.",
        ));
    }
    let name = match text(&o, "name")? {
        Some(n) if !n.trim().is_empty() => n.to_owned(),
        _ => return Err(ApiError::payload("'name' is required.")),
    };
    let Some(table) = text(&o, "primaryentity")? else {
        return Err(ApiError::payload(
            "'primaryentity' is required: the logical name of the table whose events start the workflow.",
        ));
    };
    let run_as = match int(&o, "runas")? {
        None | Some(0) => RunAs::Owner,
        Some(1) => RunAs::Caller,
        Some(n) => {
            return Err(ApiError::payload(format!(
                "runas {n} is not 0 (Owner) or 1 (Calling User)."
            )));
        }
    };
    let id = match text(&o, "workflowid")? {
        None => None,
        Some(s) => Some(
            Uuid::parse_str(s)
                .map_err(|e| ApiError::payload(format!("'workflowid' is not a GUID: {e}.")))?,
        ),
    };
    let mut on = Vec::new();
    if boolean(&o, "triggeroncreate")? {
        on.push(TriggerEvent::Create);
    }
    let mut attributes = Vec::new();
    let mut any_column = false;
    for entry in text(&o, "triggeronupdateattributelist")?
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        match entry {
            STATUS_CHANGE => on.push(TriggerEvent::SetState),
            ASSIGNED => on.push(TriggerEvent::Assign),
            ANY_COLUMN => any_column = true,
            column => attributes.push(column.to_owned()),
        }
    }
    if any_column && !attributes.is_empty() {
        return Err(ApiError::payload(
            "'triggeronupdateattributelist' lists columns and '*' (any column): give one or the other.",
        ));
    }
    if any_column || !attributes.is_empty() {
        on.push(TriggerEvent::Update);
    }
    if boolean(&o, "triggerondelete")? {
        on.push(TriggerEvent::Delete);
    }
    if on.is_empty() {
        return Err(ApiError::payload(
            "The workflow has no trigger: set triggeroncreate or triggerondelete to true, or list columns \
             in triggeronupdateattributelist.",
        ));
    }
    let steps = match o.get("clientdata") {
        None | Some(Json::Null) => {
            return Err(ApiError::payload(
                "'clientdata' is required: the steps as JSON, {\"step\": [...]}, each step as a \
                 [[workflow.step]] of weft.toml writes it.",
            ));
        }
        Some(Json::String(s)) => {
            let data: ClientData = serde_json::from_str(s).map_err(|e| {
                ApiError::payload(format!(
                    "'clientdata' is not a workflow definition ({{\"step\": [...]}}, each step as a \
                     [[workflow.step]] of weft.toml writes it): {e}."
                ))
            })?;
            data.step
        }
        Some(v) => {
            return Err(ApiError::payload(format!(
                "'clientdata' must be a string holding the steps as JSON, not {v}."
            )));
        }
    };
    Ok(WorkflowDef {
        id,
        name,
        table: table.to_owned(),
        on,
        attributes,
        run_as,
        enabled: state(&o)?.unwrap_or(false),
        steps,
    })
}

/// What a PATCH asks for.
enum Patch {
    /// Only `statecode`/`statuscode`: Dataverse's SetState (activate or deactivate).
    State(bool),
    /// Other columns: the Draft workflow's new definition, the body's columns over the current ones.
    Definition(WorkflowDef),
}

/// Reads a PATCH body against the workflow as it is. A definition changes only while the workflow is a
/// Draft, as in Dataverse (deactivate, change, activate again); `workflowid` cannot change.
fn patch_from_body(current: &WorkflowDef, body: &[u8]) -> Result<Patch, ApiError> {
    let o = object(body)?;
    if o.is_empty() {
        return Err(ApiError::payload(
            "The body names no column to change: give statecode (0 Draft, 1 Activated) or statuscode, or \
             columns of the definition.",
        ));
    }
    if o.keys()
        .all(|k| matches!(k.as_str(), "statecode" | "statuscode"))
    {
        return Ok(Patch::State(state(&o)?.unwrap_or(current.enabled)));
    }
    if current.enabled {
        return Err(ApiError::payload(format!(
            "Workflow \"{}\" is Activated: its definition cannot be changed. Deactivate it first (PATCH \
             statecode 0), change it, then activate it again.",
            current.name
        )));
    }
    if let Some(id) = text(&o, "workflowid")?
        && Uuid::parse_str(id).ok() != current.id
    {
        return Err(ApiError::payload("'workflowid' cannot be changed."));
    }
    let Json::Object(mut merged) = workflow_json(current) else {
        return Err(ApiError::payload("The workflow cannot be read."));
    };
    // A state in the body replaces both current state columns (either may be given alone).
    if o.contains_key("statecode") || o.contains_key("statuscode") {
        merged.remove("statecode");
        merged.remove("statuscode");
    }
    merged.extend(o);
    let mut def =
        workflow_from_body(&serde_json::to_vec(&Json::Object(merged)).unwrap_or_default())?;
    def.id = current.id;
    Ok(Patch::Definition(def))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(extra: Json) -> Vec<u8> {
        let mut o = json!({
            "name": "w",
            "primaryentity": "account",
            "triggeroncreate": true,
            "clientdata": r#"{"step":[{"kind":"stop","status":"succeeded"}]}"#,
        });
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        serde_json::to_vec(&o).unwrap()
    }

    fn refused(extra: Json) -> String {
        workflow_from_body(&body(extra)).unwrap_err().message
    }

    /// Each column weft cannot honour is refused with a message naming it and the supported value.
    #[test]
    fn unsupported_columns_are_refused_precisely() {
        assert!(refused(json!({"xaml": "<Activity/>"})).contains("'xaml' is not supported"));
        assert!(refused(json!({"mode": 1})).contains("mode 1 (Real-time) is not supported"));
        assert!(refused(json!({"category": 3})).contains("category 3 (Action) is not supported"));
        assert!(refused(json!({"type": 2})).contains("type 2 (Activation)"));
        assert!(refused(json!({"scope": 1})).contains("scope 1 (User) is not supported"));
        assert!(refused(json!({"runas": 2})).contains("runas 2 is not 0 (Owner) or 1"));
        assert!(refused(json!({"ondemand": true})).contains("ondemand true"));
        assert!(refused(json!({"description": "x"})).contains("'description' cannot be written"));
        assert!(refused(json!({"statecode": 1, "statuscode": 1})).contains("does not belong"));
        assert!(refused(json!({"triggeroncreate": false})).contains("no trigger"));
        assert!(refused(json!({"clientdata": "{\"steps\":[]}"})).contains("unknown field `steps`"));
        assert!(refused(json!({"clientdata": {"step": []}})).contains("must be a string"));
    }

    /// The trigger columns map to weft's events, and back.
    #[test]
    fn triggers_round_trip() {
        let def = workflow_from_body(&body(json!({
            "triggeronupdateattributelist": "name, statecode,ownerid",
            "triggerondelete": true,
            "runas": 1,
            "statecode": 1,
        })))
        .unwrap();
        assert_eq!(
            def.on,
            vec![
                TriggerEvent::Create,
                TriggerEvent::SetState,
                TriggerEvent::Assign,
                TriggerEvent::Update,
                TriggerEvent::Delete
            ]
        );
        assert_eq!(def.attributes, vec!["name"]);
        assert_eq!(def.run_as, RunAs::Caller);
        assert!(def.enabled);
        let row = workflow_json(&def);
        assert_eq!(
            row["triggeronupdateattributelist"],
            "name,statecode,ownerid"
        );
        assert_eq!(
            (row["statecode"].clone(), row["statuscode"].clone()),
            (json!(1), json!(2))
        );
        assert_eq!(row["runas"], 1);
        let any = workflow_from_body(&body(json!({"triggeronupdateattributelist": "*"}))).unwrap();
        assert!(any.attributes.is_empty() && any.on.contains(&TriggerEvent::Update));
        assert!(
            !any.enabled,
            "a new workflow is a Draft unless it says otherwise"
        );
    }

    /// A PATCH of statecode/statuscode only is SetState; other columns change a Draft's definition
    /// (merged over the current columns) and are refused on an Activated workflow.
    #[test]
    fn patch_sets_the_state_or_a_drafts_definition() {
        let mut current = workflow_from_body(&body(json!({"statecode": 1}))).unwrap();
        current.id = Some(Uuid::from_u128(5));
        assert!(matches!(
            patch_from_body(&current, br#"{"statecode":0,"statuscode":1}"#),
            Ok(Patch::State(false))
        ));
        assert!(matches!(
            patch_from_body(&current, br#"{"statuscode":2}"#),
            Ok(Patch::State(true))
        ));
        let refused = |current: &WorkflowDef, body: &[u8]| match patch_from_body(current, body) {
            Err(e) => e.message,
            Ok(_) => panic!("accepted"),
        };
        assert!(refused(&current, br#"{"name":"x"}"#).contains("is Activated"));
        assert!(refused(&current, b"{}").contains("names no column"));
        current.enabled = false;
        let Ok(Patch::Definition(def)) = patch_from_body(
            &current,
            br#"{"name":"renamed","triggeronupdateattributelist":"name","statecode":1}"#,
        ) else {
            panic!("a Draft's definition is refused")
        };
        assert_eq!(def.name, "renamed");
        assert_eq!(def.id, current.id);
        assert_eq!(def.on, vec![TriggerEvent::Create, TriggerEvent::Update]);
        assert_eq!(def.steps, current.steps);
        assert!(def.enabled, "changed and activated in one PATCH");
        assert!(
            refused(
                &current,
                br#"{"workflowid":"00000000-0000-0000-0000-000000000009"}"#
            )
            .contains("'workflowid' cannot be changed")
        );
        assert!(refused(&current, br#"{"mode":1}"#).contains("Real-time"));
    }
}
