//! Declared tables on PostgreSQL: DDL and migration, value encoding, and the row operations behind
//! [`crate::Tx`].
//!
//! Owns how a declared table maps to a real PostgreSQL table: one table per declared table, named by its
//! logical name, primary key = the primary id (`uuid`), one typed column per attribute (String/Memo `text`,
//! Integer/Picklist/State/Status `integer`, BigInt and DateTime (ms UTC) `bigint`, Boolean `boolean`, Double
//! `double precision`, Decimal/Money `numeric` (exact, keeps the canonical scale), Uniqueidentifier `uuid`,
//! Lookup `uuid` + `attr@type text`, MultiSelectPicklist the comma-separated option list as `text`). N:N
//! relationships get an intersect table named after the relationship.
//!
//! Every value crosses the wire as text (`$n::text::numeric`, `"col"::text`): one encoding for every type
//! and exactly the text the SQLite backend stores, so both read back the same values. Comparisons follow the
//! SQLite backend's rules (text case-insensitively by code point, `COLLATE "C"`; numbers numerically; nulls
//! first ascending). Checks of what a write may contain live in `rows.rs`, shared with SQLite. It must not
//! touch system tables (see `system.rs`).

use postgres::types::ToSql;
use uuid::Uuid;

use super::conn::{Db, at_row};
use crate::query::{Condition, Query, check_condition};
use crate::rows::{self, attribute};
use crate::schema::{AttributeDef, AttributeKind, RelationshipDef, Schema, StoredKinds, TableDef};
use crate::value::Value;
use crate::{Attributes, EntityRef, Result, Row, StoreError};

/// Creates missing tables and columns; refuses changes it cannot migrate (as the SQLite backend does:
/// a changed attribute type or primary id). Runs in the opening transaction.
pub(crate) fn migrate(db: Db<'_>, schema: &Schema) -> Result<()> {
    db.0.borrow_mut().batch(
        "CREATE TABLE IF NOT EXISTS weft_attribute (
            tablename text NOT NULL, attribute text NOT NULL, kind text NOT NULL,
            PRIMARY KEY (tablename, attribute))",
    )?;
    let mut stored = StoredKinds::new();
    for r in db.query("SELECT tablename, attribute, kind FROM weft_attribute", &[])? {
        stored.insert((r.get(0), r.get(1)), r.get(2));
    }
    for t in schema.tables() {
        let existing = table_columns(db, &t.logical_name)?;
        if existing.is_empty() {
            let cols: Vec<String> = t
                .attributes
                .iter()
                .flat_map(|a| column_defs(t, a))
                .collect();
            db.0.borrow_mut().batch(&format!(
                "CREATE TABLE \"{}\" ({})",
                t.logical_name,
                cols.join(", ")
            ))?;
        } else {
            let pk = existing.iter().find(|(_, pk)| *pk).map(|(n, _)| n.as_str());
            t.refuse_unmigratable(pk, &stored)?;
            for a in &t.attributes {
                for (col, def) in column_names(a).into_iter().zip(column_defs(t, a)) {
                    if !existing.iter().any(|(n, _)| *n == col) {
                        db.0.borrow_mut().batch(&format!(
                            "ALTER TABLE \"{}\" ADD COLUMN {def}",
                            t.logical_name
                        ))?;
                    }
                }
            }
        }
        for a in t.unrecorded_kinds(&stored) {
            db.execute(
                "INSERT INTO weft_attribute (tablename, attribute, kind) VALUES ($1, $2, $3)
                 ON CONFLICT (tablename, attribute) DO UPDATE SET kind = excluded.kind",
                &[&t.logical_name, &a.logical_name, &a.kind.name()],
            )?;
        }
        migrate_keys(db, t)?;
    }
    for r in schema.relationships() {
        if let RelationshipDef::ManyToMany { name, .. } = r {
            db.0.borrow_mut().batch(&format!(
                "CREATE TABLE IF NOT EXISTS \"{name}\" (entity1id uuid NOT NULL, entity2id uuid NOT NULL,
                 PRIMARY KEY (entity1id, entity2id));
                 CREATE INDEX IF NOT EXISTS \"{name}@entity2\" ON \"{name}\" (entity2id);"
            ))?;
        }
    }
    Ok(())
}

/// Drops a runtime table with its rows and its recorded attribute kinds (its key indexes go with it).
pub(crate) fn drop_table(db: Db<'_>, table: &str) -> Result<()> {
    db.0.borrow_mut()
        .batch(&format!("DROP TABLE IF EXISTS \"{table}\""))?;
    db.execute("DELETE FROM weft_attribute WHERE tablename = $1", &[&table])?;
    Ok(())
}

