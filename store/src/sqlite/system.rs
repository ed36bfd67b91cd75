//! System tables on SQLite: registration, service endpoints, plug-in trace log and system jobs.
//!
//! Owns the DDL and SQL of the system tables (Dataverse column names where one exists). It must not touch
//! declared tables. Secret columns (`secureconfig`, `saskey`, `sastoken`, `authvalue`) are only read by the
//! two `…_for_sandbox` / `…_for_delivery` functions; every other query selects flags instead.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use uuid::Uuid;

use crate::system::*;
use crate::{EntityRef, Result, StoreError};

pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS pluginassembly (
            pluginassemblyid TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, componentpath TEXT NOT NULL,
            sha256 TEXT) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS plugintype (
            plugintypeid TEXT PRIMARY KEY NOT NULL, pluginassemblyid TEXT NOT NULL, typename TEXT NOT NULL)
            WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS sdkmessageprocessingstep (
            sdkmessageprocessingstepid TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, message TEXT NOT NULL,
            primaryentity TEXT, stage INTEGER NOT NULL, mode INTEGER NOT NULL, rank INTEGER NOT NULL,
            filteringattributes TEXT NOT NULL, configuration TEXT, statecode INTEGER NOT NULL,
            statuscode INTEGER NOT NULL, impersonatinguserid TEXT, invocationsource INTEGER NOT NULL,
            asyncautodelete INTEGER NOT NULL, eventhandler TEXT NOT NULL, eventhandlertype TEXT NOT NULL)
            WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS sdkmessageprocessingstepimage (
            sdkmessageprocessingstepimageid TEXT PRIMARY KEY NOT NULL, sdkmessageprocessingstepid TEXT NOT NULL,
            entityalias TEXT NOT NULL, imagetype INTEGER NOT NULL, attributes TEXT NOT NULL,
            messagepropertyname TEXT NOT NULL) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS sdkmessageprocessingstepimage_step
            ON sdkmessageprocessingstepimage (sdkmessageprocessingstepid);
         CREATE TABLE IF NOT EXISTS sdkmessageprocessingstepsecureconfig (
            sdkmessageprocessingstepid TEXT PRIMARY KEY NOT NULL, secureconfig TEXT NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS serviceendpoint (
            serviceendpointid TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, description TEXT,
            contract INTEGER NOT NULL, messageformat INTEGER NOT NULL, authtype INTEGER NOT NULL,
            connectionmode INTEGER NOT NULL, namespaceformat INTEGER, userclaim INTEGER NOT NULL,
            messagecharset INTEGER, namespaceaddress TEXT, path TEXT, url TEXT, saskeyname TEXT,
            solutionnamespace TEXT, saskey TEXT, sastoken TEXT, authvalue TEXT) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS plugintracelog (
            plugintracelogid TEXT PRIMARY KEY NOT NULL, pluginstepid TEXT, typename TEXT NOT NULL,
            messagename TEXT NOT NULL, primaryentity TEXT, depth INTEGER NOT NULL, correlationid TEXT NOT NULL,
            mode INTEGER NOT NULL, performanceexecutionduration INTEGER NOT NULL, outcome INTEGER NOT NULL,
            messageblock TEXT NOT NULL, stderr TEXT NOT NULL, exceptiondetails TEXT, createdon INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS plugintracelog_createdon ON plugintracelog (createdon);
         CREATE TABLE IF NOT EXISTS plugintracelog_recording (
            plugintracelogid TEXT PRIMARY KEY NOT NULL, recording TEXT NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS asyncoperation (
            sequence INTEGER PRIMARY KEY AUTOINCREMENT, asyncoperationid TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL, operationtype INTEGER NOT NULL, messagename TEXT NOT NULL,
            primaryentitytype TEXT, regardingobjectid TEXT, regardingobjecttype TEXT, owningextensionid TEXT,
            correlationid TEXT NOT NULL, depth INTEGER NOT NULL, datacontenttype TEXT NOT NULL,
            createdon INTEGER NOT NULL, startedon INTEGER, completedon INTEGER, postponeuntil INTEGER,
            retrycount INTEGER NOT NULL DEFAULT 0, errorcode INTEGER, message TEXT, friendlymessage TEXT,
            statecode INTEGER NOT NULL, statuscode INTEGER NOT NULL, leaseowner TEXT, leaseexpireson INTEGER);
         CREATE TABLE IF NOT EXISTS asyncoperationdata (
            sequence INTEGER PRIMARY KEY NOT NULL, data BLOB NOT NULL);
         DROP INDEX IF EXISTS asyncoperation_runnable;
         CREATE INDEX IF NOT EXISTS asyncoperation_queue
            ON asyncoperation (statecode, statuscode, createdon, sequence, postponeuntil, leaseexpireson);
         CREATE TABLE IF NOT EXISTS asyncoperationattempt (
            asyncoperationid TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT NOT NULL,
            startedon INTEGER NOT NULL, serviceendpointid TEXT, httpstatus INTEGER, latencyms INTEGER NOT NULL,
            outcome TEXT NOT NULL, errorcode INTEGER, message TEXT,
            PRIMARY KEY (asyncoperationid, attempt)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS pluginassemblycontent (
            pluginassemblyid TEXT PRIMARY KEY NOT NULL, sha256 TEXT NOT NULL, content BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS weft_declaration (
            kind TEXT NOT NULL, id TEXT NOT NULL, fingerprint TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS workflow (
            workflowid TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, primaryentity TEXT NOT NULL,
            statecode INTEGER NOT NULL, statuscode INTEGER NOT NULL, definition TEXT NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS weft_table (
            logicalname TEXT PRIMARY KEY NOT NULL, definition TEXT NOT NULL) WITHOUT ROWID;",
    )?;
    move_job_data_out(conn)
}

/// Files written before the context moved out of `asyncoperation` keep it in an `asyncoperation.data` column:
/// copied to `asyncoperationdata` and the column dropped, in the opening transaction (all or nothing).
///
/// Why the context has a table of its own: a job's row is rewritten on every transition (claim, record), and
/// with a 1–200 KB context in it every transition rewrote at least a whole page of WAL, plus the checkpoint's
/// copy. Without it, a claim's jobs share a few pages.
fn move_job_data_out(conn: &Connection) -> Result<()> {
    let inline: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('asyncoperation') WHERE name = 'data'",
        [],
        |r| r.get(0),
    )?;
    if inline > 0 {
        conn.execute_batch(
            "INSERT INTO asyncoperationdata (sequence, data) SELECT sequence, data FROM asyncoperation;
             ALTER TABLE asyncoperation DROP COLUMN data;",
        )?;
    }
    Ok(())
}

fn uuid_col(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Uuid> {
    let s: String = row.get(i)?;
    Uuid::parse_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn opt_uuid_col(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Uuid>> {
    match row.get::<_, Option<String>>(i)? {
        None => Ok(None),
        Some(_) => uuid_col(row, i).map(Some),
    }
}

fn enum_col<E: TryFrom<i32, Error = String>>(
    row: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<E> {
    let v: i32 = row.get(i)?;
    E::try_from(v).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Integer, e.into())
    })
}

fn opt_enum_col<E: TryFrom<i32, Error = String>>(
    row: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<Option<E>> {
    match row.get::<_, Option<i32>>(i)? {
        None => Ok(None),
        Some(_) => enum_col(row, i).map(Some),
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn exists(conn: &Connection, sql: &str, id: Uuid) -> Result<bool> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([id.to_string()], |_| Ok(()))
        .optional()?
        .is_some())
}

// ---- registration ------------------------------------------------------------------------------------------

pub(crate) fn put_plugin_assembly(conn: &Connection, a: &PluginAssembly) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO pluginassembly (pluginassemblyid, name, componentpath, sha256) VALUES (?1,?2,?3,?4)",
    )?
    .execute(params![a.id.to_string(), a.name, a.component_path, a.sha256])?;
    Ok(())
}

pub(crate) fn plugin_assemblies(conn: &Connection) -> Result<Vec<PluginAssembly>> {
    let mut stmt = conn.prepare_cached(
        "SELECT pluginassemblyid, name, componentpath, sha256 FROM pluginassembly ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(PluginAssembly {
            id: uuid_col(r, 0)?,
            name: r.get(1)?,
            component_path: r.get(2)?,
            sha256: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn put_plugin_assembly_content(
    conn: &Connection,
    id: Uuid,
    content: Option<&AssemblyContent>,
) -> Result<()> {
    match content {
        Some(c) => {
            if !exists(
                conn,
                "SELECT 1 FROM pluginassembly WHERE pluginassemblyid = ?1",
                id,
            )? {
                return Err(StoreError::NotFound {
                    table: "pluginassembly".into(),
                    id,
                });
            }
            conn.prepare_cached(
                "INSERT OR REPLACE INTO pluginassemblycontent (pluginassemblyid, sha256, content) VALUES (?1,?2,?3)",
            )?
            .execute(params![id.to_string(), c.sha256, c.content])?;
        }
        None => {
            conn.prepare_cached("DELETE FROM pluginassemblycontent WHERE pluginassemblyid = ?1")?
                .execute([id.to_string()])?;
        }
    }
    Ok(())
}

pub(crate) fn plugin_assembly_content(
    conn: &Connection,
    id: Uuid,
) -> Result<Option<AssemblyContent>> {
    Ok(conn
        .prepare_cached(
            "SELECT sha256, content FROM pluginassemblycontent WHERE pluginassemblyid = ?1",
        )?
        .query_row([id.to_string()], |r| {
            Ok(AssemblyContent {
                sha256: r.get(0)?,
                content: r.get(1)?,
            })
        })
        .optional()?)
}

pub(crate) fn declarations(conn: &Connection) -> Result<Vec<Declaration>> {
    let mut stmt = conn
        .prepare_cached("SELECT kind, id, fingerprint FROM weft_declaration ORDER BY kind, id")?;
    let rows = stmt.query_map([], |r| {
        Ok(Declaration {
            kind: r.get(0)?,
            id: uuid_col(r, 1)?,
            fingerprint: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn put_declaration(conn: &Connection, d: &Declaration) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO weft_declaration (kind, id, fingerprint) VALUES (?1,?2,?3)",
    )?
    .execute(params![d.kind, d.id.to_string(), d.fingerprint])?;
    Ok(())
}

pub(crate) fn delete_declaration(conn: &Connection, kind: &str, id: Uuid) -> Result<()> {
    conn.prepare_cached("DELETE FROM weft_declaration WHERE kind = ?1 AND id = ?2")?
        .execute(params![kind, id.to_string()])?;
    Ok(())
}

pub(crate) fn put_plugin_type(conn: &Connection, t: &PluginType) -> Result<()> {
    if !exists(
        conn,
        "SELECT 1 FROM pluginassembly WHERE pluginassemblyid = ?1",
        t.assembly_id,
    )? {
        return Err(StoreError::Invalid(format!(
            "plug-in type `{}`: plug-in assembly {} is not registered",
            t.type_name, t.assembly_id
        )));
    }
    conn.prepare_cached("INSERT OR REPLACE INTO plugintype (plugintypeid, pluginassemblyid, typename) VALUES (?1,?2,?3)")?
        .execute(params![t.id.to_string(), t.assembly_id.to_string(), t.type_name])?;
    Ok(())
}

pub(crate) fn plugin_types(conn: &Connection) -> Result<Vec<PluginType>> {
    let mut stmt = conn.prepare_cached(
        "SELECT plugintypeid, pluginassemblyid, typename FROM plugintype ORDER BY typename",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(PluginType {
            id: uuid_col(r, 0)?,
            assembly_id: uuid_col(r, 1)?,
            type_name: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn put_step(conn: &Connection, s: &StepDef, secure: SecretUpdate) -> Result<()> {
    let (handler, handler_type) = s.check(|table, id| {
        exists(
            conn,
            &format!("SELECT 1 FROM {table} WHERE {table}id = ?1"),
            id,
        )
    })?;
    let id = s.id.to_string();
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sdkmessageprocessingstep (sdkmessageprocessingstepid, name, message, primaryentity,
            stage, mode, rank, filteringattributes, configuration, statecode, statuscode, impersonatinguserid,
            invocationsource, asyncautodelete, eventhandler, eventhandlertype)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
    )?
    .execute(params![
        id,
        s.name,
        s.message,
        s.primary_entity,
        s.stage.value(),
        s.mode.value(),
        s.rank,
        s.filtering_attributes.join(","),
        s.configuration,
        s.state.value(),
        s.state.status_code(),
        s.impersonating_user_id.map(|u| u.to_string()),
        s.invocation_source.value(),
        s.async_auto_delete,
        handler.to_string(),
        handler_type,
    ])?;
    conn.prepare_cached(
        "DELETE FROM sdkmessageprocessingstepimage WHERE sdkmessageprocessingstepid = ?1",
    )?
    .execute([&id])?;
    for i in &s.images {
        conn.prepare_cached(
            "INSERT INTO sdkmessageprocessingstepimage (sdkmessageprocessingstepimageid, sdkmessageprocessingstepid,
                entityalias, imagetype, attributes, messagepropertyname) VALUES (?1,?2,?3,?4,?5,?6)",
        )?
        .execute(params![
            i.id.to_string(),
            id,
            i.entity_alias,
            i.image_type.value(),
            i.attributes.join(","),
            i.message_property_name
        ])
        .map_err(|e| StoreError::Invalid(format!("step `{}`: image `{}`: {e}", s.name, i.entity_alias)))?;
    }
    match secure {
        SecretUpdate::Keep => {}
        SecretUpdate::Clear => {
            conn.prepare_cached("DELETE FROM sdkmessageprocessingstepsecureconfig WHERE sdkmessageprocessingstepid = ?1")?
                .execute([&id])?;
        }
        SecretUpdate::Set(v) => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO sdkmessageprocessingstepsecureconfig (sdkmessageprocessingstepid, secureconfig)
                 VALUES (?1, ?2)",
            )?
            .execute(params![id, v])?;
        }
    }
    Ok(())
}

pub(crate) fn delete_step(conn: &Connection, id: Uuid) -> Result<bool> {
    let id = id.to_string();
    conn.prepare_cached(
        "DELETE FROM sdkmessageprocessingstepimage WHERE sdkmessageprocessingstepid = ?1",
    )?
    .execute([&id])?;
    conn.prepare_cached(
        "DELETE FROM sdkmessageprocessingstepsecureconfig WHERE sdkmessageprocessingstepid = ?1",
    )?
    .execute([&id])?;
    let n = conn
        .prepare_cached(
            "DELETE FROM sdkmessageprocessingstep WHERE sdkmessageprocessingstepid = ?1",
        )?
        .execute([&id])?;
    Ok(n > 0)
}

pub(crate) fn workflows(conn: &Connection) -> Result<Vec<StoredWorkflow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT workflowid, name, primaryentity, statecode, definition FROM workflow ORDER BY workflowid",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(StoredWorkflow {
                id: uuid_col(r, 0)?,
                name: r.get(1)?,
                primary_entity: r.get(2)?,
                activated: r.get::<_, i32>(3)? == 1,
                definition: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub(crate) fn put_workflow(conn: &Connection, w: &StoredWorkflow) -> Result<()> {
    let (state, status) = if w.activated { (1, 2) } else { (0, 1) };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO workflow (workflowid, name, primaryentity, statecode, statuscode, definition)
         VALUES (?1,?2,?3,?4,?5,?6)",
    )?
    .execute(params![
        w.id.to_string(),
        w.name,
        w.primary_entity,
        state,
        status,
        w.definition
    ])?;
    Ok(())
}

pub(crate) fn delete_workflow(conn: &Connection, id: Uuid) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM workflow WHERE workflowid = ?1")?
        .execute([id.to_string()])?;
    Ok(n > 0)
}

pub(crate) fn steps(conn: &Connection) -> Result<Vec<Step>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.sdkmessageprocessingstepid, name, message, primaryentity, stage, mode, rank, filteringattributes,
                configuration, statecode, impersonatinguserid, invocationsource, asyncautodelete, eventhandler,
                eventhandlertype, c.sdkmessageprocessingstepid IS NOT NULL
         FROM sdkmessageprocessingstep s
         LEFT JOIN sdkmessageprocessingstepsecureconfig c USING (sdkmessageprocessingstepid)
         ORDER BY message, stage, rank, s.sdkmessageprocessingstepid",
    )?;
    let rows = stmt.query_map([], |r| {
        let handler = uuid_col(r, 13)?;
        let handler_type: String = r.get(14)?;
        let event_handler = if handler_type == "serviceendpoint" {
            EventHandler::ServiceEndpoint(handler)
        } else {
            EventHandler::PluginType(handler)
        };
        Ok(Step {
            def: StepDef {
                id: uuid_col(r, 0)?,
                name: r.get(1)?,
                message: r.get(2)?,
                primary_entity: r.get(3)?,
                stage: enum_col(r, 4)?,
                mode: enum_col(r, 5)?,
                rank: r.get(6)?,
                filtering_attributes: list(&r.get::<_, String>(7)?),
                configuration: r.get(8)?,
                images: Vec::new(),
                state: enum_col(r, 9)?,
                impersonating_user_id: opt_uuid_col(r, 10)?,
                invocation_source: enum_col(r, 11)?,
                async_auto_delete: r.get(12)?,
                event_handler,
            },
            is_secure_configuration_set: r.get(15)?,
        })
    })?;
    let mut steps: Vec<Step> = rows.collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT sdkmessageprocessingstepid, sdkmessageprocessingstepimageid, entityalias, imagetype, attributes,
                messagepropertyname
         FROM sdkmessageprocessingstepimage ORDER BY entityalias",
    )?;
    let images = stmt.query_map([], |r| {
        Ok((
            uuid_col(r, 0)?,
            StepImage {
                id: uuid_col(r, 1)?,
                entity_alias: r.get(2)?,
                image_type: enum_col(r, 3)?,
                attributes: list(&r.get::<_, String>(4)?),
                message_property_name: r.get(5)?,
            },
        ))
    })?;
    for image in images {
        let (step_id, image) = image?;
        if let Some(s) = steps.iter_mut().find(|s| s.def.id == step_id) {
            s.def.images.push(image);
        }
    }
    Ok(steps)
}

pub(crate) fn step_secure_configuration(
    conn: &Connection,
    step_id: Uuid,
) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT secureconfig FROM sdkmessageprocessingstepsecureconfig WHERE sdkmessageprocessingstepid = ?1")?
        .query_row([step_id.to_string()], |r| r.get(0))
        .optional()?)
}

// ---- service endpoints -------------------------------------------------------------------------------------

pub(crate) fn put_service_endpoint(
    conn: &Connection,
    e: &ServiceEndpointDef,
    secrets: &EndpointSecretsUpdate,
) -> Result<()> {
    let id = e.id.to_string();
    // Upsert: replacing the row would drop the write-only secret columns the caller did not mention.
    conn.prepare_cached(
        "INSERT INTO serviceendpoint (serviceendpointid, name, description, contract, messageformat, authtype,
            connectionmode, namespaceformat, userclaim, messagecharset, namespaceaddress, path, url, saskeyname,
            solutionnamespace)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)
         ON CONFLICT (serviceendpointid) DO UPDATE SET name=excluded.name, description=excluded.description,
            contract=excluded.contract, messageformat=excluded.messageformat, authtype=excluded.authtype,
            connectionmode=excluded.connectionmode, namespaceformat=excluded.namespaceformat,
            userclaim=excluded.userclaim, messagecharset=excluded.messagecharset,
            namespaceaddress=excluded.namespaceaddress, path=excluded.path, url=excluded.url,
            saskeyname=excluded.saskeyname, solutionnamespace=excluded.solutionnamespace",
    )?
    .execute(params![
        id,
        e.name,
        e.description,
        e.contract.value(),
        e.message_format.value(),
        e.auth_type.value(),
        e.connection_mode.value(),
        e.namespace_format.map(NamespaceFormat::value),
        e.user_claim.value(),
        e.message_charset.map(MessageCharset::value),
        e.namespace_address,
        e.path,
        e.url,
        e.sas_key_name,
        e.solution_namespace,
    ])?;
    for (column, update) in [
        ("saskey", &secrets.sas_key),
        ("sastoken", &secrets.sas_token),
        ("authvalue", &secrets.auth_value),
    ] {
        let value = match update {
            SecretUpdate::Keep => continue,
            SecretUpdate::Clear => None,
            SecretUpdate::Set(v) => Some(v.as_str()),
        };
        conn.prepare_cached(&format!(
            "UPDATE serviceendpoint SET {column} = ?2 WHERE serviceendpointid = ?1"
        ))?
        .execute(params![id, value])?;
    }
    Ok(())
}

