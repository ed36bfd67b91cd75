//! Declared tables on SQLite: DDL and migration, value encoding, and the row operations behind [`crate::Tx`].
//!
//! Owns how a declared table maps to a real SQLite table: one `WITHOUT ROWID` table per declared table, named by
//! its logical name, primary key = the primary id attribute (hyphenated GUID text), one typed column per
//! attribute; a Lookup takes two columns (`attr` = id, `attr@type` = target table); a MultiSelectPicklist is the
//! comma-separated option list; Decimal/Money are exact canonical text (compared and ordered numerically);
//! DateTime is INTEGER ms. N:N relationships get an intersect table named after the relationship.
//! It must not touch system tables (see `system.rs`).

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use uuid::Uuid;

use crate::query::{Condition, Query, check_condition};
use crate::rows::{self, attribute};
use crate::schema::{AttributeDef, AttributeKind, RelationshipDef, Schema, StoredKinds, TableDef};
use crate::value::Value;
use crate::{Attributes, EntityRef, Result, Row, StoreError};

/// Creates missing tables and columns; refuses changes it cannot migrate.
///
/// Migrated: new tables, new attributes (added as nullable columns), new N:N relationships.
/// Not migrated (open fails with a message): a changed attribute type or primary id attribute.
/// Left in place: columns of attributes no longer declared (kept, ignored) and tables no longer declared.
pub(crate) fn migrate(conn: &Connection, schema: &Schema) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS weft_attribute (
            tablename TEXT NOT NULL, attribute TEXT NOT NULL, kind TEXT NOT NULL,
            PRIMARY KEY (tablename, attribute)) WITHOUT ROWID;",
    )?;
    let mut stored = StoredKinds::new();
    {
        let mut stmt = conn.prepare("SELECT tablename, attribute, kind FROM weft_attribute")?;
        let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        for row in rows {
            let (k, v) = row?;
            stored.insert(k, v);
        }
    }
    for t in schema.tables() {
        let existing = table_columns(conn, &t.logical_name)?;
        if existing.is_empty() {
            let cols: Vec<String> = t
                .attributes
                .iter()
                .flat_map(|a| column_defs(t, a))
                .collect();
            conn.execute_batch(&format!(
                "CREATE TABLE \"{}\" ({}) WITHOUT ROWID;",
                t.logical_name,
                cols.join(", ")
            ))?;
        } else {
            let pk = existing.iter().find(|(_, pk)| *pk).map(|(n, _)| n.as_str());
            t.refuse_unmigratable(pk, &stored)?;
            for a in &t.attributes {
                for (col, def) in column_names(a).into_iter().zip(column_defs(t, a)) {
                    if !existing.iter().any(|(n, _)| *n == col) {
                        conn.execute_batch(&format!(
                            "ALTER TABLE \"{}\" ADD COLUMN {def};",
                            t.logical_name
                        ))?;
                    }
                }
            }
        }
        // Only what changed is written: opening an unchanged store is read-only, so a command that opens
        // it beside a running host (`weft jobs list`) neither waits for nor races the host's writer (a
        // deferred transaction that must upgrade to write after the host committed fails at once).
        for a in t.unrecorded_kinds(&stored) {
            conn.execute(
                "INSERT OR REPLACE INTO weft_attribute (tablename, attribute, kind) VALUES (?1, ?2, ?3)",
                (&t.logical_name, &a.logical_name, a.kind.name()),
            )?;
        }
        migrate_keys(conn, t)?;
    }
    for r in schema.relationships() {
        if let RelationshipDef::ManyToMany { name, .. } = r {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS \"{name}\" (entity1id TEXT NOT NULL, entity2id TEXT NOT NULL,
                 PRIMARY KEY (entity1id, entity2id)) WITHOUT ROWID;
                 CREATE INDEX IF NOT EXISTS \"{name}@entity2\" ON \"{name}\" (entity2id);"
            ))?;
        }
    }
    Ok(())
}

/// Drops a runtime table with its rows and its recorded attribute kinds (its key indexes go with it).
pub(crate) fn drop_table(conn: &Connection, table: &str) -> Result<()> {
    conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{table}\""))?;
    conn.execute("DELETE FROM weft_attribute WHERE tablename = ?1", [table])?;
    Ok(())
}