/// The table's columns in the connection's schema, with whether each is the primary key.
fn table_columns(db: Db<'_>, table: &str) -> Result<Vec<(String, bool)>> {
    let rows = db.query(
        "SELECT c.column_name::text, EXISTS (
             SELECT 1 FROM information_schema.table_constraints tc
             JOIN information_schema.key_column_usage k
               ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema
             WHERE tc.table_schema = c.table_schema AND tc.table_name = c.table_name
               AND tc.constraint_type = 'PRIMARY KEY' AND k.column_name = c.column_name)
         FROM information_schema.columns c
         WHERE c.table_schema = current_schema() AND c.table_name = $1
         ORDER BY c.ordinal_position",
        &[&table],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The PostgreSQL type of an attribute's (first) column.
fn sql_type(kind: &AttributeKind) -> &'static str {
    match kind {
        AttributeKind::Integer { .. }
        | AttributeKind::Picklist { .. }
        | AttributeKind::State { .. }
        | AttributeKind::Status { .. } => "integer",
        AttributeKind::BigInt | AttributeKind::DateTime => "bigint",
        AttributeKind::Boolean => "boolean",
        AttributeKind::Double => "double precision",
        AttributeKind::Decimal { .. } | AttributeKind::Money => "numeric",
        AttributeKind::Uniqueidentifier | AttributeKind::Lookup { .. } => "uuid",
        _ => "text",
    }
}

/// The column names of one attribute.
fn column_names(a: &AttributeDef) -> Vec<String> {
    match a.kind {
        AttributeKind::Lookup { .. } => {
            vec![a.logical_name.clone(), format!("{}@type", a.logical_name)]
        }
        _ => vec![a.logical_name.clone()],
    }
}

/// The PostgreSQL types of an attribute's columns.
fn column_types(a: &AttributeDef) -> Vec<&'static str> {
    match a.kind {
        AttributeKind::Lookup { .. } => vec!["uuid", "text"],
        _ => vec![sql_type(&a.kind)],
    }
}

fn column_defs(t: &TableDef, a: &AttributeDef) -> Vec<String> {
    if a.logical_name == t.primary_id_attribute {
        return vec![format!("\"{}\" uuid NOT NULL PRIMARY KEY", a.logical_name)];
    }
    column_names(a)
        .into_iter()
        .zip(column_types(a))
        .map(|(c, ty)| format!("\"{c}\" {ty}"))
        .collect()
}

/// Encodes a checked value into its columns' text (two for a Lookup); None is NULL.
fn encode(a: &AttributeDef, v: &Value) -> Vec<Option<String>> {
    let lookup = matches!(a.kind, AttributeKind::Lookup { .. });
    let one = match v {
        Value::Null => None,
        Value::Boolean(b) => Some(b.to_string()),
        Value::Integer(i) | Value::OptionSetValue(i) => Some(i.to_string()),
        Value::BigInt(i) | Value::DateTime(i) => Some(i.to_string()),
        // Rust prints the shortest text that reads back as the same f64.
        Value::Double(d) => Some(d.to_string()),
        Value::Decimal(s) | Value::Money(s) | Value::String(s) => Some(s.clone()),
        Value::Guid(g) => Some(g.to_string()),
        Value::EntityReference { logical_name, id } => {
            return vec![Some(id.to_string()), Some(logical_name.clone())];
        }
        Value::OptionSetValueCollection(vs) => {
            Some(vs.iter().map(i32::to_string).collect::<Vec<_>>().join(","))
        }
    };
    if lookup { vec![one, None] } else { vec![one] }
}

fn corrupt(t: &TableDef, a: &AttributeDef, what: &str) -> StoreError {
    StoreError::Database(format!(
        "stored value of attribute `{}` of table `{}` is not a valid {}: {what}",
        a.logical_name,
        t.logical_name,
        a.kind.name()
    ))
}