pub(crate) fn delete_service_endpoint(conn: &Connection, id: Uuid) -> Result<bool> {
    let users: Option<String> = conn
        .prepare_cached("SELECT name FROM sdkmessageprocessingstep WHERE eventhandler = ?1 AND eventhandlertype = 'serviceendpoint'")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?;
    if let Some(step) = users {
        return Err(StoreError::Invalid(format!(
            "service endpoint {id} is used by step `{step}`; delete the step first"
        )));
    }
    Ok(conn
        .prepare_cached("DELETE FROM serviceendpoint WHERE serviceendpointid = ?1")?
        .execute([id.to_string()])?
        > 0)
}

const ENDPOINT_COLUMNS: &str = "serviceendpointid, name, description, contract, messageformat, authtype, connectionmode,
    namespaceformat, userclaim, messagecharset, namespaceaddress, path, url, saskeyname, solutionnamespace,
    saskey IS NOT NULL, sastoken IS NOT NULL, authvalue IS NOT NULL";

fn endpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ServiceEndpoint> {
    Ok(ServiceEndpoint {
        def: ServiceEndpointDef {
            id: uuid_col(r, 0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            contract: enum_col(r, 3)?,
            message_format: enum_col(r, 4)?,
            auth_type: enum_col(r, 5)?,
            connection_mode: enum_col(r, 6)?,
            namespace_format: opt_enum_col(r, 7)?,
            user_claim: enum_col(r, 8)?,
            message_charset: opt_enum_col(r, 9)?,
            namespace_address: r.get(10)?,
            path: r.get(11)?,
            url: r.get(12)?,
            sas_key_name: r.get(13)?,
            solution_namespace: r.get(14)?,
        },
        is_sas_key_set: r.get(15)?,
        is_sas_token_set: r.get(16)?,
        is_auth_value_set: r.get(17)?,
    })
}

pub(crate) fn service_endpoints(conn: &Connection) -> Result<Vec<ServiceEndpoint>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM serviceendpoint ORDER BY name"
    ))?;
    Ok(stmt
        .query_map([], endpoint_row)?
        .collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn service_endpoint(conn: &Connection, id: Uuid) -> Result<Option<ServiceEndpoint>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM serviceendpoint WHERE serviceendpointid = ?1"
    ))?;
    Ok(stmt.query_row([id.to_string()], endpoint_row).optional()?)
}