fn table_columns(conn: &Connection, table: &str) -> Result<Vec<(String, bool)>> {
    let mut stmt = conn.prepare("SELECT name, pk FROM pragma_table_info(?1)")?;
    let rows = stmt.query_map([table], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? > 0))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn sql_type(kind: &AttributeKind) -> &'static str {
    match kind {
        AttributeKind::Integer { .. }
        | AttributeKind::BigInt
        | AttributeKind::Boolean
        | AttributeKind::DateTime
        | AttributeKind::Picklist { .. }
        | AttributeKind::State { .. }
        | AttributeKind::Status { .. } => "INTEGER",
        AttributeKind::Double => "REAL",
        _ => "TEXT",
    }
}

/// The SQLite column names of one attribute.
fn column_names(a: &AttributeDef) -> Vec<String> {
    match a.kind {
        AttributeKind::Lookup { .. } => {
            vec![a.logical_name.clone(), format!("{}@type", a.logical_name)]
        }
        _ => vec![a.logical_name.clone()],
    }
}

fn column_defs(t: &TableDef, a: &AttributeDef) -> Vec<String> {
    if a.logical_name == t.primary_id_attribute {
        return vec![format!("\"{}\" TEXT NOT NULL PRIMARY KEY", a.logical_name)];
    }
    column_names(a)
        .into_iter()
        .map(|c| format!("\"{c}\" {}", sql_type(&a.kind)))
        .collect()
}

/// Encodes a checked value into its column values (two for a Lookup).
fn encode(a: &AttributeDef, v: &Value) -> Vec<SqlValue> {
    let lookup = matches!(a.kind, AttributeKind::Lookup { .. });
    let one = match v {
        Value::Null => SqlValue::Null,
        Value::Boolean(b) => SqlValue::Integer(i64::from(*b)),
        Value::Integer(i) | Value::OptionSetValue(i) => SqlValue::Integer(i64::from(*i)),
        Value::BigInt(i) | Value::DateTime(i) => SqlValue::Integer(*i),
        Value::Double(d) => SqlValue::Real(*d),
        Value::Decimal(s) | Value::Money(s) | Value::String(s) => SqlValue::Text(s.clone()),
        Value::Guid(g) => SqlValue::Text(g.to_string()),
        Value::EntityReference { logical_name, id } => {
            return vec![
                SqlValue::Text(id.to_string()),
                SqlValue::Text(logical_name.clone()),
            ];
        }
        Value::OptionSetValueCollection(vs) => {
            SqlValue::Text(vs.iter().map(i32::to_string).collect::<Vec<_>>().join(","))
        }
    };
    if lookup {
        vec![one, SqlValue::Null]
    } else {
        vec![one]
    }
}

fn corrupt(t: &TableDef, a: &AttributeDef, what: &str) -> StoreError {
    StoreError::Database(format!(
        "stored value of attribute `{}` of table `{}` is not a valid {}: {what}",
        a.logical_name,
        t.logical_name,
        a.kind.name()
    ))
}

/// Decodes an attribute from a result row starting at column `i`.
fn decode(t: &TableDef, a: &AttributeDef, row: &rusqlite::Row<'_>, i: usize) -> Result<Value> {
    let raw: SqlValue = row.get(i)?;
    let int = |v: i64| i32::try_from(v).map_err(|_| corrupt(t, a, &v.to_string()));
    let guid = |s: &str| Uuid::parse_str(s).map_err(|_| corrupt(t, a, s));
    Ok(match (&a.kind, raw) {
        (_, SqlValue::Null) => Value::Null,
        (AttributeKind::String { .. } | AttributeKind::Memo { .. }, SqlValue::Text(s)) => {
            Value::String(s)
        }
        (AttributeKind::Integer { .. }, SqlValue::Integer(v)) => Value::Integer(int(v)?),
        (AttributeKind::BigInt, SqlValue::Integer(v)) => Value::BigInt(v),
        (AttributeKind::Double, SqlValue::Real(v)) => Value::Double(v),
        (AttributeKind::Double, SqlValue::Integer(v)) => Value::Double(v as f64),
        (AttributeKind::Decimal { .. }, SqlValue::Text(s)) => Value::Decimal(s),
        (AttributeKind::Money, SqlValue::Text(s)) => Value::Money(s),
        (AttributeKind::Boolean, SqlValue::Integer(v)) => Value::Boolean(v != 0),
        (AttributeKind::DateTime, SqlValue::Integer(v)) => Value::DateTime(v),
        (AttributeKind::Uniqueidentifier, SqlValue::Text(s)) => Value::Guid(guid(&s)?),
        (AttributeKind::Lookup { .. }, SqlValue::Text(s)) => {
            let logical_name: Option<String> = row.get(i + 1)?;
            Value::EntityReference {
                logical_name: logical_name.ok_or_else(|| corrupt(t, a, "missing target table"))?,
                id: guid(&s)?,
            }
        }
        (
            AttributeKind::Picklist { .. }
            | AttributeKind::State { .. }
            | AttributeKind::Status { .. },
            SqlValue::Integer(v),
        ) => Value::OptionSetValue(int(v)?),
        (AttributeKind::MultiSelectPicklist { .. }, SqlValue::Text(s)) => {
            Value::OptionSetValueCollection(
                s.split(',')
                    .map(|p| p.parse::<i32>().map_err(|_| corrupt(t, a, &s)))
                    .collect::<Result<_>>()?,
            )
        }
        (_, other) => return Err(corrupt(t, a, &format!("{other:?}"))),
    })
}

