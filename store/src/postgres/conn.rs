//! One PostgreSQL connection with its prepared statements and its pipeline, and the mapping of server
//! errors to [`StoreError`].
//!
//! Owns the connection's I/O (a `tokio-postgres` client driven on a current-thread runtime of its own, as the
//! synchronous `postgres` client does, so every call blocks its caller's thread), the statement cache
//! (preparing a `&str` anew on every call would be a round trip more per statement), the pipeline, and the
//! record of a statement that failed inside a transaction (PostgreSQL then refuses everything until
//! ROLLBACK, so the transaction can no longer commit). It must not build SQL.
//!
//! **The pipeline.** What needs no answer before the work goes on is not sent on its own: the transaction's
//! opening text ([`Conn::begin`]: BEGIN and its `SET LOCAL`) and the writes whose only answer is success
//! or a server error ([`Db::defer`]: the outbox's system jobs, the trace rows) wait, and go out in the
//! same write as the next statement that needs an answer, or as COMMIT. The server runs them in order,
//! each with its own Sync, so one round trip carries them all; a deferred write that fails aborts the
//! transaction on the server (so the statements after it fail, and a COMMIT behind it rolls back), and its
//! error is the transaction's failure, as if it had failed when the work issued it. Durability does not
//! change: COMMIT is still answered only once the server made it durable.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use futures_util::future::{OptionFuture, join_all, join3};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row, Statement};
use uuid::Uuid;

use super::tls::Driver;
use crate::StoreError;

/// Prepared statements kept per connection; past it the cache starts afresh (declared tables make the
/// statement texts a bounded set, but ad-hoc filters do not).
const STATEMENT_CACHE: usize = 512;

/// Runs a blocking database round trip from wherever the caller is. A connection blocks on a runtime of
/// its own, which tokio refuses inside a task of a running runtime (a caller that reads the store from async
/// code, as the SQLite backend tolerates): on a multi-thread runtime the call is moved out of the task with
/// `block_in_place`; elsewhere (a plain or `spawn_blocking` thread) it runs as it is.
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

/// An owned parameter list, for a write sent later ([`Db::defer`]).
pub(crate) type OwnedParams = Vec<Box<dyn ToSql + Sync + Send>>;

/// How a deferred write's server error reads (its table's duplicate id, …).
pub(crate) type ErrorMap = fn(&tokio_postgres::Error) -> StoreError;

struct Link {
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// None once the connection ended.
    driver: Option<Driver>,
}

/// Runs `fut` (requests on this link's client) to its end, driving the connection meanwhile. Fails only
/// when the connection itself failed.
fn drive<F: Future>(
    runtime: &tokio::runtime::Runtime,
    driver: &mut Option<Driver>,
    fut: F,
) -> Result<F::Output, tokio_postgres::Error> {
    let mut fut = pin!(fut);
    blocking(|| {
        runtime.block_on(poll_fn(|cx| {
            // The requests first: polling them queues their messages, which the driver then writes at once.
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if let Some(d) = driver
                && let Poll::Ready(ended) = d.as_mut().poll(cx)
            {
                // Dropping the connection fails the waiting requests ("connection closed").
                *driver = None;
                if let Err(e) = ended {
                    return Poll::Ready(Err(e));
                }
                return fut.as_mut().poll(cx).map(Ok);
            }
            Poll::Pending
        }))
    })
}

/// A write sent with the next statement that needs an answer.
struct Deferred {
    statement: Statement,
    params: OwnedParams,
    error: ErrorMap,
}