pub(crate) fn service_endpoint_secrets(
    conn: &Connection,
    id: Uuid,
) -> Result<Option<EndpointSecrets>> {
    let mut stmt = conn.prepare_cached(
        "SELECT saskey, sastoken, authvalue FROM serviceendpoint WHERE serviceendpointid = ?1",
    )?;
    Ok(stmt
        .query_row([id.to_string()], |r| {
            Ok(EndpointSecrets {
                sas_key: r.get(0)?,
                sas_token: r.get(1)?,
                auth_value: r.get(2)?,
            })
        })
        .optional()?)
}

// ---- plug-in trace log -------------------------------------------------------------------------------------

pub(crate) fn insert_trace_log(
    conn: &Connection,
    id: Uuid,
    e: &NewTraceLog,
    created_on: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO plugintracelog (plugintracelogid, pluginstepid, typename, messagename, primaryentity, depth,
            correlationid, mode, performanceexecutionduration, outcome, messageblock, stderr, exceptiondetails, createdon)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
    )?
    .execute(params![
        id.to_string(),
        e.step_id.map(|u| u.to_string()),
        e.plugin,
        e.message_name,
        e.primary_entity,
        e.depth,
        e.correlation_id.to_string(),
        e.mode.value(),
        e.duration_ms,
        e.outcome.value(),
        e.trace,
        e.stderr,
        e.error,
        created_on,
    ])?;
    if let Some(recording) = &e.recording {
        conn.prepare_cached(
            "INSERT INTO plugintracelog_recording (plugintracelogid, recording) VALUES (?1, ?2)",
        )?
        .execute(params![id.to_string(), recording])?;
    }
    Ok(())
}