/// Decodes an attribute from a result row (columns selected as text) starting at column `i`.
fn decode(t: &TableDef, a: &AttributeDef, row: &postgres::Row, i: usize) -> Result<Value> {
    let Some(s) = row.try_get::<_, Option<String>>(i)? else {
        return Ok(Value::Null);
    };
    let int = |s: &str| s.parse::<i32>().map_err(|_| corrupt(t, a, s));
    let big = |s: &str| s.parse::<i64>().map_err(|_| corrupt(t, a, s));
    let guid = |s: &str| Uuid::parse_str(s).map_err(|_| corrupt(t, a, s));
    Ok(match &a.kind {
        AttributeKind::String { .. } | AttributeKind::Memo { .. } => Value::String(s),
        AttributeKind::Integer { .. } => Value::Integer(int(&s)?),
        AttributeKind::BigInt => Value::BigInt(big(&s)?),
        AttributeKind::DateTime => Value::DateTime(big(&s)?),
        AttributeKind::Double => Value::Double(s.parse().map_err(|_| corrupt(t, a, &s))?),
        AttributeKind::Decimal { .. } => Value::Decimal(s),
        AttributeKind::Money => Value::Money(s),
        AttributeKind::Boolean => match s.as_str() {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            other => return Err(corrupt(t, a, other)),
        },
        AttributeKind::Uniqueidentifier => Value::Guid(guid(&s)?),
        AttributeKind::Lookup { .. } => {
            let logical_name: Option<String> = row.try_get(i + 1)?;
            Value::EntityReference {
                logical_name: logical_name.ok_or_else(|| corrupt(t, a, "missing target table"))?,
                id: guid(&s)?,
            }
        }
        AttributeKind::Picklist { .. }
        | AttributeKind::State { .. }
        | AttributeKind::Status { .. } => Value::OptionSetValue(int(&s)?),
        AttributeKind::MultiSelectPicklist { .. } => {
            Value::OptionSetValueCollection(s.split(',').map(int).collect::<Result<_>>()?)
        }
    })
}

/// Creates the unique index of each alternate key of `t` (text compared ignoring case, as queries compare
/// it) and drops those of keys no longer declared. Existing rows that share a new key's values make the
/// open fail, naming the key.
fn migrate_keys(db: Db<'_>, t: &TableDef) -> Result<()> {
    let prefix = rows::key_index(t, "");
    let existing: Vec<String> = db
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
            &[&t.logical_name],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in existing.iter().filter(|n| n.starts_with(&prefix)) {
        if !t.keys.iter().any(|k| rows::key_index(t, &k.name) == *name) {
            db.0.borrow_mut().batch(&format!("DROP INDEX \"{name}\""))?;
        }
    }
    for k in &t.keys {
        let name = rows::key_index(t, &k.name);
        if existing.contains(&name) {
            continue;
        }
        let columns = rows::key_columns(t, k, |a| format!("lower(\"{a}\")"));
        db.0.borrow_mut()
            .batch(&format!(
                "CREATE UNIQUE INDEX \"{name}\" ON \"{}\" ({})",
                t.logical_name,
                columns.join(", ")
            ))
            .map_err(|e| {
                StoreError::Invalid(format!(
                    "table `{}`: key `{}` cannot be created: {} (rows already share its values)",
                    t.logical_name,
                    k.name,
                    StoreError::from(&e)
                ))
            })?;
    }
    Ok(())
}

/// The alternate key of `t` a write violated (its unique index), if that is what failed.
fn key_violation(e: &postgres::Error, t: &TableDef) -> Option<StoreError> {
    let db = e.as_db_error()?;
    if *db.code() != postgres::error::SqlState::UNIQUE_VIOLATION {
        return None;
    }
    let key = db.constraint()?.strip_prefix(&rows::key_index(t, ""))?;
    Some(StoreError::DuplicateKey {
        table: t.logical_name.clone(),
        key: key.to_owned(),
    })
}

pub(crate) fn table<'s>(schema: &'s Schema, name: &str) -> Result<&'s TableDef> {
    schema
        .table(name)
        .ok_or_else(|| StoreError::UnknownTable(name.to_string()))
}

fn selection<'t>(t: &'t TableDef, columns: Option<&[String]>) -> Result<Vec<&'t AttributeDef>> {
    match columns {
        None => Ok(t.attributes.iter().collect()),
        Some(cols) => cols.iter().map(|c| attribute(t, c)).collect(),
    }
}

/// The primary id and the attributes' columns, each as text.
fn select_list(t: &TableDef, attrs: &[&AttributeDef]) -> String {
    let mut cols = vec![format!("\"{}\"::text", t.primary_id_attribute)];
    for a in attrs {
        cols.extend(
            column_names(a)
                .into_iter()
                .map(|c| format!("\"{c}\"::text")),
        );
    }
    cols.join(", ")
}

