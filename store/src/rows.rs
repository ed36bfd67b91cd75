//! The rules of a row write that do not depend on where rows are kept: which attributes a caller may write,
//! their types, lookups that must point at existing rows, the statecode/statuscode pair, and the platform's
//! `createdon`/`modifiedon`, and which side of a relationship a row is on.
//!
//! Owns the checked form of a Create or Update (the attribute writes, in order) shared by a backend's SQL and
//! by an operation's in-memory write set (`operation`), so both give a row the same values. It must not read
//! or write rows itself: it asks through the callbacks it is given.

use uuid::Uuid;

use crate::schema::{AttributeDef, AttributeKind, Schema, TableDef, platform};
use crate::value::Value;
use crate::{Attributes, EntityRef, Result, StoreError};

/// Whether row `id` of a table exists (for lookups a write points at).
pub(crate) type Exists<'a> = &'a mut dyn FnMut(&TableDef, Uuid) -> Result<bool>;

/// The current values of the named attributes of the row being updated (Null when unset); None when the row
/// does not exist.
pub(crate) type Current<'a> = &'a mut dyn FnMut(&[&str]) -> Result<Option<Attributes>>;

pub(crate) fn attribute<'t>(t: &'t TableDef, name: &str) -> Result<&'t AttributeDef> {
    t.attribute(name)
        .ok_or_else(|| StoreError::UnknownAttribute {
            table: t.logical_name.clone(),
            attribute: name.to_string(),
        })
}

/// Checked attribute writes, in order.
pub(crate) type Writes = Vec<(String, Value)>;

/// Checks caller-supplied attributes for a write: declared, writable, typed, lookups pointing at existing rows.
/// The primary id attribute is removed and returned separately.
fn check_write(
    schema: &Schema,
    t: &TableDef,
    attrs: Attributes,
    exists: Exists<'_>,
) -> Result<(Writes, Option<Value>)> {
    let mut out = Vec::with_capacity(attrs.len());
    let mut pid = None;
    for (name, v) in attrs {
        let a = attribute(t, &name)?;
        if name == t.primary_id_attribute {
            pid = Some(v.check(&t.logical_name, a)?);
            continue;
        }
        if !t.is_writable(&name) {
            return Err(StoreError::Invalid(format!(
                "attribute `{name}` of table `{}` is set by the platform and cannot be written",
                t.logical_name
            )));
        }
        let v = v.check(&t.logical_name, a)?;
        if let Value::EntityReference { logical_name, id } = &v
            && let Some(target) = schema.table(logical_name)
            && !exists(target, *id)?
        {
            return Err(StoreError::Invalid(format!(
                "attribute `{name}` of table `{}` refers to {logical_name} {id}, which does not exist",
                t.logical_name
            )));
        }
        out.push((name, v));
    }
    Ok((out, pid))
}

/// Resolves a (statecode, statuscode) pair from what a write supplies and what the row has.
fn state_status(
    t: &TableDef,
    state: Option<i32>,
    status: Option<i32>,
    current: (i32, i32),
) -> Result<(i32, i32)> {
    let Some(AttributeKind::Status { options }) =
        t.attribute(platform::STATUS_CODE).map(|a| &a.kind)
    else {
        return Err(StoreError::Database(format!(
            "table `{}` has no statuscode",
            t.logical_name
        )));
    };
    let default_status = |state: i32| {
        options
            .iter()
            .find(|o| o.state == state)
            .map(|o| o.value)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "table `{}`: state {state} has no status reason",
                    t.logical_name
                ))
            })
    };
    match (state, status) {
        (None, None) => Ok(current),
        (Some(s), None) => Ok((s, default_status(s)?)),
        (state, Some(st)) => {
            let owner = options
                .iter()
                .find(|o| o.value == st)
                .map(|o| o.state)
                .unwrap_or(current.0);
            let s = state.unwrap_or(owner);
            if owner != s {
                return Err(StoreError::Invalid(format!(
                    "table `{}`: status {st} belongs to state {owner}, not to state {s}",
                    t.logical_name
                )));
            }
            Ok((s, st))
        }
    }
}