pub(crate) fn trace_recording(conn: &Connection, id: Uuid) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT recording FROM plugintracelog_recording WHERE plugintracelogid = ?1",
        )?
        .query_row(params![id.to_string()], |r| r.get(0))
        .optional()?)
}

/// ` LIMIT n OFFSET skip` for a listing (LIMIT -1 is SQLite's "no limit"; OFFSET needs a LIMIT before it).
fn limit_offset(limit: Option<u32>, skip: u64) -> String {
    match (limit, skip) {
        (None, 0) => String::new(),
        (Some(n), 0) => format!(" LIMIT {n}"),
        (n, skip) => format!(" LIMIT {} OFFSET {skip}", n.map_or(-1, i64::from)),
    }
}

pub(crate) fn purge_trace_logs(conn: &Connection, before_ms: i64, limit: usize) -> Result<usize> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let purged = conn
        .prepare_cached(
            "DELETE FROM plugintracelog WHERE rowid IN (SELECT rowid FROM plugintracelog
             WHERE createdon < ?1 ORDER BY createdon LIMIT ?2)",
        )?
        .execute(params![before_ms, limit])?;
    // Recordings go with their rows (they are few: failed executions).
    conn.prepare_cached(
        "DELETE FROM plugintracelog_recording WHERE NOT EXISTS (SELECT 1 FROM plugintracelog t
         WHERE t.plugintracelogid = plugintracelog_recording.plugintracelogid)",
    )?
    .execute([])?;
    Ok(purged)
}