/// What a statement asks for.
enum Ask<'a> {
    Rows(&'a Statement, &'a Params<'a>),
    Count(&'a Statement, &'a Params<'a>),
    Text(&'a str),
}

enum Reply {
    Rows(Vec<Row>),
    Count(u64),
    Done,
}

async fn ask(client: &Client, ask: Ask<'_>) -> Result<Reply, tokio_postgres::Error> {
    match ask {
        Ask::Rows(s, p) => client.query(s, p).await.map(Reply::Rows),
        Ask::Count(s, p) => client.execute(s, p).await.map(Reply::Count),
        Ask::Text(sql) => client.batch_execute(sql).await.map(|()| Reply::Done),
    }
}

/// A failed exchange: the server's error, and whether it was a deferred write's (whose error is then the
/// transaction's, recorded in [`Conn::failed`]).
struct Failure {
    error: tokio_postgres::Error,
    deferred: bool,
}

/// Connects to the server (with TLS when the URL requires it).
pub(crate) fn connect(config: &Config) -> Result<Conn, StoreError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Database(format!("cannot start a connection's runtime: {e}")))?;
    let (client, driver) =
        blocking(|| runtime.block_on(super::tls::connect(config))).map_err(|e| {
            StoreError::Database(format!("cannot connect to PostgreSQL: {}", causes(&e)))
        })?;
    Ok(Conn {
        link: Some(Link {
            runtime,
            client,
            driver: Some(driver),
        }),
        statements: HashMap::new(),
        failed: None,
        prelude: None,
        deferred: Vec::new(),
    })
}

/// An error with its causes (a TLS handshake's says why only in its source: the certificate refused…).
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A pooled connection.
pub(crate) struct Conn {
    /// Always Some until the connection is dropped (taken there, to be closed through [`blocking`]).
    link: Option<Link>,
    statements: HashMap<String, Statement>,
    /// The first statement that failed in the current transaction: the transaction cannot commit.
    pub(crate) failed: Option<StoreError>,
    /// Text sent ahead of the next statement ([`Conn::begin`]).
    prelude: Option<String>,
    deferred: Vec<Deferred>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(Link {
            runtime,
            client,
            driver,
        }) = self.link.take()
        {
            // Without a client the connection sends Terminate and ends: a round trip like any other.
            drop(client);
            if let Some(driver) = driver {
                blocking(move || {
                    let _ = runtime.block_on(driver);
                });
            }
        }
    }
}

impl Conn {
    fn link(&mut self) -> &mut Link {
        // Invariant: only Drop takes the link.
        self.link
            .as_mut()
            .expect("a connection's link is present until it is dropped")
    }

    /// Whether the server closed the connection (a pooled one is then replaced).
    pub(crate) fn is_closed(&self) -> bool {
        self.link
            .as_ref()
            .is_none_or(|l| l.driver.is_none() || l.client.is_closed())
    }

    /// Forgets what the last transaction left (a connection going back to the pool).
    pub(crate) fn reset(&mut self) {
        self.failed = None;
        self.prelude = None;
        self.deferred.clear();
    }