pub(crate) fn table<'s>(schema: &'s Schema, name: &str) -> Result<&'s TableDef> {
    schema
        .table(name)
        .ok_or_else(|| StoreError::UnknownTable(name.to_string()))
}

/// The attributes to select: the requested ones (checked) or all.
fn selection<'t>(t: &'t TableDef, columns: Option<&[String]>) -> Result<Vec<&'t AttributeDef>> {
    match columns {
        None => Ok(t.attributes.iter().collect()),
        Some(cols) => cols.iter().map(|c| attribute(t, c)).collect(),
    }
}

fn select_list(t: &TableDef, attrs: &[&AttributeDef]) -> String {
    let mut cols = vec![format!("\"{}\"", t.primary_id_attribute)];
    for a in attrs {
        cols.extend(column_names(a).into_iter().map(|c| format!("\"{c}\"")));
    }
    cols.join(", ")
}

/// Reads a row selected with [`select_list`]; null attributes are omitted.
fn read_row(t: &TableDef, attrs: &[&AttributeDef], row: &rusqlite::Row<'_>) -> Result<Row> {
    let id: String = row.get(0)?;
    let id = Uuid::parse_str(&id).map_err(|_| {
        StoreError::Database(format!("bad stored id `{id}` in `{}`", t.logical_name))
    })?;
    let mut attributes = Attributes::new();
    let mut i = 1;
    for a in attrs {
        let v = decode(t, a, row, i)?;
        i += column_names(a).len();
        if v != Value::Null {
            attributes.insert(a.logical_name.clone(), v);
        }
    }
    Ok(Row {
        table: t.logical_name.clone(),
        id,
        attributes,
    })
}

pub(crate) fn retrieve(
    conn: &Connection,
    schema: &Schema,
    table_name: &str,
    id: Uuid,
    columns: Option<&[String]>,
) -> Result<Option<Row>> {
    let t = table(schema, table_name)?;
    let attrs = selection(t, columns)?;
    let sql = format!(
        "SELECT {} FROM \"{}\" WHERE \"{}\" = ?1",
        select_list(t, &attrs),
        t.logical_name,
        t.primary_id_attribute
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([id.to_string()])?;
    match rows.next()? {
        Some(r) => Ok(Some(read_row(t, &attrs, r)?)),
        None => Ok(None),
    }
}

pub(crate) fn exists(conn: &Connection, t: &TableDef, id: Uuid) -> Result<bool> {
    let sql = format!(
        "SELECT 1 FROM \"{}\" WHERE \"{}\" = ?1",
        t.logical_name, t.primary_id_attribute
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id.to_string()], |_| Ok(()))
        .optional()?
        .is_some())
}

fn is_numeric_text(a: &AttributeDef) -> bool {
    matches!(a.kind, AttributeKind::Decimal { .. } | AttributeKind::Money)
}

fn is_text(a: &AttributeDef) -> bool {
    matches!(
        a.kind,
        AttributeKind::String { .. } | AttributeKind::Memo { .. }
    )
}

