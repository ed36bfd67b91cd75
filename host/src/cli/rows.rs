//! The organization service of `weft plugin run --rows FILE | --data DIR`: rows held in memory for one
//! run — read from a JSON file, or loaded table by table from a weft store the first time the plug-in
//! touches a table (read-only, at most [`MAX_TABLE_ROWS`] rows a table). The plug-in's creates, updates
//! and deletes change those in-memory rows (its later calls see them); nothing is ever written back.
//!
//! Owns the in-memory evaluation of the WIT query subset (conditions, orders, top). Must not run pipeline
//! steps: under `weft plugin run` a plug-in's calls reach rows only, not other plug-ins (under `weft up`
//! they are child operations through the pipeline). Every call is also recorded for the report.

use crate::context::{self, format_guid};
use crate::sandbox::wit::context::{ContextChanges, ExecutionContext};
use crate::sandbox::wit::organization_service::{ConditionOperator, Query};
use crate::sandbox::wit::types::{
    Entity, EntityCollection, Guid, ServiceError, ServiceErrorKind, Value,
};
use crate::sandbox::{HostServices, RecordedCall, RecordingServices};
use anyhow::Context as _;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use weft_store::{Store, StoreExt};

/// Rows of one table a `--data` run loads at most (the plug-in run is a laptop tool, not a query engine).
pub const MAX_TABLE_ROWS: u32 = 10_000;

/// Where rows come from.
enum Source {
    /// `--rows FILE`: the tables in the file, and no others.
    File(String),
    /// `--data DIR`: a weft store, read lazily.
    Store(Arc<dyn Store>),
}

/// Recording services with rows behind the organization service.
pub struct LocalOrganization {
    /// What the plug-in called (and the answer posts give).
    pub recording: RecordingServices,
    source: Source,
    /// Rows by table, in insertion order; a table is here once loaded.
    tables: BTreeMap<String, Vec<Entity>>,
}

fn error(kind: ServiceErrorKind, message: String) -> ServiceError {
    ServiceError {
        kind,
        message,
        error_code: None,
        status_code: None,
    }
}

impl LocalOrganization {
    /// Rows from a JSON file: `{"account": [{"id": "…", "name": "…"}, …], …}`, values in the notation of
    /// `--target`; a row without `"id"` gets a new one.
    pub fn from_file(recording: RecordingServices, path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let tables = json.as_object().with_context(|| {
            format!(
                "{}: expected an object of tables, {{\"account\": [rows…]}}",
                path.display()
            )
        })?;
        let mut loaded = BTreeMap::new();
        for (table, rows) in tables {
            let rows = rows.as_array().with_context(|| {
                format!("{}: {table}: expected an array of rows", path.display())
            })?;
            let mut entities = Vec::with_capacity(rows.len());
            for (i, row) in rows.iter().enumerate() {
                let mut entity = context::entity_from_json(table, row)
                    .with_context(|| format!("{}: {table}[{i}]", path.display()))?;
                entity.id = entity
                    .id
                    .or_else(|| Some(crate::convert::guid(uuid::Uuid::new_v4())));
                entities.push(entity);
            }
            loaded.insert(table.clone(), entities);
        }
        Ok(LocalOrganization {
            recording,
            source: Source::File(path.display().to_string()),
            tables: loaded,
        })
    }

    /// Rows read from `store` as the plug-in asks for them.
    pub fn from_store(recording: RecordingServices, store: Arc<dyn Store>) -> Self {
        LocalOrganization {
            recording,
            source: Source::Store(store),
            tables: BTreeMap::new(),
        }
    }

    /// The rows of `table`, loading them on first use.
    fn table(&mut self, table: &str) -> Result<&mut Vec<Entity>, ServiceError> {
        if !self.tables.contains_key(table) {
            let rows = match &self.source {
                Source::File(file) => {
                    return Err(error(
                        ServiceErrorKind::InvalidArgument,
                        format!("table `{table}` is not in --rows {file}"),
                    ));
                }
                Source::Store(store) => {
                    let query = weft_store::Query {
                        top: Some(MAX_TABLE_ROWS + 1),
                        ..weft_store::Query::new(table)
                    };
                    let rows = store
                        .read(|r| r.retrieve_multiple(&query))
                        .map_err(|e| error(ServiceErrorKind::InvalidArgument, e.to_string()))?;
                    if rows.len() > MAX_TABLE_ROWS as usize {
                        return Err(error(
                            ServiceErrorKind::Failed,
                            format!(
                                "table `{table}` has more than {MAX_TABLE_ROWS} rows, the most `weft plugin \
                                 run --data` loads; use --rows with the rows the plug-in needs"
                            ),
                        ));
                    }
                    rows.iter().map(crate::convert::row_to_entity).collect()
                }
            };
            self.tables.insert(table.to_owned(), rows);
        }
        Ok(self.tables.get_mut(table).expect("inserted above"))
    }