fn option_value(v: &Value) -> Option<i32> {
    match v {
        Value::OptionSetValue(i) => Some(*i),
        _ => None,
    }
}

/// Splits statecode/statuscode out of checked writes, resolves the pair, and puts both back.
fn apply_state(
    t: &TableDef,
    writes: &mut Writes,
    current: (i32, i32),
    creating: bool,
) -> Result<()> {
    let mut state = None;
    let mut status = None;
    writes.retain(|(n, v)| match n.as_str() {
        platform::STATE_CODE => {
            state = option_value(v);
            false
        }
        platform::STATUS_CODE => {
            status = option_value(v);
            false
        }
        _ => true,
    });
    if state.is_none() && status.is_none() {
        if !creating {
            return Ok(());
        }
        // A new row starts in the default state with that state's first status reason.
        state = Some(current.0);
    }
    let (s, st) = state_status(t, state, status, current)?;
    writes.push((platform::STATE_CODE.into(), Value::OptionSetValue(s)));
    writes.push((platform::STATUS_CODE.into(), Value::OptionSetValue(st)));
    Ok(())
}

/// A Create's id and checked writes (state pair, `createdon` and `modifiedon` included; not the primary id).
pub(crate) fn create_writes(
    schema: &Schema,
    t: &TableDef,
    now: i64,
    id: Option<Uuid>,
    attrs: Attributes,
    exists: Exists<'_>,
) -> Result<(Uuid, Writes)> {
    let (mut writes, pid) = check_write(schema, t, attrs, exists)?;
    let id = match (id, pid) {
        (Some(a), Some(Value::Guid(b))) if a != b => {
            return Err(StoreError::Invalid(format!(
                "table `{}`: the id {a} and attribute `{}` = {b} disagree",
                t.logical_name, t.primary_id_attribute
            )));
        }
        (Some(a), _) => a,
        (None, Some(Value::Guid(b))) => b,
        _ => crate::new_id(),
    };
    let default_state = match t.attribute(platform::STATE_CODE).map(|a| &a.kind) {
        Some(AttributeKind::State { options }) => options.first().map(|o| o.value).unwrap_or(0),
        _ => 0,
    };
    apply_state(t, &mut writes, (default_state, -1), true)?;
    writes.push((platform::CREATED_ON.into(), Value::DateTime(now)));
    writes.push((platform::MODIFIED_ON.into(), Value::DateTime(now)));
    writes.push((
        platform::VERSION_NUMBER.into(),
        Value::BigInt(row_version(now, &t.logical_name, id, 0)),
    ));
    Ok((id, writes))
}

