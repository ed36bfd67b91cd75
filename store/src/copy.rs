//! `weft store copy`: every row of one store into another, SQLite ↔ PostgreSQL (or the same kind).
//!
//! Owns the table-by-table copy: both stores are opened first (so both have every system and declared table
//! for the schema, the same rules as at start), then each table's rows move column by column in one
//! destination transaction — all or nothing. Both backends use the same table and column names; a value
//! crosses as one of five cells (null, integer, real, text, bytes), which each side writes in its own
//! encoding (a Boolean is 0/1 on SQLite and `boolean` on PostgreSQL, a Decimal canonical text and
//! `numeric`). Rows stream from the source; the destination must be empty unless `force` (then its rows are
//! deleted first, in the same transaction). It must not go through the pipeline: rows, jobs and trace-log
//! rows keep their ids, times, states and sequence numbers.

use std::fmt::Write as _;
use std::path::PathBuf;

use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::types::ToSql;
use ::postgres::{Client, Config};
use rusqlite::types::Value as SqlValue;

use crate::schema::RelationshipDef;
use crate::{PgOptions, PgStore, Result, Schema, SqliteOptions, SqliteStore, StoreError};

/// The system tables, in the order they are filled (registration first, as the rows refer to it).
const SYSTEM_TABLES: &[&str] = &[
    "pluginassembly",
    "pluginassemblycontent",
    "plugintype",
    "serviceendpoint",
    "sdkmessageprocessingstep",
    "sdkmessageprocessingstepimage",
    "sdkmessageprocessingstepsecureconfig",
    "weft_declaration",
    "workflow",
    "asyncoperation",
    "asyncoperationdata",
    "asyncoperationattempt",
    "plugintracelog",
    "plugintracelog_recording",
];

/// Where a store lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database URL.
    Postgres(String),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => f.write_str(&crate::redact_url(url)),
        }
    }
}

/// What a copy moved: rows per table, in copy order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// (table, rows copied).
    pub tables: Vec<(String, u64)>,
}

/// One value in transit.
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    /// The text PostgreSQL reads with `$n::text::<type>`.
    fn pg_text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Int(i) => Some(i.to_string()),
            Cell::Real(r) => Some(r.to_string()),
            Cell::Text(s) => Some(s.clone()),
            Cell::Blob(b) => {
                let mut s = String::with_capacity(2 + b.len() * 2);
                s.push_str("\\x");
                for byte in b {
                    let _ = write!(s, "{byte:02x}");
                }
                Some(s)
            }
        }
    }

    fn sqlite(self) -> SqlValue {
        match self {
            Cell::Null => SqlValue::Null,
            Cell::Int(i) => SqlValue::Integer(i),
            Cell::Real(r) => SqlValue::Real(r),
            Cell::Text(s) => SqlValue::Text(s),
            Cell::Blob(b) => SqlValue::Blob(b),
        }
    }
}

enum Side {
    Sqlite(rusqlite::Connection),
    Postgres(Client),
}

fn pg_client(url: &str) -> Result<Client> {
    let config: Config = url.parse().map_err(|e| {
        StoreError::Database(format!(
            "{} is not a PostgreSQL URL: {e}",
            crate::redact_url(url)
        ))
    })?;
    crate::postgres::tls::connect_sync(&config).map_err(|e| {
        StoreError::Database(format!(
            "{}: {}",
            crate::redact_url(url),
            crate::postgres::causes(&e)
        ))
    })
}

impl Side {
    /// Opens the store (creating or migrating its tables for `schema`), then a raw connection to it.
    fn open(location: &Location, schema: &Schema) -> Result<Side> {
        match location {
            Location::Sqlite(path) => {
                drop(SqliteStore::open(
                    path,
                    schema.clone(),
                    SqliteOptions::default(),
                )?);
                let conn = rusqlite::Connection::open(path)?;
                conn.busy_timeout(std::time::Duration::from_secs(10))?;
                Ok(Side::Sqlite(conn))
            }
            Location::Postgres(url) => {
                let options = PgOptions {
                    workers: 1,
                    connections: 1,
                    ..PgOptions::default()
                };
                drop(PgStore::open(url, schema.clone(), options)?);
                Ok(Side::Postgres(pg_client(url)?))
            }
        }
    }

