//! Shared fixtures: a schema using every attribute type, a controllable clock, and store opening.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use weft_store::{Schema, SqliteOptions, SqliteStore};

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

pub fn open_with_clock(dir: &Path, clock: &TestClock) -> SqliteStore {
    let c = clock.0.clone();
    let options = SqliteOptions {
        clock: Arc::new(move || c.load(Ordering::SeqCst)),
        ..Default::default()
    };
    SqliteStore::open(dir.join("weft.db"), schema(), options).expect("store opens")
}

pub fn open(dir: &Path) -> SqliteStore {
    open_with_clock(dir, &TestClock::new(1_700_000_000_000))
}