/// SQL for a checked condition, pushing its parameters.
/// `scope` names the row source `t`'s columns belong to (the queried table, or a lambda's alias) and
/// `depth` is how many lambdas enclose the condition.
fn condition_sql(
    schema: &Schema,
    t: &TableDef,
    scope: &str,
    depth: usize,
    c: &Condition,
    params: &mut Vec<SqlValue>,
) -> Result<String> {
    let mut compare = |n: &str, v: &Value, op: &str| -> Result<String> {
        let a = attribute(t, n)?;
        params.push(encode(a, v).swap_remove(0));
        Ok(if is_numeric_text(a) {
            format!("CAST(\"{n}\" AS REAL) {op} CAST(? AS REAL)")
        } else if is_text(a) {
            format!("\"{n}\" {op} ? COLLATE NOCASE")
        } else {
            format!("\"{n}\" {op} ?")
        })
    };
    Ok(match c {
        Condition::Eq(n, v) => compare(n, v, "=")?,
        Condition::Ne(n, v) => compare(n, v, "<>")?,
        Condition::Gt(n, v) => compare(n, v, ">")?,
        Condition::Lt(n, v) => compare(n, v, "<")?,
        Condition::Null(n) => format!("\"{n}\" IS NULL"),
        Condition::NotNull(n) => format!("\"{n}\" IS NOT NULL"),
        // SQLite's LIKE folds ASCII case, as NOCASE does for eq.
        Condition::Contains(..) | Condition::BeginsWith(..) | Condition::EndsWith(..) => {
            let (n, pattern) = c.like_pattern().unwrap_or_default();
            attribute(t, n)?;
            params.push(SqlValue::Text(pattern));
            format!("\"{n}\" LIKE ? ESCAPE '\\'")
        }
        Condition::Not(inner) => format!(
            "(NOT {})",
            condition_sql(schema, t, scope, depth, inner, params)?
        ),
        Condition::And(cs) | Condition::Or(cs) if cs.is_empty() => {
            if matches!(c, Condition::And(_)) {
                "1".into()
            } else {
                "0".into()
            }
        }
        Condition::And(cs) | Condition::Or(cs) => {
            let join = if matches!(c, Condition::And(_)) {
                " AND "
            } else {
                " OR "
            };
            let parts = cs
                .iter()
                .map(|c| condition_sql(schema, t, scope, depth, c, params))
                .collect::<Result<Vec<_>>>()?;
            format!("({})", parts.join(join))
        }
        Condition::Related {
            link,
            all,
            condition,
        } => {
            let related = crate::query::related(schema, t, link)?;
            let alias = format!("weft_r{}", depth + 1);
            let inner = condition
                .as_deref()
                .map(|c| condition_sql(schema, related.table(), &alias, depth + 1, c, params))
                .transpose()?;
            rows::related_sql(t, scope, &alias, related, *all, inner.as_deref())
        }
    })
}

pub(crate) fn retrieve_multiple(conn: &Connection, schema: &Schema, q: &Query) -> Result<Vec<Row>> {
    let t = table(schema, &q.table)?;
    let attrs = selection(t, q.columns.as_deref())?;
    let mut params = Vec::new();
    let mut sql = format!(
        "SELECT {} FROM \"{}\"",
        select_list(t, &attrs),
        t.logical_name
    );
    if let Some(f) = &q.filter {
        let checked = check_condition(schema, t, f)?;
        sql.push_str(" WHERE ");
        let scope = format!("\"{}\"", t.logical_name);
        sql.push_str(&condition_sql(schema, t, &scope, 0, &checked, &mut params)?);
    }
    let mut orders = Vec::new();
    for o in &q.orders {
        let a = attribute(t, &o.attribute)?;
        if !a.kind.is_ordered() {
            return Err(StoreError::Invalid(format!(
                "cannot order table `{}` by `{}`: {} attributes have no order",
                t.logical_name,
                a.logical_name,
                a.kind.name()
            )));
        }
        let dir = if o.descending { "DESC" } else { "ASC" };
        let n = &a.logical_name;
        orders.push(if is_numeric_text(a) {
            format!("CAST(\"{n}\" AS REAL) {dir}")
        } else if is_text(a) {
            format!("\"{n}\" COLLATE NOCASE {dir}")
        } else {
            format!("\"{n}\" {dir}")
        });
    }
    orders.push(format!("\"{}\"", t.primary_id_attribute));
    sql.push_str(" ORDER BY ");
    sql.push_str(&orders.join(", "));
    // LIMIT -1 is SQLite's "no limit"; OFFSET needs a LIMIT before it.
    match (q.top, q.skip) {
        (Some(top), 0) => sql.push_str(&format!(" LIMIT {top}")),
        (top, skip) => sql.push_str(&format!(
            " LIMIT {} OFFSET {skip}",
            top.map_or(-1, i64::from)
        )),
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read_row(t, &attrs, r)?);
    }
    Ok(out)
}

