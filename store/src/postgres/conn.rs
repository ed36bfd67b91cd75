//! One PostgreSQL connection with its prepared statements, and the mapping of server errors to
//! [`StoreError`].
//!
//! Owns the statement cache (the `postgres` client prepares a `&str` query anew on every call: a round trip
//! more per statement) and the record of a statement that failed inside a transaction (PostgreSQL then
//! refuses everything until ROLLBACK, so the transaction can no longer commit). It must not build SQL.

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};
use uuid::Uuid;

use crate::StoreError;

/// Prepared statements kept per connection; past it the cache starts afresh (declared tables make the
/// statement texts a bounded set, but ad-hoc filters do not).
const STATEMENT_CACHE: usize = 512;

/// Runs a blocking database round trip from wherever the caller is. The `postgres` client blocks on a
/// runtime of its own, which tokio refuses inside a task of a running runtime (a caller that reads the
/// store from async code, as the SQLite backend tolerates): on a multi-thread runtime the call is moved out
/// of the task with `block_in_place`; elsewhere (a plain or `spawn_blocking` thread) it runs as it is.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A parameter list.
pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// A pooled connection.
pub(crate) struct Conn {
    /// Always Some until the connection is dropped (taken there, to be closed through [`blocking`]).
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    /// The first statement that failed in the current transaction: the transaction cannot commit.
    pub(crate) failed: Option<StoreError>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Closing sends a Terminate: a round trip like any other.
            blocking(move || drop(client));
        }
    }
}

impl Conn {
    pub(crate) fn new(client: Client) -> Conn {
        Conn {
            client: Some(client),
            statements: HashMap::new(),
            failed: None,
        }
    }

    fn client(&mut self) -> &mut Client {
        // Invariant: only Drop takes the client.
        self.client
            .as_mut()
            .expect("a connection's client is present until it is dropped")
    }

    /// Whether the server closed the connection (a pooled one is then replaced).
    pub(crate) fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(Client::is_closed)
    }

    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let client = self.client();
        let s = blocking(|| client.prepare(sql))?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn record<T>(&mut self, r: Result<T, postgres::Error>) -> Result<T, postgres::Error> {
        if let Err(e) = &r
            && self.failed.is_none()
        {
            self.failed = Some(StoreError::from(e));
        }
        r
    }

    /// Runs a statement given as text, with no parameters (BEGIN, SET LOCAL, COMMIT…).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        let client = self.client();
        let r = blocking(|| client.batch_execute(sql));
        self.record(r)
    }
}

/// A connection shared by the reads and writes of one transaction (the `Read` trait takes `&self`).
#[derive(Clone, Copy)]
pub(crate) struct Db<'a>(pub(crate) &'a RefCell<Conn>);

impl Db<'_> {
    fn run<T>(
        &self,
        sql: &str,
        f: impl FnOnce(&mut Client, &Statement) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let mut conn = self.0.borrow_mut();
        let r = conn.prepare(sql).and_then(|s| {
            let client = conn.client();
            blocking(|| f(client, &s))
        });
        conn.record(r)
    }

    pub(crate) fn query(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        self.run(sql, |c, s| c.query(s, params))
    }

    pub(crate) fn query_opt(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        self.run(sql, |c, s| c.query_opt(s, params))
    }

    pub(crate) fn execute(&self, sql: &str, params: &Params<'_>) -> Result<u64, postgres::Error> {
        self.run(sql, |c, s| c.execute(s, params))
    }
}

/// The SQLSTATEs that mean "another transaction holds what this one needs".
fn contention(e: &postgres::Error) -> Option<&'static str> {
    let code = e.code()?;
    if *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::QUERY_CANCELED {
        Some("timeout")
    } else if *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
    {
        Some("deadlock")
    } else {
        None
    }
}

/// A server error met while writing or locking one row: lock timeouts and deadlocks name the row, as the
/// SQLite backend's in-process row locks do.
pub(crate) fn at_row(e: postgres::Error, table: &str, id: Uuid) -> StoreError {
    match contention(&e) {
        Some("timeout") => StoreError::LockTimeout {
            table: table.to_string(),
            id,
        },
        Some(_) => StoreError::Deadlock {
            table: table.to_string(),
            id,
        },
        None => StoreError::from(&e),
    }
}

impl From<&postgres::Error> for StoreError {
    fn from(e: &postgres::Error) -> Self {
        match contention(e) {
            // A wait outside a row write (a system table, a query): the row is not known.
            Some("timeout") => StoreError::LockTimeout {
                table: "(a system table)".into(),
                id: Uuid::nil(),
            },
            Some(_) => StoreError::Deadlock {
                table: "(a system table)".into(),
                id: Uuid::nil(),
            },
            None => match e.as_db_error() {
                // The server's own words (without the query text or parameters, which may hold secrets).
                Some(db) => {
                    StoreError::Database(format!("{} ({})", db.message(), db.code().code()))
                }
                None => StoreError::Database(e.to_string()),
            },
        }
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::from(&e)
    }
}