pub(crate) fn trace_logs(conn: &Connection, f: &TraceFilter) -> Result<Vec<TraceLog>> {
    let mut sql = String::from(
        "SELECT plugintracelogid, pluginstepid, typename, messagename, primaryentity, depth, correlationid, mode,
                performanceexecutionduration, outcome, messageblock, stderr, exceptiondetails, createdon
         FROM plugintracelog WHERE 1",
    );
    let mut params = Vec::new();
    if let Some(s) = f.step_id {
        sql.push_str(" AND pluginstepid = ?");
        params.push(SqlValue::Text(s.to_string()));
    }
    if let Some(c) = f.correlation_id {
        sql.push_str(" AND correlationid = ?");
        params.push(SqlValue::Text(c.to_string()));
    }
    sql.push_str(" ORDER BY createdon DESC, rowid DESC");
    sql.push_str(&limit_offset(f.limit, f.skip));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(params), |r| {
        Ok(TraceLog {
            id: uuid_col(r, 0)?,
            entry: NewTraceLog {
                step_id: opt_uuid_col(r, 1)?,
                plugin: r.get(2)?,
                message_name: r.get(3)?,
                primary_entity: r.get(4)?,
                depth: r.get(5)?,
                correlation_id: uuid_col(r, 6)?,
                mode: enum_col(r, 7)?,
                duration_ms: r.get(8)?,
                outcome: enum_col(r, 9)?,
                trace: r.get(10)?,
                stderr: r.get(11)?,
                error: r.get(12)?,
                recording: None,
            },
            created_on: r.get(13)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

// ---- system jobs -------------------------------------------------------------------------------------------

const JOB_COLUMNS: &str = "asyncoperationid, name, operationtype, messagename, primaryentitytype, regardingobjectid,
    regardingobjecttype, owningextensionid, correlationid, depth,
    (SELECT data FROM asyncoperationdata WHERE asyncoperationdata.sequence = asyncoperation.sequence),
    datacontenttype, createdon, startedon,
    completedon, postponeuntil, retrycount, errorcode, message, friendlymessage, sequence, statuscode, leaseowner,
    leaseexpireson";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SystemJob> {
    let regarding = match (opt_uuid_col(r, 5)?, r.get::<_, Option<String>>(6)?) {
        (Some(id), Some(logical_name)) => Some(EntityRef { logical_name, id }),
        _ => None,
    };
    Ok(SystemJob {
        id: uuid_col(r, 0)?,
        name: r.get(1)?,
        operation_type: r.get(2)?,
        message_name: r.get(3)?,
        primary_entity_type: r.get(4)?,
        regarding,
        owning_extension_id: opt_uuid_col(r, 7)?,
        correlation_id: uuid_col(r, 8)?,
        depth: r.get(9)?,
        data: r.get(10)?,
        data_content_type: r.get(11)?,
        created_on: r.get(12)?,
        started_on: r.get(13)?,
        completed_on: r.get(14)?,
        postpone_until: r.get(15)?,
        retry_count: r.get(16)?,
        error_code: r.get(17)?,
        message: r.get(18)?,
        friendly_message: r.get(19)?,
        sequence: r.get(20)?,
        status: enum_col(r, 21)?,
        lease_owner: r.get(22)?,
        lease_expires_on: r.get(23)?,
    })
}

pub(crate) fn insert_system_job(conn: &Connection, j: &NewSystemJob, now: i64) -> Result<Uuid> {
    let id = j.id.unwrap_or_else(crate::new_id);
    let status = JobStatus::WaitingForResources;
    let r = conn
        .prepare_cached(
            "INSERT INTO asyncoperation (asyncoperationid, name, operationtype, messagename, primaryentitytype,
                regardingobjectid, regardingobjecttype, owningextensionid, correlationid, depth, datacontenttype,
                createdon, postponeuntil, statecode, statuscode)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
        )?
        .execute(params![
            id.to_string(),
            j.name,
            j.operation_type,
            j.message_name,
            j.primary_entity_type,
            j.regarding.as_ref().map(|r| r.id.to_string()),
            j.regarding.as_ref().map(|r| r.logical_name.as_str()),
            j.owning_extension_id.map(|u| u.to_string()),
            j.correlation_id.to_string(),
            j.depth,
            j.data_content_type,
            j.created_on.unwrap_or(now),
            j.postpone_until,
            status.state().value(),
            status.value(),
        ]);
    match r {
        Ok(_) => {
            conn.prepare_cached("INSERT INTO asyncoperationdata (sequence, data) VALUES (?1, ?2)")?
                .execute(params![conn.last_insert_rowid(), j.data])?;
            Ok(id)
        }
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            Err(StoreError::DuplicateId {
                table: "asyncoperation".into(),
                id,
            })
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn system_job(conn: &Connection, id: Uuid) -> Result<Option<SystemJob>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM asyncoperation WHERE asyncoperationid = ?1"
    ))?;
    Ok(stmt.query_row([id.to_string()], job_row).optional()?)
}

pub(crate) fn system_job_lease(conn: &Connection, id: Uuid) -> Result<Option<JobLease>> {
    // Not JOB_COLUMNS: the context (a page or more) and the texts are what recording an attempt need not read.
    let mut stmt = conn.prepare_cached(
        "SELECT statuscode, leaseowner, postponeuntil, owningextensionid FROM asyncoperation
         WHERE asyncoperationid = ?1",
    )?;
    Ok(stmt
        .query_row([id.to_string()], |r| {
            Ok(JobLease {
                status: enum_col(r, 0)?,
                lease_owner: r.get(1)?,
                postpone_until: r.get(2)?,
                owning_extension_id: opt_uuid_col(r, 3)?,
            })
        })
        .optional()?)
}

pub(crate) fn system_job_count(conn: &Connection, status: JobStatus) -> Result<(u64, Option<i64>)> {
    // The status implies its state: naming both walks `asyncoperation_queue` without reading a row.
    let mut stmt = conn.prepare_cached(
        "SELECT count(*), min(createdon) FROM asyncoperation WHERE statecode = ?1 AND statuscode = ?2",
    )?;
    Ok(
        stmt.query_row([status.state().value(), status.value()], |r| {
            Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get(1)?))
        })?,
    )
}