    /// The table's columns with their types (declared type on SQLite, `data_type` on PostgreSQL).
    fn columns(&mut self, table: &str) -> Result<Vec<(String, String)>> {
        match self {
            Side::Sqlite(c) => {
                let mut stmt = c.prepare("SELECT name, type FROM pragma_table_info(?1)")?;
                let rows = stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
            Side::Postgres(c) => Ok(c
                .query(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                    &[&table],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()),
        }
    }

    fn count(&mut self, table: &str) -> Result<i64> {
        let sql = format!("SELECT count(*) FROM \"{table}\"");
        match self {
            Side::Sqlite(c) => Ok(c.query_row(&sql, [], |r| r.get(0))?),
            Side::Postgres(c) => Ok(c.query_one(&sql, &[])?.get(0)),
        }
    }
}

/// The order rows are read in where it matters: job and trace-log rows keep their sequence.
fn order_by(table: &str, source: &Side, columns: &[(String, String)]) -> &'static str {
    let has = |name: &str| columns.iter().any(|(c, _)| c == name);
    match (table, source) {
        ("asyncoperation" | "asyncoperationdata", _) => " ORDER BY sequence",
        ("plugintracelog", Side::Sqlite(_)) => " ORDER BY rowid",
        ("plugintracelog", Side::Postgres(_)) if has("sequence") => " ORDER BY sequence",
        _ => "",
    }
}

/// Reads column `i` of a PostgreSQL row as a copied cell.
type PgCellReader = fn(&::postgres::Row, usize) -> Result<Cell>;

/// The column's select expression on PostgreSQL and how its value is read.
fn pg_select(column: &str, data_type: &str) -> (String, PgCellReader) {
    fn int(r: &::postgres::Row, i: usize) -> Result<Cell> {
        Ok(r.try_get::<_, Option<i64>>(i)?
            .map_or(Cell::Null, Cell::Int))
    }
    fn real(r: &::postgres::Row, i: usize) -> Result<Cell> {
        Ok(r.try_get::<_, Option<f64>>(i)?
            .map_or(Cell::Null, Cell::Real))
    }
    fn blob(r: &::postgres::Row, i: usize) -> Result<Cell> {
        Ok(r.try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Cell::Null, Cell::Blob))
    }
    fn text(r: &::postgres::Row, i: usize) -> Result<Cell> {
        Ok(r.try_get::<_, Option<String>>(i)?
            .map_or(Cell::Null, Cell::Text))
    }
    match data_type {
        "integer" | "bigint" | "smallint" => (format!("\"{column}\"::bigint"), int),
        "boolean" => (format!("\"{column}\"::int::bigint"), int),
        "double precision" | "real" => (format!("\"{column}\"::float8"), real),
        "bytea" => (format!("\"{column}\""), blob),
        _ => (format!("\"{column}\"::text"), text),
    }
}

/// Copies every row of `from` into `to` (see the module doc). Refuses a destination that holds rows unless
/// `force`.
pub fn copy(from: &Location, to: &Location, schema: &Schema, force: bool) -> Result<CopyReport> {
    let mut source = Side::open(from, schema)?;
    let mut dest = Side::open(to, schema)?;
    let mut tables: Vec<String> = SYSTEM_TABLES.iter().map(|t| t.to_string()).collect();
    tables.extend(schema.tables().iter().map(|t| t.logical_name.clone()));
    tables.extend(schema.relationships().iter().filter_map(|r| match r {
        RelationshipDef::ManyToMany { name, .. } => Some(name.clone()),
        RelationshipDef::OneToMany { .. } => None,
    }));
    if !force {
        for t in &tables {
            let n = dest.count(t)?;
            if n > 0 {
                return Err(StoreError::Invalid(format!(
                    "the destination {to} is not empty (table `{t}` has {n} rows); copy into an empty store, \
                     or pass --force to replace its rows"
                )));
            }
        }
    }
    begin(&mut dest)?;
    let copied = (|| {
        let mut report = CopyReport::default();
        if force {
            for t in tables.iter().rev() {
                exec(&mut dest, &format!("DELETE FROM \"{t}\""))?;
            }
        }
        for t in &tables {
            let n = copy_table(&mut source, &mut dest, t)?;
            report.tables.push((t.clone(), n));
        }
        if let Side::Postgres(c) = &mut dest {
            // Identity columns continue after the copied sequence numbers.
            for t in ["asyncoperation", "plugintracelog"] {
                c.batch_execute(&format!(
                    "SELECT setval(pg_get_serial_sequence('{t}', 'sequence'),
                        coalesce((SELECT max(sequence) FROM {t}), 0) + 1, false)"
                ))?;
            }
        }
        Ok::<_, StoreError>(report)
    })();
    match copied {
        Ok(report) => {
            exec(&mut dest, "COMMIT")?;
            Ok(report)
        }
        Err(e) => {
            let _ = exec(&mut dest, "ROLLBACK");
            Err(e)
        }
    }
}