fn read_row(t: &TableDef, attrs: &[&AttributeDef], row: &postgres::Row) -> Result<Row> {
    let id: String = row.try_get(0)?;
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

/// Borrows a list of text parameters as the client wants them.
fn refs(params: &[Option<String>]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

pub(crate) fn retrieve(
    db: Db<'_>,
    schema: &Schema,
    table_name: &str,
    id: Uuid,
    columns: Option<&[String]>,
) -> Result<Option<Row>> {
    let t = table(schema, table_name)?;
    let attrs = selection(t, columns)?;
    let sql = format!(
        "SELECT {} FROM \"{}\" WHERE \"{}\" = $1::text::uuid",
        select_list(t, &attrs),
        t.logical_name,
        t.primary_id_attribute
    );
    match db.query_opt(&sql, &[&id.to_string()])? {
        Some(r) => Ok(Some(read_row(t, &attrs, &r)?)),
        None => Ok(None),
    }
}

pub(crate) fn exists(db: Db<'_>, t: &TableDef, id: Uuid) -> Result<bool> {
    let sql = format!(
        "SELECT 1 FROM \"{}\" WHERE \"{}\" = $1::text::uuid",
        t.logical_name, t.primary_id_attribute
    );
    Ok(db.query_opt(&sql, &[&id.to_string()])?.is_some())
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
    params: &mut Vec<Option<String>>,
) -> Result<String> {
    let mut compare = |n: &str, v: &Value, op: &str| -> Result<String> {
        let a = attribute(t, n)?;
        params.push(encode(a, v).swap_remove(0));
        let p = params.len();
        Ok(if is_text(a) {
            // SQLite's NOCASE: ASCII case folded, then code point order.
            format!("lower(\"{n}\" COLLATE \"C\") {op} lower(${p}::text COLLATE \"C\")")
        } else if matches!(a.kind, AttributeKind::MultiSelectPicklist { .. }) {
            format!("\"{n}\" COLLATE \"C\" {op} ${p}::text COLLATE \"C\"")
        } else {
            format!("\"{n}\" {op} ${p}::text::{}", sql_type(&a.kind))
        })
    };
    Ok(match c {
        Condition::Eq(n, v) => compare(n, v, "=")?,
        Condition::Ne(n, v) => compare(n, v, "<>")?,
        Condition::Gt(n, v) => compare(n, v, ">")?,
        Condition::Lt(n, v) => compare(n, v, "<")?,
        Condition::Null(n) => format!("\"{n}\" IS NULL"),
        Condition::NotNull(n) => format!("\"{n}\" IS NOT NULL"),
        // ASCII case folded on both sides, as eq on text does (SQLite's LIKE).
        Condition::Contains(..) | Condition::BeginsWith(..) | Condition::EndsWith(..) => {
            let (n, pattern) = c.like_pattern().unwrap_or_default();
            attribute(t, n)?;
            params.push(Some(pattern));
            let p = params.len();
            format!("lower(\"{n}\" COLLATE \"C\") LIKE lower(${p}::text COLLATE \"C\") ESCAPE '\\'")
        }
        Condition::Not(inner) => format!(
            "(NOT {})",
            condition_sql(schema, t, scope, depth, inner, params)?
        ),
        Condition::And(cs) | Condition::Or(cs) if cs.is_empty() => {
            if matches!(c, Condition::And(_)) {
                "true".into()
            } else {
                "false".into()
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

pub(crate) fn retrieve_multiple(db: Db<'_>, schema: &Schema, q: &Query) -> Result<Vec<Row>> {
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
        // Nulls sort first ascending, last descending: SQLite's order, which the operation merge follows.
        let dir = if o.descending {
            "DESC NULLS LAST"
        } else {
            "ASC NULLS FIRST"
        };
        // Qualified: a bare name would sort by the output column of that name, which is the text form.
        let n = format!("\"{}\".\"{}\"", t.logical_name, a.logical_name);
        orders.push(if is_text(a) {
            format!("lower({n} COLLATE \"C\") {dir}")
        } else {
            format!("{n} {dir}")
        });
    }
    orders.push(format!(
        "\"{}\".\"{}\"",
        t.logical_name, t.primary_id_attribute
    ));
    sql.push_str(" ORDER BY ");
    sql.push_str(&orders.join(", "));
    if let Some(top) = q.top {
        sql.push_str(&format!(" LIMIT {top}"));
    }
    if q.skip > 0 {
        sql.push_str(&format!(" OFFSET {}", q.skip));
    }
    db.query(&sql, &refs(&params))?
        .iter()
        .map(|r| read_row(t, &attrs, r))
        .collect()
}

pub(crate) fn create(
    db: Db<'_>,
    schema: &Schema,
    now: i64,
    table_name: &str,
    id: Option<Uuid>,
    attrs: Attributes,
) -> Result<Uuid> {
    let t = table(schema, table_name)?;
    let (id, writes) =
        rows::create_writes(schema, t, now, id, attrs, &mut |t, id| exists(db, t, id))?;
    let mut cols = vec![format!("\"{}\"", t.primary_id_attribute)];
    let mut values = vec!["$1::text::uuid".to_string()];
    let mut params = vec![Some(id.to_string())];
    for (name, v) in &writes {
        let a = attribute(t, name)?;
        for ((c, ty), p) in column_names(a)
            .into_iter()
            .zip(column_types(a))
            .zip(encode(a, v))
        {
            cols.push(format!("\"{c}\""));
            params.push(p);
            values.push(format!("${}::text::{ty}", params.len()));
        }
    }
    // ON CONFLICT DO NOTHING: a duplicate id is an answer, not a failed statement (which would end the
    // whole transaction). A concurrent insert of the same id waits for the other transaction here.
    let sql = format!(
        "INSERT INTO \"{}\" ({}) VALUES ({}) ON CONFLICT (\"{}\") DO NOTHING",
        t.logical_name,
        cols.join(", "),
        values.join(", "),
        t.primary_id_attribute
    );
    match db.execute(&sql, &refs(&params)) {
        Ok(1) => Ok(id),
        Ok(_) => Err(StoreError::DuplicateId {
            table: t.logical_name.clone(),
            id,
        }),
        Err(e) => Err(key_violation(&e, t).unwrap_or_else(|| at_row(e, &t.logical_name, id))),
    }
}

/// Reads the named attributes of a row (Null when unset); None when the row does not exist. Inside an
/// operation (`lock`), the row is locked first (`FOR UPDATE`): a writer reads the last commit and holds
/// the row until its transaction ends, so no update is lost.
fn current_values(
    db: Db<'_>,
    t: &TableDef,
    id: Uuid,
    names: &[&str],
    lock: bool,
) -> Result<Option<Attributes>> {
    let attrs = names
        .iter()
        .map(|n| attribute(t, n))
        .collect::<Result<Vec<_>>>()?;
    let sql = format!(
        "SELECT {} FROM \"{}\" WHERE \"{}\" = $1::text::uuid{}",
        select_list(t, &attrs),
        t.logical_name,
        t.primary_id_attribute,
        if lock { " FOR UPDATE" } else { "" }
    );
    let Some(r) = db
        .query_opt(&sql, &[&id.to_string()])
        .map_err(|e| at_row(e, &t.logical_name, id))?
    else {
        return Ok(None);
    };
    let mut out = Attributes::new();
    let mut i = 1;
    for a in attrs {
        out.insert(a.logical_name.clone(), decode(t, a, &r, i)?);
        i += column_names(a).len();
    }
    Ok(Some(out))
}

pub(crate) fn update(
    db: Db<'_>,
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
        &mut |t, id| exists(db, t, id),
        &mut |names| current_values(db, t, id, names, true),
    )?;
    let mut sets = Vec::new();
    let mut params = vec![Some(id.to_string())];
    for (name, v) in &writes {
        let a = attribute(t, name)?;
        for ((c, ty), p) in column_names(a)
            .into_iter()
            .zip(column_types(a))
            .zip(encode(a, v))
        {
            params.push(p);
            sets.push(format!("\"{c}\" = ${}::text::{ty}", params.len()));
        }
    }
    let sql = format!(
        "UPDATE \"{}\" SET {} WHERE \"{}\" = $1::text::uuid",
        t.logical_name,
        sets.join(", "),
        t.primary_id_attribute
    );
    db.execute(&sql, &refs(&params))
        .map_err(|e| key_violation(&e, t).unwrap_or_else(|| at_row(e, &t.logical_name, id)))?;
    Ok(previous)
}

pub(crate) fn delete(db: Db<'_>, schema: &Schema, table_name: &str, id: Uuid) -> Result<Row> {
    let t = table(schema, table_name)?;
    let attrs: Vec<&AttributeDef> = t.attributes.iter().collect();
    let sql = format!(
        "DELETE FROM \"{}\" WHERE \"{}\" = $1::text::uuid RETURNING {}",
        t.logical_name,
        t.primary_id_attribute,
        select_list(t, &attrs)
    );
    let row = match db
        .query_opt(&sql, &[&id.to_string()])
        .map_err(|e| at_row(e, &t.logical_name, id))?
    {
        Some(r) => read_row(t, &attrs, &r)?,
        None => {
            return Err(StoreError::NotFound {
                table: t.logical_name.clone(),
                id,
            });
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
                    db.execute(
                        &format!("DELETE FROM \"{name}\" WHERE {side} = $1::text::uuid"),
                        &[&id.to_string()],
                    )
                    .map_err(|e| at_row(e, name, id))?;
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

fn must_exist(db: Db<'_>, schema: &Schema, r: &EntityRef) -> Result<()> {
    let t = table(schema, &r.logical_name)?;
    if exists(db, t, r.id)? {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            table: r.logical_name.clone(),
            id: r.id,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn associate(
    db: Db<'_>,
    schema: &Schema,
    now: i64,
    rel: &str,
    target: &EntityRef,
    related: &[EntityRef],
    link: bool,
    lock: bool,
) -> Result<()> {
    match relationship(schema, rel)? {
        RelationshipDef::ManyToMany {
            name,
            entity1,
            entity2,
        } => {
            must_exist(db, schema, target)?;
            for other in related {
                let (a, b) = rows::nn_pair(rel, entity1, entity2, target, other)?;
                let pair: [&(dyn ToSql + Sync); 2] = [&a.to_string(), &b.to_string()];
                if link {
                    must_exist(db, schema, other)?;
                    let sql = format!(
                        "INSERT INTO \"{name}\" (entity1id, entity2id) VALUES ($1::text::uuid, $2::text::uuid)
                         ON CONFLICT DO NOTHING"
                    );
                    if db.execute(&sql, &pair).map_err(|e| at_row(e, name, a))? == 0 {
                        return Err(StoreError::Invalid(format!(
                            "relationship `{rel}`: {} {} and {} {} are already associated",
                            target.logical_name, target.id, other.logical_name, other.id
                        )));
                    }
                } else {
                    let sql = format!(
                        "DELETE FROM \"{name}\" WHERE entity1id = $1::text::uuid AND entity2id = $2::text::uuid"
                    );
                    db.execute(&sql, &pair).map_err(|e| at_row(e, name, a))?;
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
            &mut Links {
                db,
                schema,
                now,
                lock,
            },
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

/// The PostgreSQL side of a 1:N link ([`rows::link_one_to_many`]).
struct Links<'a> {
    db: Db<'a>,
    schema: &'a Schema,
    now: i64,
    lock: bool,
}

impl rows::LookupRows for Links<'_> {
    fn check_exists(&mut self, row: &EntityRef) -> Result<()> {
        must_exist(self.db, self.schema, row)
    }
    fn read_lookup(
        &mut self,
        table_name: &str,
        id: Uuid,
        attribute: &str,
    ) -> Result<Option<Value>> {
        let t = table(self.schema, table_name)?;
        Ok(current_values(self.db, t, id, &[attribute], self.lock)?
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
        update(self.db, self.schema, self.now, table_name, id, attrs).map(|_| ())
    }
}

pub(crate) fn related(
    db: Db<'_>,
    schema: &Schema,
    rel: &str,
    row: &EntityRef,
) -> Result<Vec<EntityRef>> {
    let ids = |sql: String, table: &str| -> Result<Vec<EntityRef>> {
        db.query(&sql, &[&row.id.to_string()])?
            .iter()
            .map(|r| {
                let s: String = r.try_get(0)?;
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
                    format!(
                        "SELECT entity2id::text FROM \"{name}\" WHERE entity1id = $1::text::uuid ORDER BY entity2id"
                    ),
                    entity2,
                )?);
            }
            if row.logical_name == *entity2 && entity1 != entity2 {
                out.extend(ids(
                    format!(
                        "SELECT entity1id::text FROM \"{name}\" WHERE entity2id = $1::text::uuid ORDER BY entity1id"
                    ),
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
            let t = table(schema, referencing_entity)?;
            if row.logical_name == *referenced_entity {
                ids(
                    format!(
                        "SELECT \"{pk}\"::text FROM \"{}\" WHERE \"{a}\" = $1::text::uuid AND \"{a}@type\" = '{referenced_entity}' ORDER BY \"{pk}\"",
                        t.logical_name,
                        pk = t.primary_id_attribute,
                        a = referencing_attribute
                    ),
                    referencing_entity,
                )
            } else if row.logical_name == *referencing_entity {
                match current_values(db, t, row.id, &[referencing_attribute], false)?
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