pub(crate) fn system_jobs(conn: &Connection, f: &JobFilter) -> Result<Vec<SystemJob>> {
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM asyncoperation WHERE 1");
    let mut params = Vec::new();
    if let Some(s) = f.state {
        sql.push_str(" AND statecode = ?");
        params.push(SqlValue::Integer(s.value().into()));
    }
    if let Some(s) = f.status {
        // The status implies its state: naming both lets `asyncoperation_queue` find the rows in order.
        sql.push_str(" AND statecode = ? AND statuscode = ?");
        params.push(SqlValue::Integer(s.state().value().into()));
        params.push(SqlValue::Integer(s.value().into()));
    }
    for (column, id) in [
        ("owningextensionid", f.owning_extension_id),
        ("correlationid", f.correlation_id),
        ("regardingobjectid", f.regarding_id),
    ] {
        if let Some(id) = id {
            sql.push_str(&format!(" AND {column} = ?"));
            params.push(SqlValue::Text(id.to_string()));
        }
    }
    sql.push_str(if f.newest_first {
        " ORDER BY createdon DESC, sequence DESC"
    } else {
        " ORDER BY createdon, sequence"
    });
    sql.push_str(&limit_offset(f.limit, f.skip));
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt
        .query_map(params_from_iter(params), job_row)?
        .collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn claim_jobs(
    conn: &Connection,
    worker: &str,
    now: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<SystemJob>> {
    // One LIMITed arm per claimable status, each a walk of `asyncoperation_queue` in (createdon, sequence)
    // order that reads due times from the index and stops after `limit` hits; the oldest `limit` of the
    // three arms are claimed. A single OR'ed WHERE made SQLite collect and look up every Ready row (a 3 KB
    // context each) and sort them on every claim: claims cost O(backlog) and a backlog drained in O(n²).
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE asyncoperation SET statecode = 2, statuscode = 20, leaseowner = ?1, leaseexpireson = ?2,
            startedon = coalesce(startedon, ?3)
         WHERE sequence IN (
            SELECT sequence FROM (
               SELECT * FROM (SELECT sequence, createdon FROM asyncoperation
                  WHERE statecode = 0 AND statuscode = 0 AND (postponeuntil IS NULL OR postponeuntil <= ?3)
                  ORDER BY createdon, sequence LIMIT ?4)
               UNION ALL
               SELECT * FROM (SELECT sequence, createdon FROM asyncoperation
                  WHERE statecode = 1 AND statuscode = 10 AND postponeuntil IS NOT NULL AND postponeuntil <= ?3
                  ORDER BY createdon, sequence LIMIT ?4)
               UNION ALL
               SELECT * FROM (SELECT sequence, createdon FROM asyncoperation
                  WHERE statecode = 2 AND statuscode = 20 AND leaseexpireson <= ?3
                  ORDER BY createdon, sequence LIMIT ?4))
            ORDER BY createdon, sequence LIMIT ?4)
         RETURNING {JOB_COLUMNS}"
    ))?;
    let mut jobs: Vec<SystemJob> = stmt
        .query_map(
            params![worker, now.saturating_add(lease_ms), now, limit],
            job_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    jobs.sort_by_key(|j| (j.created_on, j.sequence));
    Ok(jobs)
}

/// Moves a job leased to `worker` out of Locked; LeaseLost if it is not (or NotFound if it does not exist).
fn finish(
    conn: &Connection,
    id: Uuid,
    worker: &str,
    sets: &str,
    params: &[SqlValue],
) -> Result<()> {
    let sql = format!(
        "UPDATE asyncoperation SET {sets}, leaseowner = NULL, leaseexpireson = NULL
         WHERE asyncoperationid = ?1 AND statecode = 2 AND leaseowner = ?2"
    );
    let mut all = vec![
        SqlValue::Text(id.to_string()),
        SqlValue::Text(worker.to_string()),
    ];
    all.extend_from_slice(params);
    if conn.prepare_cached(&sql)?.execute(params_from_iter(all))? == 1 {
        return Ok(());
    }
    if system_job(conn, id)?.is_none() {
        return Err(StoreError::NotFound {
            table: "asyncoperation".into(),
            id,
        });
    }
    Err(StoreError::LeaseLost {
        id,
        worker: worker.to_string(),
    })
}

fn error_params(e: &JobError) -> [SqlValue; 3] {
    [
        e.code
            .map_or(SqlValue::Null, |c| SqlValue::Integer(c.into())),
        SqlValue::Text(e.message.clone()),
        e.friendly_message
            .clone()
            .map_or(SqlValue::Null, SqlValue::Text),
    ]
}

pub(crate) fn complete_job(conn: &Connection, id: Uuid, worker: &str, now: i64) -> Result<()> {
    finish(
        conn,
        id,
        worker,
        "statecode = 3, statuscode = 30, completedon = ?3",
        &[SqlValue::Integer(now)],
    )
}

pub(crate) fn fail_job(
    conn: &Connection,
    id: Uuid,
    worker: &str,
    now: i64,
    e: &JobError,
) -> Result<()> {
    let [code, message, friendly] = error_params(e);
    finish(
        conn,
        id,
        worker,
        "statecode = 3, statuscode = 31, completedon = ?3, errorcode = ?4, message = ?5, friendlymessage = ?6",
        &[SqlValue::Integer(now), code, message, friendly],
    )
}

pub(crate) fn wait_job(
    conn: &Connection,
    id: Uuid,
    worker: &str,
    next_attempt: i64,
    e: &JobError,
) -> Result<()> {
    let [code, message, friendly] = error_params(e);
    finish(
        conn,
        id,
        worker,
        "statecode = 1, statuscode = 10, postponeuntil = ?3, retrycount = retrycount + 1, errorcode = ?4,
         message = ?5, friendlymessage = ?6",
        &[SqlValue::Integer(next_attempt), code, message, friendly],
    )
}

pub(crate) fn delete_job(conn: &Connection, id: Uuid) -> Result<bool> {
    conn.prepare_cached("DELETE FROM asyncoperationattempt WHERE asyncoperationid = ?1")?
        .execute([id.to_string()])?;
    conn.prepare_cached(
        "DELETE FROM asyncoperationdata
         WHERE sequence = (SELECT sequence FROM asyncoperation WHERE asyncoperationid = ?1)",
    )?
    .execute([id.to_string()])?;
    Ok(conn
        .prepare_cached("DELETE FROM asyncoperation WHERE asyncoperationid = ?1")?
        .execute([id.to_string()])?
        > 0)
}

pub(crate) fn update_job(conn: &Connection, id: Uuid, u: &JobUpdate) -> Result<()> {
    let (code, message, friendly, set_error) = match &u.error {
        Some(e) => {
            let [c, m, f] = error_params(e);
            (c, m, f, true)
        }
        None => (SqlValue::Null, SqlValue::Null, SqlValue::Null, false),
    };
    let n = conn
        .prepare_cached(
            "UPDATE asyncoperation SET statecode = ?2, statuscode = ?3, postponeuntil = ?4,
                completedon = coalesce(?5, completedon),
                retrycount = retrycount + ?6,
                errorcode = CASE WHEN ?7 THEN ?8 ELSE errorcode END,
                message = CASE WHEN ?7 THEN ?9 ELSE message END,
                friendlymessage = CASE WHEN ?7 THEN ?10 ELSE friendlymessage END,
                leaseowner = CASE WHEN ?2 = 2 THEN leaseowner END,
                leaseexpireson = CASE WHEN ?2 = 2 THEN leaseexpireson END
             WHERE asyncoperationid = ?1",
        )?
        .execute(params![
            id.to_string(),
            u.status.state().value(),
            u.status.value(),
            u.postpone_until,
            u.completed_on,
            i32::from(u.count_retry),
            set_error,
            code,
            message,
            friendly,
        ])?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            table: "asyncoperation".into(),
            id,
        })
    }
}

