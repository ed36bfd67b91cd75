//! [`Buffered`]: one operation's transaction while it runs — reads of committed data merged with the
//! operation's own writes, writes buffered in memory under row locks — and the [`WriteSet`] it leaves for the
//! backend's group-commit writer.
//!
//! Owns the isolation an operation sees (read committed, statement by statement, plus its own writes; see the
//! store README) and the row locks it takes. It must not touch a backend's connections or SQL: committed data
//! comes through a [`Read`], and the backend replays the [`WriteSet`] in its writer.
//!
//! Why buffered: SQLite has one writer. An operation whose writes went straight to the write connection held
//! that connection for as long as its slowest plug-in ran, so one plug-in waiting on a webhook froze every
//! write of the host. Buffered, an operation holds only the rows it wrote (their locks) until it commits.

mod merge;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use uuid::Uuid;

use crate::query::{Condition, Link, Query, check_condition};
use crate::row_lock::{RowKey, RowLocks};
use crate::schema::{RelationshipDef, Schema, TableDef};
use crate::system::*;
use crate::value::Value;
use crate::{Attributes, EntityRef, Read, Result, Row, StoreError, Tx, rows};

/// One buffered write, replayed by the writer in order (with the time it was made, so `createdon` and
/// `modifiedon` are what the operation saw).
#[derive(Debug)]
pub(crate) enum Write {
    /// [`Tx::create`] with its id decided.
    Create {
        table: String,
        id: Uuid,
        attributes: Attributes,
        now: i64,
    },
    /// [`Tx::update`] (also set state, assign and 1:N associations).
    Update {
        table: String,
        id: Uuid,
        attributes: Attributes,
        now: i64,
    },
    /// [`Tx::delete`].
    Delete { table: String, id: Uuid },
    /// [`Tx::associate`] / [`Tx::disassociate`] of an N:N relationship.
    Link {
        relationship: String,
        target: EntityRef,
        related: Vec<EntityRef>,
        now: i64,
        link: bool,
    },
    /// [`Tx::insert_system_job`] with its id decided.
    SystemJob { job: NewSystemJob, now: i64 },
}

/// What an operation leaves for the writer: its writes (applied only when `commit`) and its trace rows
/// (written either way: a failed operation keeps its trace).
#[derive(Debug)]
pub(crate) struct WriteSet {
    pub(crate) commit: bool,
    pub(crate) writes: Vec<Write>,
    pub(crate) traces: crate::HeldTraces,
}

impl WriteSet {
    /// Nothing for the writer to do (a read-only operation).
    pub(crate) fn is_empty(&self) -> bool {
        (self.writes.is_empty() || !self.commit) && self.traces.is_empty()
    }
}

/// An operation's transaction: [`Read`] and [`Tx`] over committed data plus its own buffered writes.
pub(crate) struct Buffered<'a> {
    committed: &'a dyn Read,
    locks: &'a RowLocks,
    owner: u64,
    deadline: Option<Instant>,
    clock: &'a (dyn Fn() -> i64 + Send + Sync),
    /// Rows as this operation's writes left them (all attributes); None = deleted.
    rows: HashMap<RowKey, Option<Row>>,
    /// N:N pairs (relationship, entity1 id, entity2 id) this operation linked (true) or unlinked (false).
    links: HashMap<(String, Uuid, Uuid), bool>,
    held: HashSet<RowKey>,
    writes: Vec<Write>,
    traces: crate::HeldTraces,
}

fn not_in_operation(what: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{what} runs in a transaction of its own (StoreExt::transact), not inside an operation"
    ))
}

impl<'a> Buffered<'a> {
    /// A new operation `owner` reading through `committed`, taking locks in `locks` until `deadline`.
    pub(crate) fn new(
        committed: &'a dyn Read,
        locks: &'a RowLocks,
        owner: u64,
        deadline: Option<Instant>,
        clock: &'a (dyn Fn() -> i64 + Send + Sync),
    ) -> Self {
        Buffered {
            committed,
            locks,
            owner,
            deadline,
            clock,
            rows: HashMap::new(),
            links: HashMap::new(),
            held: HashSet::new(),
            writes: Vec::new(),
            traces: Vec::new(),
        }
    }

    /// Ends the operation: its write set (to commit or only to keep the traces of) and the locks it holds,
    /// which the caller releases once the writer has answered.
    pub(crate) fn finish(self, commit: bool) -> (WriteSet, Vec<RowKey>) {
        (
            WriteSet {
                commit,
                writes: self.writes,
                traces: self.traces,
            },
            self.held.into_iter().collect(),
        )
    }

