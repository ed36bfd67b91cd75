//! Tables and columns created through the Web API: `POST EntityDefinitions` (a table with its primary name
//! column and other columns), the `CreateEntities` action (what Microsoft's Python SDK's `tables.create`
//! sends: several tables in one request), `POST EntityDefinitions(<key>)/Attributes` (a column) and
//! `DELETE EntityDefinitions(<key>)` (a table created this way).
//!
//! Owns the answers (204 with `OData-EntityId`, the duplicate-name error) and the rule that only tables
//! created at runtime change here: a table `weft.toml` declares is changed in the file. weft-odata reads the
//! bodies into declarations; the store validates them as `[[table]]` entries, creates the SQL tables and
//! keeps the definitions (the restart rule is the registration's: a table the file declares wins). It must not
//! touch rows or the pipeline.
//!
//! The `MSCRM.SolutionUniqueName` header and `SolutionUniqueName` parameter are accepted and ignored (weft has
//! no solutions). Other hosts sharing a PostgreSQL store see a new table after their next start.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use weft_odata::{MetadataWrite, metadata_id};
use weft_store::{StoreError, TableDef};

use super::error::{ApiError, BAD_PAYLOAD};
use super::{AppState, base_url, read_body};

/// The error code Dataverse answers a new table or column whose name is taken with.
pub const DUPLICATE_NAME: &str = "0x80044363";

/// The path of the `CreateEntities` action (after `/api/data/v9.2/`).
pub(super) const CREATE_ENTITIES: &str = "CreateEntities";

/// One metadata write at a time on this host: a write checks names against the schema and then changes it,
/// and two at once (two columns added to one table, two tables of one name) would each miss the other's.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Refuses to delete `table` while a step or a workflow is registered on it (the registration would no
/// longer fit the schema at the next start).
fn refuse_registered(state: &AppState, table: &str) -> Result<(), ApiError> {
    let pipeline = &state.runtime.pipeline;
    let step = pipeline
        .steps()
        .into_iter()
        .find(|s| s.def.primary_entity.as_deref() == Some(table))
        .map(|s| format!("the step '{}'", s.def.name));
    let workflow = || {
        pipeline
            .workflows()
            .into_iter()
            .find(|w| w.table == table)
            .map(|w| format!("the workflow '{}'", w.name))
    };
    match step.or_else(workflow) {
        Some(what) => Err(ApiError::payload(format!(
            "The entity {table} cannot be deleted: {what} is registered on it. Delete it first."
        ))),
        None => Ok(()),
    }
}

/// Answers a metadata write: `rest` is the path after `/api/data/v9.2/`.
pub(super) async fn handle(
    state: &AppState,
    method: &Method,
    rest: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let _one_at_a_time = WRITES.lock().await;
    let schema = state.runtime.schema();
    let target = if rest == CREATE_ENTITIES && method == Method::POST {
        None
    } else {
        Some(weft_odata::write_target(&schema, method.as_str(), rest)?)
    };
    let json = match target {
        Some(MetadataWrite::DeleteTable(_)) => serde_json::Value::Null,
        _ => {
            let bytes = read_body(body, state.limits.body_bytes, &state.limits).await?;
            serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::payload(format!("The request body is not valid JSON: {e}."))
            })?
        }
    };
    let base = base_url(state, headers);
    let entity_url = |table: &str| {
        format!(
            "{base}/EntityDefinitions({})",
            metadata_id("entity", &[table])
        )
    };
    let location = match target {
        None => {
            let tables = weft_odata::tables_from_create_entities(&json)?;
            for t in &tables {
                refuse_taken(&state.runtime.schema(), t)?;
                put(state, t.clone()).await?;
            }
            None
        }
        Some(MetadataWrite::CreateTable) => {
            let table = weft_odata::table_from_json(&json)?;
            refuse_taken(&schema, &table)?;
            let url = entity_url(&table.logical_name);
            put(state, table).await?;
            Some(url)
        }
        Some(MetadataWrite::AddColumn(name)) => {
            let mut table = runtime_table(&schema, &name, "given columns through the Web API")?;
            let column = weft_odata::attribute_from_json(&json)?;
            if table.attribute(&column.logical_name).is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    DUPLICATE_NAME,
                    format!(
                        "An attribute with the specified name {} already exists on the entity {name}.",
                        column.logical_name
                    ),
                ));
            }
            let url = format!(
                "{}/Attributes({})",
                entity_url(&name),
                metadata_id("attribute", &[&name, &column.logical_name])
            );
            table.attributes.push(column);
            put(state, table).await?;
            Some(url)
        }
        Some(MetadataWrite::DeleteTable(name)) => {
            runtime_table(&schema, &name, "deleted through the Web API")?;
            refuse_registered(state, &name)?;
            let runtime = state.runtime.clone();
            store_call(move || runtime.store.delete_runtime_table(&name)).await?;
            None
        }
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(url) = location
        && let Ok(v) = HeaderValue::from_str(&url)
    {
        response.headers_mut().insert("OData-EntityId", v);
    }
    Ok(response)
}

/// Dataverse's answer to a table whose logical name or entity set name another table has.
fn refuse_taken(schema: &weft_store::Schema, table: &TableDef) -> Result<(), ApiError> {
    if schema.name_taken(table) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            DUPLICATE_NAME,
            format!(
                "An entity with the specified name {} (entity set {}) already exists. Please specify \
                 a unique name.",
                table.logical_name, table.entity_set_name
            ),
        ));
    }
    Ok(())
}

/// The runtime table `name` (a copy to change), or 400 for a table `weft.toml` declares.
fn runtime_table(
    schema: &weft_store::Schema,
    name: &str,
    what: &str,
) -> Result<TableDef, ApiError> {
    match schema.table(name) {
        Some(t) if schema.is_runtime_table(name) => Ok(t.clone()),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            BAD_PAYLOAD,
            format!(
                "The table {name} is declared in weft.toml: only tables created through the Web API \
                 are {what}; change weft.toml instead."
            ),
        )),
    }
}

async fn put(state: &AppState, table: TableDef) -> Result<(), ApiError> {
    let runtime = state.runtime.clone();
    store_call(move || runtime.store.put_runtime_table(table)).await
}

/// Runs a table change on a blocking thread (it waits for the database's DDL).
async fn store_call(
    f: impl FnOnce() -> weft_store::Result<()> + Send + 'static,
) -> Result<(), ApiError> {
    let done = tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "0x80040216",
            format!("the table change did not complete: {e}"),
        )
    })?;
    done.map_err(|e| match e {
        // The declaration the store refused (a bad name, a constraint out of range): the caller's body.
        StoreError::Invalid(why) => ApiError::payload(why),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "0x80040216",
            other.to_string(),
        ),
    })
}