    fn record(&mut self, text: String) {
        self.recording.calls.push(RecordedCall::Organization(text));
    }
}

fn not_found(table: &str, id: Guid) -> ServiceError {
    error(
        ServiceErrorKind::NotFound,
        format!("{table} with id {} does not exist", format_guid(id)),
    )
}

/// An attribute's value, the primary id (`<table>id`) included; `None` when the row does not have it.
fn attribute<'e>(entity: &'e Entity, name: &str) -> Option<std::borrow::Cow<'e, Value>> {
    if let Some(a) = entity.attributes.iter().find(|a| a.name == name) {
        return Some(std::borrow::Cow::Borrowed(&a.value));
    }
    let primary = name.strip_suffix("id") == Some(entity.logical_name.as_str());
    entity
        .id
        .filter(|_| primary)
        .map(|id| std::borrow::Cow::Owned(Value::Guid(id)))
}

/// Orders two values as Dataverse compares them (text without regard to case, numbers across widths,
/// references by id); `None` when they cannot be compared.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value as V;
    let number = |v: &V| match v {
        V::Integer(i) => Some(f64::from(*i)),
        V::BigInteger(i) => Some(*i as f64),
        V::Double(d) => Some(*d),
        V::Decimal(s) | V::Money(s) => s.parse().ok(),
        _ => None,
    };
    match (a, b) {
        (V::String(x), V::String(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (V::Boolean(x), V::Boolean(y)) => Some(x.cmp(y)),
        (V::Datetime(x), V::Datetime(y)) => Some(x.cmp(y)),
        (V::Guid(x), V::Guid(y)) => Some((x.hi, x.lo).cmp(&(y.hi, y.lo))),
        (V::EntityReference(x), V::EntityReference(y)) => {
            Some((x.id.hi, x.id.lo).cmp(&(y.id.hi, y.id.lo)))
        }
        (V::EntityReference(x), V::Guid(y)) | (V::Guid(y), V::EntityReference(x)) => {
            Some((x.id.hi, x.id.lo).cmp(&(y.hi, y.lo)))
        }
        (V::OptionSetValue(x), V::OptionSetValue(y)) => Some(x.cmp(y)),
        (V::OptionSetValue(x), V::Integer(y)) => Some(x.cmp(y)),
        _ => number(a)?.partial_cmp(&number(b)?),
    }
}

/// Whether `entity` satisfies every condition of `query`.
fn matches(entity: &Entity, query: &Query) -> Result<bool, ServiceError> {
    for c in &query.conditions {
        let value = attribute(entity, &c.attribute).filter(|v| !matches!(**v, Value::Null));
        let operand = || {
            c.values.first().ok_or_else(|| {
                error(
                    ServiceErrorKind::InvalidArgument,
                    format!("the condition on `{}` needs a value", c.attribute),
                )
            })
        };
        let compared = |want: Ordering| -> Result<bool, ServiceError> {
            let operand = operand()?;
            Ok(value
                .as_ref()
                .is_some_and(|v| compare(v, operand) == Some(want)))
        };
        let holds = match c.operator {
            ConditionOperator::Null => value.is_none(),
            ConditionOperator::NotNull => value.is_some(),
            ConditionOperator::Equal => compared(Ordering::Equal)?,
            // As in SQL, a null is neither equal nor unequal to a value.
            ConditionOperator::NotEqual => value.is_some() && !compared(Ordering::Equal)?,
            ConditionOperator::GreaterThan => compared(Ordering::Greater)?,
            ConditionOperator::LessThan => compared(Ordering::Less)?,
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `entity` with only `columns` (all when `None`).
fn project(entity: &Entity, columns: Option<&[String]>) -> Entity {
    let mut out = entity.clone();
    if let Some(columns) = columns {
        out.attributes.retain(|a| columns.contains(&a.name));
    }
    out
}

impl HostServices for LocalOrganization {
    fn notify(
        &mut self,
        endpoint: Guid,
        context: &ExecutionContext,
        changes: &ContextChanges,
    ) -> Result<String, ServiceError> {
        self.recording.notify(endpoint, context, changes)
    }

    fn create(&mut self, entity: Entity) -> Result<Guid, ServiceError> {
        let table = entity.logical_name.clone();
        let id = entity
            .id
            .unwrap_or_else(|| crate::convert::guid(uuid::Uuid::new_v4()));
        self.record(format!("create {table} {}", format_guid(id)));
        let rows = self.table(&table)?;
        if rows.iter().any(|r| r.id == Some(id)) {
            return Err(error(
                ServiceErrorKind::InvalidArgument,
                format!("a {table} with id {} already exists", format_guid(id)),
            ));
        }
        rows.push(Entity {
            id: Some(id),
            ..entity
        });
        Ok(id)
    }

    fn retrieve(
        &mut self,
        entity_name: String,
        id: Guid,
        columns: Option<Vec<String>>,
    ) -> Result<Entity, ServiceError> {
        self.record(format!("retrieve {entity_name} {}", format_guid(id)));
        let rows = self.table(&entity_name)?;
        rows.iter()
            .find(|r| r.id == Some(id))
            .map(|r| project(r, columns.as_deref()))
            .ok_or_else(|| not_found(&entity_name, id))
    }

    fn retrieve_multiple(&mut self, query: Query) -> Result<EntityCollection, ServiceError> {
        let table = query.entity_name.clone();
        let rows = self.table(&table)?;
        let mut found = Vec::new();
        for row in rows.iter() {
            if matches(row, &query)? {
                found.push(row);
            }
        }
        for order in query.orders.iter().rev() {
            // Stable sorts from the last key to the first: the first key decides, later ones break ties.
            found.sort_by(|a, b| {
                let (x, y) = (
                    attribute(a, &order.attribute),
                    attribute(b, &order.attribute),
                );
                let ord = match (x, y) {
                    (Some(x), Some(y)) => compare(&x, &y).unwrap_or(Ordering::Equal),
                    // Nulls first, as SQL Server orders them ascending.
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                };
                if order.descending { ord.reverse() } else { ord }
            });
        }
        let top = query.top.map_or(usize::MAX, |t| t as usize);
        let entities: Vec<Entity> = found
            .into_iter()
            .take(top)
            .map(|r| project(r, query.columns.as_deref()))
            .collect();
        self.record(format!(
            "retrieve-multiple {table} ({} row(s))",
            entities.len()
        ));
        Ok(EntityCollection {
            entity_name: table,
            more_records: false,
            paging_cookie: None,
            total_record_count: i32::try_from(entities.len()).unwrap_or(i32::MAX),
            entities,
        })
    }

    fn update(&mut self, entity: Entity) -> Result<(), ServiceError> {
        let table = entity.logical_name.clone();
        let Some(id) = entity.id else {
            return Err(error(
                ServiceErrorKind::InvalidArgument,
                "an update needs the row's id".into(),
            ));
        };
        self.record(format!("update {table} {}", format_guid(id)));
        let row = self
            .table(&table)?
            .iter_mut()
            .find(|r| r.id == Some(id))
            .ok_or_else(|| not_found(&table, id))?;
        for attribute in entity.attributes {
            match row.attributes.iter_mut().find(|a| a.name == attribute.name) {
                Some(existing) => existing.value = attribute.value,
                None => row.attributes.push(attribute),
            }
        }
        Ok(())
    }

    fn delete(&mut self, entity_name: String, id: Guid) -> Result<(), ServiceError> {
        self.record(format!("delete {entity_name} {}", format_guid(id)));
        let rows = self.table(&entity_name)?;
        let before = rows.len();
        rows.retain(|r| r.id != Some(id));
        if rows.len() == before {
            return Err(not_found(&entity_name, id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::wit::organization_service::{Condition, Order};

    fn rows() -> LocalOrganization {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rows.json");
        std::fs::write(
            &file,
            r#"{"account": [
                {"id": "00000000-0000-4000-8000-000000000001", "name": "Contoso", "numberofemployees": 50},
                {"id": "00000000-0000-4000-8000-000000000002", "name": "fabrikam", "numberofemployees": 7},
                {"id": "00000000-0000-4000-8000-000000000003", "name": "Adatum"}
            ]}"#,
        )
        .unwrap();
        LocalOrganization::from_file(RecordingServices::default(), &file).unwrap()
    }

    fn names(c: &EntityCollection) -> Vec<String> {
        c.entities
            .iter()
            .map(|e| match attribute(e, "name").as_deref() {
                Some(Value::String(s)) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn query(conditions: Vec<Condition>, orders: Vec<Order>, top: Option<u32>) -> Query {
        Query {
            entity_name: "account".into(),
            columns: None,
            conditions,
            orders,
            top,
        }
    }

    /// Conditions, case-insensitive text order, nulls first, top; the primary id is an attribute too.
    #[test]
    fn queries_filter_order_and_limit() {
        let mut org = rows();
        let by_name = |descending| Order {
            attribute: "name".into(),
            descending,
        };
        let all = org
            .retrieve_multiple(query(vec![], vec![by_name(false)], None))
            .unwrap();
        assert_eq!(names(&all), ["Adatum", "Contoso", "fabrikam"]);
        let big = org
            .retrieve_multiple(query(
                vec![Condition {
                    attribute: "numberofemployees".into(),
                    operator: ConditionOperator::GreaterThan,
                    values: vec![Value::Integer(10)],
                }],
                vec![],
                None,
            ))
            .unwrap();
        assert_eq!(names(&big), ["Contoso"]);
        let without = org
            .retrieve_multiple(query(
                vec![Condition {
                    attribute: "numberofemployees".into(),
                    operator: ConditionOperator::Null,
                    values: vec![],
                }],
                vec![],
                None,
            ))
            .unwrap();
        assert_eq!(names(&without), ["Adatum"]);
        let by_employees = Order {
            attribute: "numberofemployees".into(),
            descending: false,
        };
        let ordered = org
            .retrieve_multiple(query(vec![], vec![by_employees], Some(2)))
            .unwrap();
        assert_eq!(names(&ordered), ["Adatum", "fabrikam"]);
        let id = context::parse_guid("00000000-0000-4000-8000-000000000002").unwrap();
        let by_id = org
            .retrieve_multiple(query(
                vec![Condition {
                    attribute: "accountid".into(),
                    operator: ConditionOperator::Equal,
                    values: vec![Value::Guid(id)],
                }],
                vec![],
                None,
            ))
            .unwrap();
        assert_eq!(names(&by_id), ["fabrikam"]);
    }

    /// Writes change the run's rows and later calls see them; missing rows and tables are clear errors.
    #[test]
    fn writes_are_seen_by_later_calls() {
        let mut org = rows();
        let id = context::parse_guid("00000000-0000-4000-8000-000000000003").unwrap();
        let mut change = context::entity_from_json(
            "account",
            &serde_json::json!({"id": "00000000-0000-4000-8000-000000000003", "name": "Adatum Corp"}),
        )
        .unwrap();
        org.update(change.clone()).unwrap();
        let row = org
            .retrieve("account".into(), id, Some(vec!["name".into()]))
            .unwrap();
        assert_eq!(
            names(&EntityCollection {
                entity_name: "account".into(),
                entities: vec![row],
                more_records: false,
                paging_cookie: None,
                total_record_count: 1,
            }),
            ["Adatum Corp"]
        );
        org.delete("account".into(), id).unwrap();
        let gone = org.retrieve("account".into(), id, None).unwrap_err();
        assert_eq!(gone.kind, ServiceErrorKind::NotFound);
        change.logical_name = "contact".into();
        let unknown = org.update(change).unwrap_err();
        assert!(
            unknown.message.contains("table `contact` is not in --rows"),
            "{}",
            unknown.message
        );
        let created = org
            .create(
                context::entity_from_json("account", &serde_json::json!({"name": "New"})).unwrap(),
            )
            .unwrap();
        assert!(org.retrieve("account".into(), created, None).is_ok());
        assert_eq!(org.recording.calls.len(), 7);
    }
}
