//! Shared fixtures: a schema using every attribute type, a controllable clock, and store opening.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use weft_store::{PgOptions, PgStore, Schema, SqliteOptions, SqliteStore, Store, TestDatabase};

pub const SCHEMA_TOML: &str = r#"
[[table]]
logical_name = "account"
entity_set_name = "accounts"
primary_id_attribute = "accountid"
primary_name_attribute = "name"

  [[table.attribute]]
  logical_name = "name"
  type = "String"
  max_length = 20

  [[table.attribute]]
  logical_name = "description"
  type = "Memo"

  [[table.attribute]]
  logical_name = "numberofemployees"
  type = "Integer"
  min_value = 0
  max_value = 100000

  [[table.attribute]]
  logical_name = "bigcount"
  type = "BigInt"

  [[table.attribute]]
  logical_name = "ratio"
  type = "Double"

  [[table.attribute]]
  logical_name = "share"
  type = "Decimal"
  precision = 3

  [[table.attribute]]
  logical_name = "revenue"
  type = "Money"

  [[table.attribute]]
  logical_name = "donotemail"
  type = "Boolean"

  [[table.attribute]]
  logical_name = "lastcontactedon"
  type = "DateTime"

  [[table.attribute]]
  logical_name = "externalid"
  type = "Uniqueidentifier"

  [[table.attribute]]
  logical_name = "primarycontactid"
  type = "Lookup"
  targets = ["contact"]

  [[table.attribute]]
  logical_name = "industrycode"
  type = "Picklist"
  options = [{ value = 1, label = "Accounting" }, { value = 2, label = "Agriculture" }]

  [[table.attribute]]
  logical_name = "channels"
  type = "MultiSelectPicklist"
  options = [{ value = 10, label = "Email" }, { value = 20, label = "Phone" }, { value = 30, label = "Fax" }]

  [[table.attribute]]
  logical_name = "statuscode"
  type = "Status"
  options = [
    { value = 1, label = "Active", state = 0 },
    { value = 3, label = "On hold", state = 0 },
    { value = 2, label = "Inactive", state = 1 },
  ]

[[table]]
logical_name = "contact"
entity_set_name = "contacts"
primary_id_attribute = "contactid"
primary_name_attribute = "fullname"

  [[table.attribute]]
  logical_name = "fullname"
  type = "String"

  [[table.attribute]]
  logical_name = "parentcustomerid"
  type = "Lookup"
  targets = ["account"]

[[table]]
logical_name = "setting"
entity_set_name = "settings"
primary_id_attribute = "settingid"
primary_name_attribute = "name"
ownership = "OrganizationOwned"

  [[table.attribute]]
  logical_name = "name"
  type = "String"

  [[table.attribute]]
  logical_name = "scope"
  type = "Integer"

  [[table.key]]
  name = "setting_name_scope"
  attributes = ["name", "scope"]

[[relationship]]
name = "account_contacts_nn"
type = "ManyToMany"
entity1 = "account"
entity2 = "contact"

[[relationship]]
name = "contact_customer_accounts"
type = "OneToMany"
referenced_entity = "account"
referencing_entity = "contact"
referencing_attribute = "parentcustomerid"
"#;

pub fn schema() -> Schema {
    Schema::from_toml_str("test.toml", SCHEMA_TOML).expect("test schema is valid")
}

/// A clock the test moves by hand.
#[derive(Clone)]
pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    pub fn new(ms: i64) -> Self {
        TestClock(Arc::new(AtomicI64::new(ms)))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

/// A SQLite store (for the tests of what only the SQLite backend has: its writer, its file).
pub fn open_sqlite_with_clock(dir: &Path, clock: &TestClock) -> SqliteStore {
    let c = clock.0.clone();
    let options = SqliteOptions {
        clock: Arc::new(move || c.load(Ordering::SeqCst)),
        ..Default::default()
    };
    SqliteStore::open(dir.join("weft.db"), schema(), options).expect("store opens")
}

pub fn open_sqlite(dir: &Path) -> SqliteStore {
    open_sqlite_with_clock(dir, &TestClock::new(1_700_000_000_000))
}

/// Which backend a conformance test runs on.
pub enum Backend {
    /// A `weft.db` in the test's directory.
    Sqlite,
    /// The test's own PostgreSQL database (dropped after the test).
    Postgres(String),
}

pub fn open_with_clock(backend: &Backend, dir: &Path, clock: &TestClock) -> Box<dyn Store> {
    let c = clock.0.clone();
    let clock: weft_store::Clock = Arc::new(move || c.load(Ordering::SeqCst));
    match backend {
        Backend::Sqlite => {
            let options = SqliteOptions {
                clock,
                ..Default::default()
            };
            Box::new(
                SqliteStore::open(dir.join("weft.db"), schema(), options).expect("store opens"),
            )
        }
        Backend::Postgres(url) => {
            let options = PgOptions {
                clock,
                connections: 8,
                workers: 2,
                ..Default::default()
            };
            Box::new(PgStore::open(url, schema(), options).expect("store opens"))
        }
    }
}

pub fn open(backend: &Backend, dir: &Path) -> Box<dyn Store> {
    open_with_clock(backend, dir, &TestClock::new(1_700_000_000_000))
}

/// Runs a conformance test on a PostgreSQL database of its own, or reports it skipped.
pub fn with_postgres(test: &str, f: impl FnOnce(&Backend)) {
    if let Some(db) = TestDatabase::create(test) {
        f(&Backend::Postgres(db.url().to_string()));
    }
}

/// Turns each `fn name(backend: &Backend)` into two tests, `sqlite::name` and `postgres::name`.
#[allow(unused_macros)] // schema, group_commit and hardening test one backend only
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&crate::common::Backend::Sqlite)
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    crate::common::with_postgres(concat!(module_path!(), "::", stringify!($name)), super::$name)
                }
            )*
        }
    };
}