fn begin(side: &mut Side) -> Result<()> {
    exec(
        side,
        match side {
            Side::Sqlite(_) => "BEGIN IMMEDIATE",
            Side::Postgres(_) => "BEGIN",
        },
    )
}

fn exec(side: &mut Side, sql: &str) -> Result<()> {
    match side {
        Side::Sqlite(c) => c.execute_batch(sql)?,
        Side::Postgres(c) => c.batch_execute(sql)?,
    }
    Ok(())
}

/// Streams one table's rows from `source` into `dest`; returns how many.
fn copy_table(source: &mut Side, dest: &mut Side, table: &str) -> Result<u64> {
    let source_columns = source.columns(table)?;
    let dest_columns = dest.columns(table)?;
    // Columns both have: a column only one side has (PostgreSQL's trace-log sequence) is left to its
    // default, as are columns of attributes one store no longer declares.
    let columns: Vec<(String, String, String)> = source_columns
        .iter()
        .filter_map(|(name, source_type)| {
            dest_columns
                .iter()
                .find(|(d, _)| d == name)
                .map(|(_, dest_type)| (name.clone(), source_type.clone(), dest_type.clone()))
        })
        .collect();
    if columns.is_empty() {
        return Ok(0);
    }
    let names: Vec<String> = columns.iter().map(|(n, _, _)| format!("\"{n}\"")).collect();
    let insert = match dest {
        Side::Sqlite(_) => format!(
            "INSERT INTO \"{table}\" ({}) VALUES ({})",
            names.join(", "),
            vec!["?"; names.len()].join(", ")
        ),
        Side::Postgres(_) => format!(
            "INSERT INTO \"{table}\" ({}) VALUES ({})",
            names.join(", "),
            columns
                .iter()
                .enumerate()
                .map(|(i, (_, _, ty))| format!("${}::text::{ty}", i + 1))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let order = order_by(table, source, &source_columns);
    let mut write = Writer::new(dest, &insert)?;
    let mut n = 0u64;
    match source {
        Side::Sqlite(c) => {
            let sql = format!("SELECT {} FROM \"{table}\"{order}", names.join(", "));
            let mut stmt = c.prepare(&sql)?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let mut cells = Vec::with_capacity(columns.len());
                for i in 0..columns.len() {
                    cells.push(match r.get::<_, SqlValue>(i)? {
                        SqlValue::Null => Cell::Null,
                        SqlValue::Integer(v) => Cell::Int(v),
                        SqlValue::Real(v) => Cell::Real(v),
                        SqlValue::Text(v) => Cell::Text(v),
                        SqlValue::Blob(v) => Cell::Blob(v),
                    });
                }
                write.row(cells)?;
                n += 1;
            }
        }
        Side::Postgres(c) => {
            let (exprs, readers): (Vec<String>, Vec<_>) = columns
                .iter()
                .map(|(name, ty, _)| pg_select(name, ty))
                .unzip();
            let sql = format!("SELECT {} FROM \"{table}\"{order}", exprs.join(", "));
            let mut rows = c.query_raw(&sql, std::iter::empty::<&(dyn ToSql + Sync)>())?;
            while let Some(r) = rows.next()? {
                let cells = readers
                    .iter()
                    .enumerate()
                    .map(|(i, read)| read(&r, i))
                    .collect::<Result<Vec<_>>>()?;
                write.row(cells)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Inserts rows into the destination with one prepared statement.
enum Writer<'a> {
    Sqlite(rusqlite::Statement<'a>),
    Postgres(&'a mut Client, ::postgres::Statement),
}

impl<'a> Writer<'a> {
    fn new(dest: &'a mut Side, sql: &str) -> Result<Writer<'a>> {
        Ok(match dest {
            Side::Sqlite(c) => Writer::Sqlite(c.prepare(sql)?),
            Side::Postgres(c) => {
                let stmt = c.prepare(sql)?;
                Writer::Postgres(c, stmt)
            }
        })
    }

    fn row(&mut self, cells: Vec<Cell>) -> Result<()> {
        match self {
            Writer::Sqlite(stmt) => {
                stmt.execute(rusqlite::params_from_iter(
                    cells.into_iter().map(Cell::sqlite),
                ))?;
            }
            Writer::Postgres(c, stmt) => {
                let texts: Vec<Option<String>> = cells.iter().map(Cell::pg_text).collect();
                let params: Vec<&(dyn ToSql + Sync)> =
                    texts.iter().map(|t| t as &(dyn ToSql + Sync)).collect();
                c.execute(&*stmt, &params)?;
            }
        }
        Ok(())
    }
}