    fn table(&self, name: &str) -> Result<&'a TableDef> {
        // The schema outlives the operation: it is the committed reader's.
        let schema: &'a Schema = self.committed.schema();
        schema
            .table(name)
            .ok_or_else(|| StoreError::UnknownTable(name.to_string()))
    }

    fn lock(&mut self, key: RowKey) -> Result<()> {
        if !self.held.contains(&key) {
            self.locks.lock(self.owner, &key, self.deadline)?;
            self.held.insert(key);
        }
        Ok(())
    }

    /// The whole row as this operation sees it.
    fn current(&self, table: &str, id: Uuid) -> Result<Option<Row>> {
        match self.rows.get(&(table.to_string(), id)) {
            Some(row) => Ok(row.clone()),
            None => self.committed.retrieve(table, id, None),
        }
    }

    fn exists(&self, t: &TableDef, id: Uuid) -> Result<bool> {
        match self.rows.get(&(t.logical_name.clone(), id)) {
            Some(row) => Ok(row.is_some()),
            None => Ok(self
                .committed
                .retrieve(&t.logical_name, id, Some(&[]))?
                .is_some()),
        }
    }

    fn must_exist(&self, r: &EntityRef) -> Result<()> {
        if self.exists(self.table(&r.logical_name)?, r.id)? {
            Ok(())
        } else {
            Err(StoreError::NotFound {
                table: r.logical_name.clone(),
                id: r.id,
            })
        }
    }

    fn mine<'s>(&'s self, table: &'s str) -> impl Iterator<Item = (&'s Uuid, &'s Option<Row>)> {
        self.rows
            .iter()
            .filter(move |((t, _), _)| t == table)
            .map(|((_, id), row)| (id, row))
    }

    /// An N:N link's state as this operation sees it.
    fn linked(
        &self,
        rel: &str,
        e1: Uuid,
        e2: Uuid,
        target: &EntityRef,
        other: &EntityRef,
    ) -> Result<bool> {
        match self.links.get(&(rel.to_string(), e1, e2)) {
            Some(l) => Ok(*l),
            None => Ok(self
                .committed
                .related(rel, target)?
                .iter()
                .any(|r| r == other)),
        }
    }

    fn link(
        &mut self,
        rel: &str,
        target: &EntityRef,
        related: &[EntityRef],
        link: bool,
    ) -> Result<()> {
        let schema: &'a Schema = self.committed.schema();
        let def = schema
            .relationship(rel)
            .ok_or_else(|| StoreError::UnknownRelationship(rel.to_string()))?;
        match def {
            RelationshipDef::ManyToMany {
                entity1, entity2, ..
            } => {
                self.must_exist(target)?;
                for other in related {
                    let (a, b) = rows::nn_pair(rel, entity1, entity2, target, other)?;
                    self.lock((format!("{rel}:{a}"), b))?;
                    if link {
                        self.must_exist(other)?;
                        if self.linked(rel, a, b, target, other)? {
                            return Err(StoreError::Invalid(format!(
                                "relationship `{rel}`: {} {} and {} {} are already associated",
                                target.logical_name, target.id, other.logical_name, other.id
                            )));
                        }
                    }
                    self.links.insert((rel.to_string(), a, b), link);
                }
                self.writes.push(Write::Link {
                    relationship: rel.to_string(),
                    target: target.clone(),
                    related: related.to_vec(),
                    now: (self.clock)(),
                    link,
                });
                Ok(())
            }
            RelationshipDef::OneToMany {
                referenced_entity,
                referencing_entity,
                referencing_attribute,
                ..
            } => rows::link_one_to_many(
                self,
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

    /// Refuses a query whose lambdas (`any`/`all`) range over rows or N:N links this operation changed: the
    /// backend's SQL evaluates them on committed rows only, so its answer for a committed row could be
    /// wrong. (The Web API's queries run first in their operation, so they never meet this.)
    fn refuse_stale_lambdas(&self, q: &Query) -> Result<()> {
        let Some(filter) = q.filter.as_ref().filter(|f| f.has_related()) else {
            return Ok(());
        };
        let mut related = Vec::new();
        filter.related_tables(self.committed.schema(), self.table(&q.table)?, &mut related)?;
        for (link, table) in related {
            let changed = self.mine(&table.logical_name).next().is_some()
                || matches!(&link, Link::ManyToMany(name)
                    if self.links.keys().any(|(rel, _, _)| rel == name));
            if changed {
                return Err(StoreError::Invalid(format!(
                    "any/all over {link}: this operation changed rows of `{}` or their links before \
                     the query; query before changing them, or in another operation",
                    table.logical_name
                )));
            }
        }
        Ok(())
    }

    /// RetrieveMultiple over committed rows merged with this operation's: the committed query without skip
    /// and with enough rows to fill the page once this operation's rows are taken out, then this operation's
    /// matching rows, sorted and paged again.
    fn merged(&self, q: &Query) -> Result<Vec<Row>> {
        let t = self.table(&q.table)?;
        let schema: &'a Schema = self.committed.schema();
        let filter = q
            .filter
            .as_ref()
            .map(|f| check_condition(schema, t, f))
            .transpose()?;
        let mine = self.mine(&q.table).count() as u64;
        let base = Query {
            columns: None,
            skip: 0,
            top: q
                .top
                .map(|top| u32::try_from(u64::from(top) + q.skip + mine).unwrap_or(u32::MAX)),
            ..q.clone()
        };
        let mut all: Vec<Row> = self
            .committed
            .retrieve_multiple(&base)?
            .into_iter()
            .filter(|r| !self.rows.contains_key(&(q.table.clone(), r.id)))
            .collect();
        for r in self.mine(&q.table).filter_map(|(_, r)| r.as_ref()) {
            let keep = match &filter {
                Some(f) => merge::matches(schema, self, t, f, r)?,
                None => true,
            };
            if keep {
                all.push(r.clone());
            }
        }
        all.sort_by(|a, b| merge::compare(t, &q.orders, a, b));
        let skip = usize::try_from(q.skip).unwrap_or(usize::MAX);
        let top = q.top.map_or(usize::MAX, |t| t as usize);
        all.into_iter()
            .skip(skip)
            .take(top)
            .map(|r| merge::project(t, q.columns.as_deref(), &r))
            .collect()
    }
}

impl merge::Relatives for Buffered<'_> {
    fn relatives(&self, table: &str, id: Uuid, link: &Link) -> Result<Vec<Row>> {
        match link {
            Link::Lookup {
                table: referencing,
                attribute,
            } => self.retrieve_multiple(&Query::new(referencing.clone()).filter(Condition::Eq(
                attribute.clone(),
                Value::EntityReference {
                    logical_name: table.to_owned(),
                    id,
                },
            ))),
            Link::ManyToMany(relationship) => {
                let mut out = Vec::new();
                for r in self.related(relationship, &EntityRef::new(table, id))? {
                    out.extend(self.retrieve(&r.logical_name, r.id, None)?);
                }
                Ok(out)
            }
        }
    }
}

impl Read for Buffered<'_> {
    fn schema(&self) -> &Schema {
        self.committed.schema()
    }
    fn retrieve(&self, table: &str, id: Uuid, columns: Option<&[String]>) -> Result<Option<Row>> {
        match self.rows.get(&(table.to_string(), id)) {
            Some(Some(row)) => merge::project(self.table(table)?, columns, row).map(Some),
            Some(None) => Ok(None),
            None => self.committed.retrieve(table, id, columns),
        }
    }
    fn retrieve_multiple(&self, query: &Query) -> Result<Vec<Row>> {
        self.refuse_stale_lambdas(query)?;
        if self.mine(&query.table).next().is_none() {
            return self.committed.retrieve_multiple(query);
        }
        self.merged(query)
    }
    fn related(&self, relationship: &str, row: &EntityRef) -> Result<Vec<EntityRef>> {
        let schema = self.committed.schema();
        let def = schema
            .relationship(relationship)
            .ok_or_else(|| StoreError::UnknownRelationship(relationship.to_string()))?;
        match def {
            RelationshipDef::ManyToMany {
                entity1, entity2, ..
            } => {
                let mut out = self.committed.related(relationship, row)?;
                for ((rel, a, b), linked) in &self.links {
                    if rel != relationship {
                        continue;
                    }
                    let other = if row.logical_name == *entity1 && *a == row.id {
                        EntityRef::new(entity2.clone(), *b)
                    } else if row.logical_name == *entity2 && *b == row.id && entity1 != entity2 {
                        EntityRef::new(entity1.clone(), *a)
                    } else {
                        continue;
                    };
                    out.retain(|r| *r != other);
                    if *linked {
                        out.push(other);
                    }
                }
                out.retain(|r| {
                    !matches!(self.rows.get(&(r.logical_name.clone(), r.id)), Some(None))
                });
                out.sort_by_key(|r| r.id);
                Ok(out)
            }
            RelationshipDef::OneToMany {
                referenced_entity,
                referencing_entity,
                referencing_attribute,
                ..
            } => {
                if self.mine(referencing_entity).next().is_none() {
                    return self.committed.related(relationship, row);
                }
                if row.logical_name == *referenced_entity {
                    let t = self.table(referencing_entity)?;
                    let reference = Value::EntityReference {
                        logical_name: row.logical_name.clone(),
                        id: row.id,
                    };
                    let query = Query::new(referencing_entity.clone())
                        .columns([
                            t.primary_id_attribute.clone(),
                            referencing_attribute.clone(),
                        ])
                        .filter(Condition::Eq(
                            referencing_attribute.clone(),
                            reference.clone(),
                        ));
                    Ok(self
                        .retrieve_multiple(&query)?
                        .into_iter()
                        .filter(|r| r.attributes.get(referencing_attribute) == Some(&reference))
                        .map(|r| EntityRef::new(referencing_entity.clone(), r.id))
                        .collect())
                } else if row.logical_name == *referencing_entity {
                    Ok(
                        match self
                            .current(referencing_entity, row.id)?
                            .and_then(|mut r| r.attributes.remove(referencing_attribute))
                        {
                            Some(Value::EntityReference { logical_name, id }) => {
                                vec![EntityRef { logical_name, id }]
                            }
                            _ => Vec::new(),
                        },
                    )
                } else {
                    Err(rows::wrong_side(relationship, row))
                }
            }
        }
    }
    delegate_system_reads!(committed);
}