fn is_primary_key_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// The alternate key of `t` a write violated (its unique index), if that is what failed. SQLite names the
/// columns (`UNIQUE constraint failed: account.accountnumber`): the key with exactly those attributes.
fn key_violation(e: &rusqlite::Error, t: &TableDef) -> Option<StoreError> {
    let rusqlite::Error::SqliteFailure(f, Some(message)) = e else {
        return None;
    };
    if f.extended_code != rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE {
        return None;
    }
    let columns: Vec<&str> = message
        .split_once("failed: ")?
        .1
        .split(", ")
        .map(|c| c.rsplit('.').next().unwrap_or(c))
        .collect();
    let key = t.keys.iter().find(|k| {
        k.attributes.len() == columns.len()
            && k.attributes.iter().all(|a| columns.contains(&a.as_str()))
    })?;
    Some(StoreError::DuplicateKey {
        table: t.logical_name.clone(),
        key: key.name.clone(),
    })
}

/// Creates the unique index of each alternate key of `t` (text compared ignoring case, as queries compare
/// it) and drops those of keys no longer declared. Existing rows that share a new key's values make the
/// open fail, naming the key.
fn migrate_keys(conn: &Connection, t: &TableDef) -> Result<()> {
    let prefix = rows::key_index(t, "");
    let existing: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1")?
        .query_map([&t.logical_name], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in existing.iter().filter(|n| n.starts_with(&prefix)) {
        if !t.keys.iter().any(|k| rows::key_index(t, &k.name) == *name) {
            conn.execute_batch(&format!("DROP INDEX \"{name}\""))?;
        }
    }
    for k in &t.keys {
        let name = rows::key_index(t, &k.name);
        if existing.contains(&name) {
            continue;
        }
        let columns = rows::key_columns(t, k, |a| format!("\"{a}\" COLLATE NOCASE"));
        conn.execute_batch(&format!(
            "CREATE UNIQUE INDEX \"{name}\" ON \"{}\" ({})",
            t.logical_name,
            columns.join(", ")
        ))
        .map_err(|e| {
            StoreError::Invalid(format!(
                "table `{}`: key `{}` cannot be created: {e} (rows already share its values)",
                t.logical_name, k.name
            ))
        })?;
    }
    Ok(())
}

pub(crate) fn create(
    conn: &Connection,
    schema: &Schema,
    now: i64,
    table_name: &str,
    id: Option<Uuid>,
    attrs: Attributes,
) -> Result<Uuid> {
    let t = table(schema, table_name)?;
    let (id, writes) =
        rows::create_writes(schema, t, now, id, attrs, &mut |t, id| exists(conn, t, id))?;
    let mut cols = vec![format!("\"{}\"", t.primary_id_attribute)];
    let mut params = vec![SqlValue::Text(id.to_string())];
    for (name, v) in &writes {
        let a = attribute(t, name)?;
        for (c, p) in column_names(a).into_iter().zip(encode(a, v)) {
            cols.push(format!("\"{c}\""));
            params.push(p);
        }
    }
    let sql = format!(
        "INSERT INTO \"{}\" ({}) VALUES ({})",
        t.logical_name,
        cols.join(", "),
        vec!["?"; cols.len()].join(", ")
    );
    match conn.prepare_cached(&sql)?.execute(params_from_iter(params)) {
        Ok(_) => Ok(id),
        Err(e) if is_primary_key_violation(&e) => Err(StoreError::DuplicateId {
            table: t.logical_name.clone(),
            id,
        }),
        Err(e) => Err(key_violation(&e, t).unwrap_or_else(|| e.into())),
    }
}

/// Reads the named attributes of a row (Null when unset); None when the row does not exist.
fn current_values(
    conn: &Connection,
    t: &TableDef,
    id: Uuid,
    names: &[&str],
) -> Result<Option<Attributes>> {
    let attrs = names
        .iter()
        .map(|n| attribute(t, n))
        .collect::<Result<Vec<_>>>()?;
    let sql = format!(
        "SELECT {} FROM \"{}\" WHERE \"{}\" = ?1",
        select_list(t, &attrs),
        t.logical_name,
        t.primary_id_attribute
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([id.to_string()])?;
    let Some(r) = rows.next()? else {
        return Ok(None);
    };
    let mut out = Attributes::new();
    let mut i = 1;
    for a in attrs {
        out.insert(a.logical_name.clone(), decode(t, a, r, i)?);
        i += column_names(a).len();
    }
    Ok(Some(out))
}

pub(crate) fn update(
    conn: &Connection,
    schema: &Schema,
    now: i64,
    table_name: &str,
    id: Uuid,
    attrs: Attributes,
) -> Result<Attributes> {
    let t = table(schema, table_name)?;
    let (writes, previous) = rows::update_writes(
        schema,
        t,
        now,
        id,
        attrs,
        &mut |t, id| exists(conn, t, id),
        &mut |names| current_values(conn, t, id, names),
    )?;
    let mut sets = Vec::new();
    let mut params = Vec::new();
    for (name, v) in &writes {
        let a = attribute(t, name)?;
        for (c, p) in column_names(a).into_iter().zip(encode(a, v)) {
            sets.push(format!("\"{c}\" = ?"));
            params.push(p);
        }
    }
    params.push(SqlValue::Text(id.to_string()));
    let sql = format!(
        "UPDATE \"{}\" SET {} WHERE \"{}\" = ?",
        t.logical_name,
        sets.join(", "),
        t.primary_id_attribute
    );
    conn.prepare_cached(&sql)?
        .execute(params_from_iter(params))
        .map_err(|e| key_violation(&e, t).unwrap_or_else(|| e.into()))?;
    Ok(previous)
}

pub(crate) fn delete(
    conn: &Connection,
    schema: &Schema,
    table_name: &str,
    id: Uuid,
) -> Result<Row> {
    let t = table(schema, table_name)?;
    let attrs: Vec<&AttributeDef> = t.attributes.iter().collect();
    let sql = format!(
        "DELETE FROM \"{}\" WHERE \"{}\" = ?1 RETURNING {}",
        t.logical_name,
        t.primary_id_attribute,
        select_list(t, &attrs)
    );
    let row = {
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([id.to_string()])?;
        match rows.next()? {
            Some(r) => read_row(t, &attrs, r)?,
            None => {
                return Err(StoreError::NotFound {
                    table: t.logical_name.clone(),
                    id,
                });
            }
        }
    };
    for r in schema.relationships() {
        if let RelationshipDef::ManyToMany {
            name,
            entity1,
            entity2,
        } = r
        {
            for (side, entity) in [("entity1id", entity1), ("entity2id", entity2)] {
                if entity == &t.logical_name {
                    conn.prepare_cached(&format!("DELETE FROM \"{name}\" WHERE {side} = ?1"))?
                        .execute([id.to_string()])?;
                }
            }
        }
    }
    Ok(row)
}

fn relationship<'s>(schema: &'s Schema, name: &str) -> Result<&'s RelationshipDef> {
    schema
        .relationship(name)
        .ok_or_else(|| StoreError::UnknownRelationship(name.to_string()))
}