    fn prepare(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let Link {
            runtime,
            client,
            driver,
        } = self.link();
        let s = drive(runtime, driver, client.prepare(sql)).and_then(|r| r)?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn record(&mut self, e: &tokio_postgres::Error) {
        if self.failed.is_none() {
            self.failed = Some(StoreError::from(e));
        }
    }

    /// Sends the prelude, the deferred writes and `ask` in one write and reads their answers in order.
    fn exchange(&mut self, question: Ask<'_>) -> Result<Reply, Failure> {
        let prelude = self.prelude.take();
        let deferred = std::mem::take(&mut self.deferred);
        let Link {
            runtime,
            client,
            driver,
        } = self
            .link
            .as_mut()
            .expect("a connection's link is present until it is dropped");
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = deferred
            .iter()
            .map(|d| {
                d.params
                    .iter()
                    .map(|p| &**p as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        let all = join3(
            OptionFuture::from(prelude.as_deref().map(|p| client.batch_execute(p))),
            join_all(
                deferred
                    .iter()
                    .zip(&params)
                    .map(|(d, p)| client.execute(&d.statement, p)),
            ),
            ask(client, question),
        );
        let (begun, written, answer) = match drive(runtime, driver, all) {
            Ok(out) => out,
            Err(error) => {
                self.record(&error);
                return Err(Failure {
                    error,
                    deferred: false,
                });
            }
        };
        if let Some(Err(error)) = begun {
            self.record(&error);
            return Err(Failure {
                error,
                deferred: false,
            });
        }
        // The first deferred write that failed is the transaction's failure: what followed it failed (or,
        // a COMMIT, rolled back) because of it.
        if let Some((d, Err(error))) = deferred.iter().zip(written).find(|(_, w)| w.is_err()) {
            if self.failed.is_none() {
                self.failed = Some((d.error)(&error));
            }
            return Err(Failure {
                error,
                deferred: true,
            });
        }
        answer.map_err(|error| {
            self.record(&error);
            Failure {
                error,
                deferred: false,
            }
        })
    }

    /// Runs text statements (BEGIN, SET LOCAL, DDL…), with no parameters.
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.exchange(Ask::Text(sql)).map(drop).map_err(|f| f.error)
    }

    /// Opens a transaction with `sql` (BEGIN and what goes with it), sent with the transaction's first
    /// statement rather than on its own.
    pub(crate) fn begin(&mut self, sql: String) {
        self.prelude = Some(sql);
    }

    /// Commits what the transaction wrote, the deferred writes included, in one round trip. On failure the
    /// transaction is rolled back: a deferred write's error is returned as it is; the COMMIT's own (the
    /// server could not make it durable) as [`StoreError::CommitFailed`], but a deadlock or lock timeout
    /// found at commit as itself.
    pub(crate) fn commit(&mut self) -> Result<(), StoreError> {
        match self.exchange(Ask::Text("COMMIT")) {
            Ok(_) => Ok(()),
            Err(f) => {
                let recorded = self.failed.take();
                // A COMMIT the server refused left the transaction open; behind a failed write it rolled back.
                let _ = self.exchange(Ask::Text("ROLLBACK"));
                self.failed = None;
                Err(match (f.deferred, recorded) {
                    (true, Some(e)) => e,
                    _ => match StoreError::from(&f.error) {
                        e @ (StoreError::Deadlock { .. } | StoreError::LockTimeout { .. }) => e,
                        other => StoreError::CommitFailed(other.to_string()),
                    },
                })
            }
        }
    }

    /// Rolls the transaction back; the writes still deferred are dropped unsent, and a transaction that
    /// sent nothing yet costs no round trip.
    pub(crate) fn rollback(&mut self) {
        self.deferred.clear();
        if self.prelude.take().is_none() {
            let _ = self.exchange(Ask::Text("ROLLBACK"));
        }
    }
}

/// A connection shared by the reads and writes of one transaction (the `Read` trait takes `&self`).
#[derive(Clone, Copy)]
pub(crate) struct Db<'a>(pub(crate) &'a std::cell::RefCell<Conn>);

impl Db<'_> {
    fn run(
        &self,
        sql: &str,
        params: &Params<'_>,
        rows: bool,
    ) -> Result<Reply, tokio_postgres::Error> {
        let mut conn = self.0.borrow_mut();
        let statement = conn.prepare(sql).inspect_err(|e| conn.record(e))?;
        let question = if rows {
            Ask::Rows(&statement, params)
        } else {
            Ask::Count(&statement, params)
        };
        conn.exchange(question).map_err(|f| f.error)
    }

    pub(crate) fn query(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        match self.run(sql, params, true)? {
            Reply::Rows(rows) => Ok(rows),
            Reply::Count(_) | Reply::Done => Ok(Vec::new()),
        }
    }

    /// The first row, if any (callers ask for one row by its key, or with LIMIT 1).
    pub(crate) fn query_opt(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    pub(crate) fn execute(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        match self.run(sql, params, false)? {
            Reply::Count(n) => Ok(n),
            Reply::Rows(_) | Reply::Done => Ok(0),
        }
    }

    /// A write whose only answer is success or a server error, sent with the next statement or COMMIT
    /// (the module's pipeline). Only inside a transaction: its failure must abort what follows. The
    /// statement is prepared now (a round trip the first time this connection sees it).
    pub(crate) fn defer(
        &self,
        sql: &str,
        params: OwnedParams,
        error: ErrorMap,
    ) -> Result<(), StoreError> {
        let mut conn = self.0.borrow_mut();
        let statement = conn.prepare(sql).map_err(|e| {
            conn.record(&e);
            StoreError::from(&e)
        })?;
        conn.deferred.push(Deferred {
            statement,
            params,
            error,
        });
        Ok(())
    }
}

/// The SQLSTATEs that mean "another transaction holds what this one needs".
fn contention(e: &tokio_postgres::Error) -> Option<&'static str> {
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
pub(crate) fn at_row(e: tokio_postgres::Error, table: &str, id: Uuid) -> StoreError {
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

impl From<&tokio_postgres::Error> for StoreError {
    fn from(e: &tokio_postgres::Error) -> Self {
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

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::from(&e)
    }
}
