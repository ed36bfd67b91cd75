//! Dataverse's bulk messages as pipeline messages: CreateMultiple, UpdateMultiple and UpsertMultiple on one
//! table. The operation's input is `Targets` (an EntityCollection); steps registered on the bulk message run
//! once in each stage with it, and its main operation runs every target as a Create or an Update of its own
//! (in the same transaction, at the same depth), so the steps registered on Create and Update run for each
//! item, as Dataverse runs them. A stage-20 step may change `Targets`; the main operation reads them then.
//!
//! Owns the bulk message's name, its input parameter and its main operation; it must not run plug-ins or
//! touch the store itself ([`super::Inner::execute_op`] runs each item).

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;
use weft_store::Tx;

use super::{Inner, Message, Op, OrganizationResponse, PipelineError, get_param, param};
use crate::convert::{guid, uuid};
use crate::sandbox::wit::types::{Entity, EntityCollection, Parameter, ParameterValue};

/// Most targets in one bulk message (Dataverse's recommended batch size is far below; this bounds the
/// operation's write set).
pub const MAX_TARGETS: usize = 1_000;

/// Which bulk message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bulk {
    /// CreateMultiple: every target is created.
    Create,
    /// UpdateMultiple: every target names its row, which is updated.
    Update,
    /// UpsertMultiple: a target whose row exists updates it, the others are created.
    Upsert,
}

impl Bulk {
    /// Every bulk message.
    pub const ALL: [Bulk; 3] = [Bulk::Create, Bulk::Update, Bulk::Upsert];

    /// The bulk message a message name names.
    pub fn named(name: &str) -> Option<Bulk> {
        Bulk::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Dataverse's message name.
    pub fn name(self) -> &'static str {
        match self {
            Bulk::Create => "CreateMultiple",
            Bulk::Update => "UpdateMultiple",
            Bulk::Upsert => "UpsertMultiple",
        }
    }
}

/// The table and input parameters of a bulk message on `targets`, each checked to be a row of `table`.
pub(super) fn input(
    bulk: Bulk,
    table: String,
    targets: Vec<Entity>,
) -> Result<(String, Vec<Parameter>), PipelineError> {
    check(bulk, &table, &targets)?;
    let collection = EntityCollection {
        entity_name: table.clone(),
        entities: targets,
        more_records: false,
        paging_cookie: None,
        total_record_count: -1,
    };
    Ok((
        table,
        vec![param(
            "Targets",
            ParameterValue::EntityCollection(collection),
        )],
    ))
}

/// Refuses targets a bulk message cannot run: none or more than [`MAX_TARGETS`], a row of another table, an
/// Update's row without its id. Checked on the request and again on `Targets` as stages 10 and 20 left it.
fn check(bulk: Bulk, table: &str, targets: &[Entity]) -> Result<(), PipelineError> {
    let invalid = |why: String| Err(PipelineError::Invalid(format!("{}: {why}", bulk.name())));
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return invalid(format!(
            "Targets holds 1 to {MAX_TARGETS} entities, not {}",
            targets.len()
        ));
    }
    if let Some((i, t)) = targets
        .iter()
        .enumerate()
        .find(|(_, t)| t.logical_name != table)
    {
        return invalid(format!(
            "target {i} is a `{}` entity, not `{table}`",
            t.logical_name
        ));
    }
    if bulk == Bulk::Update
        && let Some(i) = targets.iter().position(|t| t.id.is_none())
    {
        return invalid(format!("target {i} has no id"));
    }
    Ok(())
}

impl Inner {
    /// The main operation of a bulk message: each of `Targets` (as the stages before left it) a Create or
    /// an Update through the pipeline, in `tx`. The created rows' ids are set on `Targets`, so stage 40
    /// sees them, and kept for the response.
    pub(super) fn main_multiple(
        self: &Arc<Self>,
        bulk: Bulk,
        op: &mut Op,
        tx: &mut dyn Tx,
    ) -> Result<(), PipelineError> {
        let targets = match get_param(&op.input, "Targets") {
            Some(ParameterValue::EntityCollection(c)) => c.entities.clone(),
            _ => {
                return Err(PipelineError::Invalid(format!(
                    "{}: the Targets input parameter must be an entity collection",
                    op.message
                )));
            }
        };
        check(bulk, &op.table, &targets)?;
        let mut ids = Vec::with_capacity(targets.len());
        for target in targets {
            let named = target.id.map(uuid);
            let create = match (bulk, named) {
                (Bulk::Create, _) | (Bulk::Upsert, None) => true,
                (Bulk::Update, _) => false,
                (Bulk::Upsert, Some(id)) => tx.retrieve(&op.table, id, None)?.is_none(),
            };
            let message = if create {
                Message::Create { target }
            } else {
                Message::Update { target }
            };
            let mut item = self.new_op(
                message,
                Instant::now(),
                Uuid::new_v4(),
                Arc::clone(&op.registry),
            )?;
            // Each item is part of this operation: same depth, correlation, callers, bypass flags and
            // deadline. Like a Create or Update sent on its own, each has its own fan-out limit for the
            // child operations its plug-ins issue.
            item.depth = op.depth;
            item.correlation_id = op.correlation_id;
            item.user_id = op.user_id;
            item.initiating_user_id = op.initiating_user_id;
            item.parents = op.parents.clone();
            item.deadline = op.deadline;
            item.bypass_sync = op.bypass_sync;
            item.bypass_async = op.bypass_async;
            item.bypass_step_ids = op.bypass_step_ids.clone();
            let id = match (self.execute_op(item, Some(&mut *tx))?, named) {
                (OrganizationResponse::Create { id }, _) | (_, Some(id)) => id,
                (other, None) => {
                    return Err(PipelineError::Invalid(format!(
                        "{}: an item answered {other:?}",
                        op.message
                    )));
                }
            };
            ids.push(id);
        }
        if let Some(ParameterValue::EntityCollection(c)) = op
            .input
            .iter_mut()
            .find(|p| p.name == "Targets")
            .map(|p| &mut p.value)
        {
            for (entity, id) in c.entities.iter_mut().zip(&ids) {
                entity.id = Some(guid(*id));
            }
        }
        op.bulk_ids = ids;
        Ok(())
    }
}