fn must_exist(conn: &Connection, schema: &Schema, r: &EntityRef) -> Result<()> {
    let t = table(schema, &r.logical_name)?;
    if exists(conn, t, r.id)? {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            table: r.logical_name.clone(),
            id: r.id,
        })
    }
}

pub(crate) fn associate(
    conn: &Connection,
    schema: &Schema,
    now: i64,
    rel: &str,
    target: &EntityRef,
    related: &[EntityRef],
    link: bool,
) -> Result<()> {
    match relationship(schema, rel)? {
        RelationshipDef::ManyToMany {
            name,
            entity1,
            entity2,
        } => {
            must_exist(conn, schema, target)?;
            for other in related {
                let (a, b) = rows::nn_pair(rel, entity1, entity2, target, other)?;
                if link {
                    must_exist(conn, schema, other)?;
                    let sql =
                        format!("INSERT INTO \"{name}\" (entity1id, entity2id) VALUES (?1, ?2)");
                    match conn
                        .prepare_cached(&sql)?
                        .execute((a.to_string(), b.to_string()))
                    {
                        Ok(_) => {}
                        Err(e) if is_primary_key_violation(&e) => {
                            return Err(StoreError::Invalid(format!(
                                "relationship `{rel}`: {} {} and {} {} are already associated",
                                target.logical_name, target.id, other.logical_name, other.id
                            )));
                        }
                        Err(e) => return Err(e.into()),
                    }
                } else {
                    let sql =
                        format!("DELETE FROM \"{name}\" WHERE entity1id = ?1 AND entity2id = ?2");
                    conn.prepare_cached(&sql)?
                        .execute((a.to_string(), b.to_string()))?;
                }
            }
            Ok(())
        }
        RelationshipDef::OneToMany {
            referenced_entity,
            referencing_entity,
            referencing_attribute,
            ..
        } => rows::link_one_to_many(
            &mut Links { conn, schema, now },
            rel,
            referenced_entity,
            referencing_entity,
            referencing_attribute,
            target,
            related,
            link,
        ),
    }
}