/// The version a write gives row `id`: microseconds of the write's time with the low digits taken from the
/// row's identity (so rows written in the same millisecond differ), and always above the row's previous
/// version. A function of its inputs only: SQLite's writer replays a buffered write with the time and the
/// previous row the operation saw, and gets the version the operation saw.
fn row_version(now_ms: i64, table: &str, id: Uuid, previous: i64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in table.as_bytes().iter().chain(id.as_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let spread = (h % 1000) as i64;
    now_ms
        .saturating_mul(1000)
        .saturating_add(spread)
        .max(previous.saturating_add(1))
}

/// An Update's checked writes (`modifiedon` included) and the previous values of the attributes it was given
/// (NotFound when the row does not exist).
pub(crate) fn update_writes(
    schema: &Schema,
    t: &TableDef,
    now: i64,
    id: Uuid,
    attrs: Attributes,
    exists: Exists<'_>,
    current: Current<'_>,
) -> Result<(Writes, Attributes)> {
    let (mut writes, pid) = check_write(schema, t, attrs, exists)?;
    if let Some(Value::Guid(other)) = pid
        && other != id
    {
        return Err(StoreError::Invalid(format!(
            "table `{}`: attribute `{}` = {other} cannot change the id of row {id}",
            t.logical_name, t.primary_id_attribute
        )));
    }
    let touches_state = writes
        .iter()
        .any(|(n, _)| n == platform::STATE_CODE || n == platform::STATUS_CODE);
    let mut names: Vec<&str> = writes.iter().map(|(n, _)| n.as_str()).collect();
    names.push(platform::VERSION_NUMBER);
    if touches_state {
        for n in [platform::STATE_CODE, platform::STATUS_CODE] {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let Some(previous) = current(&names)? else {
        return Err(StoreError::NotFound {
            table: t.logical_name.clone(),
            id,
        });
    };
    if touches_state {
        let cur = |n| previous.get(n).and_then(option_value).unwrap_or(0);
        apply_state(
            t,
            &mut writes,
            (cur(platform::STATE_CODE), cur(platform::STATUS_CODE)),
            false,
        )?;
    }
    writes.push((platform::MODIFIED_ON.into(), Value::DateTime(now)));
    let before = match previous.get(platform::VERSION_NUMBER) {
        Some(Value::BigInt(v)) => *v,
        _ => 0,
    };
    writes.push((
        platform::VERSION_NUMBER.into(),
        Value::BigInt(row_version(now, &t.logical_name, id, before)),
    ));
    // `previous` holds exactly `names`: the attributes written (the state pair with either), and the
    // version, which always comes back so an update made on condition of a version (Dataverse's
    // IfRowVersionMatches) is checked against exactly the row it replaced.
    Ok((writes, previous))
}

/// The indexed expressions of alternate key `k` of `t`: each attribute's column, text through `text` (each
/// backend's way of comparing it ignoring case, as queries compare text).
pub(crate) fn key_columns(
    t: &TableDef,
    k: &crate::schema::KeyDef,
    text: impl Fn(&str) -> String,
) -> Vec<String> {
    k.attributes
        .iter()
        .map(|a| match t.attribute(a).map(|d| &d.kind) {
            Some(AttributeKind::String { .. }) => text(a),
            _ => format!("\"{a}\""),
        })
        .collect()
}

/// The unique index that enforces alternate key `key` of `t` (both backends).
pub(crate) fn key_index(t: &TableDef, key: &str) -> String {
    format!("{}@key@{key}", t.logical_name)
}

pub(crate) fn wrong_side(rel: &str, r: &EntityRef) -> StoreError {
    StoreError::Invalid(format!(
        "relationship `{rel}` does not relate table `{}` that way",
        r.logical_name
    ))
}

/// Orders an N:N pair as (entity1, entity2).
pub(crate) fn nn_pair<'a>(
    rel: &str,
    e1: &str,
    e2: &str,
    target: &'a EntityRef,
    other: &'a EntityRef,
) -> Result<(Uuid, Uuid)> {
    if target.logical_name == e1 && other.logical_name == e2 {
        Ok((target.id, other.id))
    } else if target.logical_name == e2 && other.logical_name == e1 {
        Ok((other.id, target.id))
    } else {
        Err(wrong_side(rel, other))
    }
}

/// What a 1:N Associate or Disassociate needs of a backend: a 1:N link is the referencing row's lookup.
pub(crate) trait LookupRows {
    /// NotFound unless `row` exists.
    fn check_exists(&mut self, row: &EntityRef) -> Result<()>;
    /// Lookup `attribute` of row `id` of `table` (Null when unset; None when the row does not exist), read
    /// as a writer reads it (locked where the backend locks).
    fn read_lookup(&mut self, table: &str, id: Uuid, attribute: &str) -> Result<Option<Value>>;
    /// Writes lookup `attribute` of row `id` of `table` (an Update of that one attribute).
    fn write_lookup(&mut self, table: &str, id: Uuid, attribute: &str, value: Value) -> Result<()>;
}

/// Links (`link`) or unlinks `target` and `related` through 1:N relationship `rel`: each "many" row's lookup
/// `attribute` is set to its "one" row (which must exist), or cleared after checking it points there.
#[allow(clippy::too_many_arguments)]
pub(crate) fn link_one_to_many(
    rows: &mut dyn LookupRows,
    rel: &str,
    referenced: &str,
    referencing: &str,
    attribute: &str,
    target: &EntityRef,
    related: &[EntityRef],
    link: bool,
) -> Result<()> {
    for (one, many) in one_to_many(rel, referenced, referencing, target, related)? {
        let reference = Value::EntityReference {
            logical_name: one.logical_name.clone(),
            id: one.id,
        };
        let value = if link {
            rows.check_exists(one)?;
            reference
        } else {
            let Some(current) = rows.read_lookup(referencing, many.id, attribute)? else {
                return Err(StoreError::NotFound {
                    table: many.logical_name.clone(),
                    id: many.id,
                });
            };
            if current != reference {
                return Err(StoreError::Invalid(format!(
                    "relationship `{rel}`: {} {} is not associated with {} {}",
                    many.logical_name, many.id, one.logical_name, one.id
                )));
            }
            Value::Null
        };
        rows.write_lookup(referencing, many.id, attribute, value)?;
    }
    Ok(())
}

/// For a 1:N relationship, the (referenced "one", referencing "many") roles of target and related.
pub(crate) fn one_to_many<'a>(
    rel: &str,
    referenced: &str,
    referencing: &str,
    target: &'a EntityRef,
    related: &'a [EntityRef],
) -> Result<Vec<(&'a EntityRef, &'a EntityRef)>> {
    if target.logical_name == referenced {
        related
            .iter()
            .map(|r| {
                if r.logical_name == referencing {
                    Ok((target, r))
                } else {
                    Err(wrong_side(rel, r))
                }
            })
            .collect()
    } else if target.logical_name == referencing {
        related
            .iter()
            .map(|r| {
                if r.logical_name == referenced {
                    Ok((r, target))
                } else {
                    Err(wrong_side(rel, r))
                }
            })
            .collect()
    } else {
        Err(wrong_side(rel, target))
    }
}

/// The SQL of a lambda ([`crate::Condition::Related`]), the same on both backends: a correlated `EXISTS`
/// over the related rows of the row `scope` names (its table's name, or an enclosing lambda's alias), which
/// this one's rows are aliased `alias` in (`{alias}_l` the intersect table of an N:N). `condition` is the
/// related rows' condition as SQL (its columns unqualified: they resolve to the related table, the innermost
/// scope holding them). `all` is `NOT EXISTS` a related row the condition is not true for, so a row it is
/// unknown for (null) fails it, as it fails `any`.
pub(crate) fn related_sql(
    t: &TableDef,
    scope: &str,
    alias: &str,
    related: crate::query::Related<'_>,
    all: bool,
    condition: Option<&str>,
) -> String {
    use crate::query::Related;
    let pk = &t.primary_id_attribute;
    let (from, link) = match related {
        Related::Referencing { table, attribute } => (
            format!("\"{}\" AS {alias}", table.logical_name),
            format!("{alias}.\"{attribute}\" = {scope}.\"{pk}\""),
        ),
        Related::Intersect {
            table,
            intersect,
            mine,
            other,
        } => (
            format!(
                "\"{intersect}\" AS {alias}_l JOIN \"{}\" AS {alias} ON {alias}.\"{}\" = {alias}_l.{other}",
                table.logical_name, table.primary_id_attribute
            ),
            format!("{alias}_l.{mine} = {scope}.\"{pk}\""),
        ),
    };
    match (all, condition) {
        (false, None) => format!("EXISTS (SELECT 1 FROM {from} WHERE {link})"),
        (false, Some(c)) => format!("EXISTS (SELECT 1 FROM {from} WHERE {link} AND ({c}))"),
        (true, c) => format!(
            "NOT EXISTS (SELECT 1 FROM {from} WHERE {link} AND ({}) IS NOT TRUE)",
            c.unwrap_or("1 = 1")
        ),
    }
}