pub(crate) fn insert_job_attempt(conn: &Connection, a: &NewJobAttempt) -> Result<i32> {
    // Numbered in the writer's transaction, so two workers that both ran the job (a takeover after an
    // expired lease) get distinct numbers. The job's existence is checked in the same statement: one
    // statement fewer for every attempt recorded.
    let (exists, attempt): (bool, i32) = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM asyncoperation WHERE asyncoperationid = ?1),
                coalesce(max(attempt), 0) + 1
             FROM asyncoperationattempt WHERE asyncoperationid = ?1",
        )?
        .query_row([a.job_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if !exists {
        return Err(StoreError::NotFound {
            table: "asyncoperation".into(),
            id: a.job_id,
        });
    }
    conn.prepare_cached(
        "INSERT INTO asyncoperationattempt (asyncoperationid, attempt, worker, startedon, serviceendpointid,
            httpstatus, latencyms, outcome, errorcode, message) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
    )?
    .execute(params![
        a.job_id.to_string(),
        attempt,
        a.worker,
        a.started_on,
        a.endpoint_id.map(|u| u.to_string()),
        a.http_status,
        a.latency_ms,
        a.outcome,
        a.error_code,
        a.message,
    ])?;
    Ok(attempt)
}

pub(crate) fn job_attempts(conn: &Connection, job_id: Uuid) -> Result<Vec<JobAttempt>> {
    let mut stmt = conn.prepare_cached(
        "SELECT asyncoperationid, attempt, worker, startedon, serviceendpointid, httpstatus, latencyms, outcome,
                errorcode, message
         FROM asyncoperationattempt WHERE asyncoperationid = ?1 ORDER BY attempt",
    )?;
    let rows = stmt.query_map([job_id.to_string()], |r| {
        Ok(JobAttempt {
            attempt: r.get(1)?,
            entry: NewJobAttempt {
                job_id: uuid_col(r, 0)?,
                worker: r.get(2)?,
                started_on: r.get(3)?,
                endpoint_id: opt_uuid_col(r, 4)?,
                http_status: r.get(5)?,
                latency_ms: r.get(6)?,
                outcome: r.get(7)?,
                error_code: r.get(8)?,
                message: r.get(9)?,
            },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn expired_job_leases(conn: &Connection, now: i64) -> Result<Vec<SystemJob>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM asyncoperation WHERE statecode = 2 AND leaseexpireson <= ?1 ORDER BY sequence"
    ))?;
    Ok(stmt
        .query_map([now], job_row)?
        .collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn step_async_auto_delete(conn: &Connection, step_id: Uuid) -> Result<Option<bool>> {
    Ok(conn
        .prepare_cached(
            "SELECT asyncautodelete FROM sdkmessageprocessingstep WHERE sdkmessageprocessingstepid = ?1",
        )?
        .query_row([step_id.to_string()], |r| r.get(0))
        .optional()?)
}

/// The stored definitions of the tables created at runtime: (logical name, TOML).
pub(crate) fn runtime_tables(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt =
        conn.prepare("SELECT logicalname, definition FROM weft_table ORDER BY logicalname")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn put_runtime_table(conn: &Connection, name: &str, definition: &str) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO weft_table (logicalname, definition) VALUES (?1, ?2)",
        params![name, definition],
    )?;
    Ok(())
}

pub(crate) fn delete_runtime_table(conn: &Connection, name: &str) -> Result<()> {
    conn.execute(
        "DELETE FROM weft_table WHERE logicalname = ?1",
        params![name],
    )?;
    Ok(())
}