/// A 1:N link in an operation: the lookup is read after locking the row, then written like any Update.
impl rows::LookupRows for Buffered<'_> {
    fn check_exists(&mut self, row: &EntityRef) -> Result<()> {
        self.must_exist(row)
    }
    fn read_lookup(&mut self, table: &str, id: Uuid, attribute: &str) -> Result<Option<Value>> {
        self.lock((table.to_owned(), id))?;
        Ok(self
            .current(table, id)?
            .map(|mut row| row.attributes.remove(attribute).unwrap_or(Value::Null)))
    }
    fn write_lookup(&mut self, table: &str, id: Uuid, attribute: &str, value: Value) -> Result<()> {
        self.update(table, id, Attributes::from([(attribute.to_owned(), value)]))
            .map(|_| ())
    }
}

impl Tx for Buffered<'_> {
    fn now_ms(&self) -> i64 {
        (self.clock)()
    }
    fn create(&mut self, table: &str, id: Option<Uuid>, attributes: Attributes) -> Result<Uuid> {
        let t = self.table(table)?;
        let now = self.now_ms();
        let schema = self.committed.schema();
        let (id, writes) =
            rows::create_writes(schema, t, now, id, attributes.clone(), &mut |t, id| {
                self.exists(t, id)
            })?;
        // Locking the new id first makes a concurrent Create of the same id wait, then see this one.
        self.lock((t.logical_name.clone(), id))?;
        if self.exists(t, id)? {
            return Err(StoreError::DuplicateId {
                table: t.logical_name.clone(),
                id,
            });
        }
        let row = merge::apply(t, id, None, &writes);
        self.rows.insert((t.logical_name.clone(), id), Some(row));
        self.writes.push(Write::Create {
            table: t.logical_name.clone(),
            id,
            attributes,
            now,
        });
        Ok(id)
    }
    fn update(&mut self, table: &str, id: Uuid, attributes: Attributes) -> Result<Attributes> {
        let t = self.table(table)?;
        // Lock, then read: the row read is the last committed one, which no one else can change now.
        self.lock((t.logical_name.clone(), id))?;
        let current = self.current(table, id)?;
        let now = self.now_ms();
        let schema = self.committed.schema();
        let (writes, previous) = rows::update_writes(
            schema,
            t,
            now,
            id,
            attributes.clone(),
            &mut |t, id| self.exists(t, id),
            &mut |names| {
                Ok(current.as_ref().map(|row| {
                    names
                        .iter()
                        .map(|n| {
                            let v = row.attributes.get(*n).cloned().unwrap_or(Value::Null);
                            ((*n).to_string(), v)
                        })
                        .collect()
                }))
            },
        )?;
        let row = merge::apply(t, id, current, &writes);
        self.rows.insert((t.logical_name.clone(), id), Some(row));
        self.writes.push(Write::Update {
            table: t.logical_name.clone(),
            id,
            attributes,
            now,
        });
        Ok(previous)
    }
    fn delete(&mut self, table: &str, id: Uuid) -> Result<Row> {
        let t = self.table(table)?;
        self.lock((t.logical_name.clone(), id))?;
        let Some(row) = self.current(table, id)? else {
            return Err(StoreError::NotFound {
                table: t.logical_name.clone(),
                id,
            });
        };
        self.rows.insert((t.logical_name.clone(), id), None);
        self.writes.push(Write::Delete {
            table: t.logical_name.clone(),
            id,
        });
        Ok(row)
    }
    fn associate(
        &mut self,
        relationship: &str,
        target: &EntityRef,
        related: &[EntityRef],
    ) -> Result<()> {
        self.link(relationship, target, related, true)
    }
    fn disassociate(
        &mut self,
        relationship: &str,
        target: &EntityRef,
        related: &[EntityRef],
    ) -> Result<()> {
        self.link(relationship, target, related, false)
    }
    fn insert_system_job(&mut self, mut job: NewSystemJob) -> Result<Uuid> {
        let id = *job.id.get_or_insert_with(crate::new_id);
        let now = self.now_ms();
        self.writes.push(Write::SystemJob { job, now });
        Ok(id)
    }
    fn insert_trace_log(&mut self, entry: NewTraceLog) -> Result<Uuid> {
        let at = self.now_ms();
        Ok(crate::hold_trace(&mut self.traces, entry, at))
    }
    fn purge_trace_logs(&mut self, _before_ms: i64, _limit: usize) -> Result<usize> {
        Err(not_in_operation("purging the trace log"))
    }
    fn put_plugin_assembly(&mut self, _assembly: &PluginAssembly) -> Result<()> {
        Err(not_in_operation("registration"))
    }
    fn put_plugin_assembly_content(
        &mut self,
        _assembly_id: Uuid,
        _content: Option<&AssemblyContent>,
    ) -> Result<()> {
        Err(not_in_operation("registration"))
    }
    fn put_declaration(&mut self, _declaration: &Declaration) -> Result<()> {
        Err(not_in_operation("registration"))
    }
    fn delete_declaration(&mut self, _kind: &str, _id: Uuid) -> Result<()> {
        Err(not_in_operation("registration"))
    }
    fn put_plugin_type(&mut self, _plugin_type: &PluginType) -> Result<()> {
        Err(not_in_operation("registration"))
    }
    fn put_step(&mut self, _step: &StepDef, _secure_configuration: SecretUpdate) -> Result<()> {
        Err(not_in_operation("registration"))
    }
    fn delete_step(&mut self, _id: Uuid) -> Result<bool> {
        Err(not_in_operation("registration"))
    }
    fn put_workflow(&mut self, _workflow: &StoredWorkflow) -> Result<()> {
        Err(not_in_operation("registration"))
    }
    fn delete_workflow(&mut self, _id: Uuid) -> Result<bool> {
        Err(not_in_operation("registration"))
    }
    fn put_service_endpoint(
        &mut self,
        _endpoint: &ServiceEndpointDef,
        _secrets: &EndpointSecretsUpdate,
    ) -> Result<()> {
        Err(not_in_operation("registration"))
    }
    fn delete_service_endpoint(&mut self, _id: Uuid) -> Result<bool> {
        Err(not_in_operation("registration"))
    }
    fn claim_jobs(
        &mut self,
        _worker: &str,
        _now_ms: i64,
        _lease_ms: i64,
        _limit: u32,
    ) -> Result<Vec<SystemJob>> {
        Err(not_in_operation("the asynchronous service"))
    }
    fn complete_job(&mut self, _id: Uuid, _worker: &str, _now_ms: i64) -> Result<()> {
        Err(not_in_operation("the asynchronous service"))
    }
    fn fail_job(
        &mut self,
        _id: Uuid,
        _worker: &str,
        _now_ms: i64,
        _error: &JobError,
    ) -> Result<()> {
        Err(not_in_operation("the asynchronous service"))
    }
    fn wait_job(
        &mut self,
        _id: Uuid,
        _worker: &str,
        _next_attempt_ms: i64,
        _error: &JobError,
    ) -> Result<()> {
        Err(not_in_operation("the asynchronous service"))
    }
    fn delete_job(&mut self, _id: Uuid) -> Result<bool> {
        Err(not_in_operation("the asynchronous service"))
    }
    fn update_job(&mut self, _id: Uuid, _update: &JobUpdate) -> Result<()> {
        Err(not_in_operation("the asynchronous service"))
    }
    fn insert_job_attempt(&mut self, _attempt: &NewJobAttempt) -> Result<i32> {
        Err(not_in_operation("the asynchronous service"))
    }
}