/// The SQLite side of a 1:N link ([`rows::link_one_to_many`]).
struct Links<'a> {
    conn: &'a Connection,
    schema: &'a Schema,
    now: i64,
}

impl rows::LookupRows for Links<'_> {
    fn check_exists(&mut self, row: &EntityRef) -> Result<()> {
        must_exist(self.conn, self.schema, row)
    }
    fn read_lookup(
        &mut self,
        table_name: &str,
        id: Uuid,
        attribute: &str,
    ) -> Result<Option<Value>> {
        let t = table(self.schema, table_name)?;
        Ok(current_values(self.conn, t, id, &[attribute])?
            .map(|mut c| c.remove(attribute).unwrap_or(Value::Null)))
    }
    fn write_lookup(
        &mut self,
        table_name: &str,
        id: Uuid,
        attribute: &str,
        value: Value,
    ) -> Result<()> {
        let attrs = Attributes::from([(attribute.to_owned(), value)]);
        update(self.conn, self.schema, self.now, table_name, id, attrs).map(|_| ())
    }
}

pub(crate) fn related(
    conn: &Connection,
    schema: &Schema,
    rel: &str,
    row: &EntityRef,
) -> Result<Vec<EntityRef>> {
    let ids = |sql: String, table: &str| -> Result<Vec<EntityRef>> {
        let mut stmt = conn.prepare_cached(&sql)?;
        let ids = stmt.query_map([row.id.to_string()], |r| r.get::<_, String>(0))?;
        ids.map(|s| {
            let s = s?;
            Uuid::parse_str(&s)
                .map(|id| EntityRef::new(table, id))
                .map_err(|_| StoreError::Database(format!("bad stored id `{s}`")))
        })
        .collect()
    };
    match relationship(schema, rel)? {
        RelationshipDef::ManyToMany {
            name,
            entity1,
            entity2,
        } => {
            let mut out = Vec::new();
            if row.logical_name == *entity1 {
                out.extend(ids(
                    format!("SELECT entity2id FROM \"{name}\" WHERE entity1id = ?1 ORDER BY 1"),
                    entity2,
                )?);
            }
            if row.logical_name == *entity2 && entity1 != entity2 {
                out.extend(ids(
                    format!("SELECT entity1id FROM \"{name}\" WHERE entity2id = ?1 ORDER BY 1"),
                    entity1,
                )?);
            }
            if row.logical_name != *entity1 && row.logical_name != *entity2 {
                return Err(rows::wrong_side(rel, row));
            }
            Ok(out)
        }
        RelationshipDef::OneToMany {
            referenced_entity,
            referencing_entity,
            referencing_attribute,
            ..
        } => {
            if row.logical_name == *referenced_entity {
                let t = table(schema, referencing_entity)?;
                ids(
                    format!(
                        "SELECT \"{}\" FROM \"{}\" WHERE \"{a}\" = ?1 AND \"{a}@type\" = '{referenced_entity}' ORDER BY 1",
                        t.primary_id_attribute,
                        t.logical_name,
                        a = referencing_attribute
                    ),
                    referencing_entity,
                )
            } else if row.logical_name == *referencing_entity {
                let t = table(schema, referencing_entity)?;
                match current_values(conn, t, row.id, &[referencing_attribute])?
                    .and_then(|mut c| c.remove(referencing_attribute.as_str()))
                {
                    Some(Value::EntityReference { logical_name, id }) => {
                        Ok(vec![EntityRef { logical_name, id }])
                    }
                    _ => Ok(Vec::new()),
                }
            } else {
                Err(rows::wrong_side(rel, row))
            }
        }
    }
}
