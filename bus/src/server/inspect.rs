//! What an operator sees of the bus (weft's web console and `/metrics`): every entity served — configured
//! or created through the management API — with its depths, messages peeked without locking them or changing their delivery counts, and a dead letter
//! resubmitted to its entity.
//!
//! Owns these views and the resubmit entry point, for an embedding program (weft up's console). Delivery
//! rules stay in `broker` (depths, message states, the resubmit itself), persistence in `store`. None of it
//! is routed on the bus's own HTTP port: whoever embeds the bus serves it behind its own authentication.

use std::sync::Arc;

use super::{Bus, Def, DefKind};
use crate::broker::{Depth, Entity, MessageState, ResubmitError};
use crate::eventhub::PartitionInfo;
use crate::props::now_ms;
use crate::store::Record;

/// The most messages one peek returns.
pub const MAX_PEEK: usize = 100;

/// A queue or a subscription with its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityDepth {
    /// Path as configured: `orders`, `events/subscriptions/accounts`.
    pub path: String,
    /// Active (locked and deferred included) and scheduled messages, and how many of the active are
    /// locked and deferred.
    pub depth: Depth,
    /// Messages in its `$DeadLetterQueue` (locked ones included).
    pub dead_letter: u64,
}

/// A topic and its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDepth {
    /// Name as configured.
    pub name: String,
    /// Its subscriptions: configured ones in configuration order, then those the management API created,
    /// oldest first.
    pub subscriptions: Vec<EntityDepth>,
}

/// An Event Hub and its partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct HubDepth {
    /// Name as configured.
    pub name: String,
    /// Partition `i`'s retained range.
    pub partitions: Vec<PartitionInfo>,
}

impl HubDepth {
    /// Events retained in partition `info` (offsets are contiguous; retention purges the oldest).
    pub fn events(info: &PartitionInfo) -> u64 {
        if info.is_empty {
            0
        } else {
            (info.last_enqueued_sequence_number - info.begin_sequence_number + 1).max(0) as u64
        }
    }

    /// Events retained in every partition.
    pub fn total_events(&self) -> u64 {
        self.partitions.iter().map(Self::events).sum()
    }
}

/// Every entity served with its counts: configured ones in configuration order, then those the management
/// API created, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// Queues.
    pub queues: Vec<EntityDepth>,
    /// Topics with their subscriptions.
    pub topics: Vec<TopicDepth>,
    /// Event Hubs.
    pub event_hubs: Vec<HubDepth>,
}

/// One peeked message.
#[derive(Debug, Clone)]
pub struct Peeked {
    /// The stored message: body, properties, sequence number, times and delivery count as stored.
    pub record: Record,
    /// Where it is now; None when it expired or was settled since the page's read.
    pub state: Option<MessageState>,
}

/// Why an inspection failed.
#[derive(Debug)]
pub enum InspectError {
    /// No queue or subscription with this path.
    UnknownEntity(String),
    /// The resubmit was refused (not there, locked) or failed.
    Resubmit(ResubmitError),
    /// The store could not be read.
    Store(anyhow::Error),
}

impl std::fmt::Display for InspectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InspectError::UnknownEntity(p) => write!(
                f,
                "no queue or subscription '{p}' on this bus (a subscription is topic/subscriptions/name)"
            ),
            InspectError::Resubmit(e) => e.fmt(f),
            InspectError::Store(e) => write!(f, "reading the bus store failed: {e:#}"),
        }
    }
}

impl Bus {
    fn depth_of(e: &Entity, now: i64) -> EntityDepth {
        EntityDepth {
            path: e.path.clone(),
            depth: e.depth(now),
            dead_letter: e.dlq.as_ref().map_or(0, |d| d.depth(now).active),
        }
    }

    /// Queues and subscriptions with their counts, from memory (no store read): what `/metrics` exports.
    /// Walks the live entity set, not the configuration, so entities created through the management API
    /// are there (and deleted ones are not).
    pub fn depths(&self) -> (Vec<EntityDepth>, Vec<TopicDepth>) {
        let now = now_ms();
        let reg = self.reg();
        // Configured entities keep the configuration's order (their definitions all carry the start time);
        // the management API's follow in creation order.
        let rank = |key: &str, d: &Def| {
            let configured = match &d.kind {
                DefKind::Queue(_) => self
                    .config
                    .queues
                    .iter()
                    .position(|q| q.name.eq_ignore_ascii_case(key)),
                DefKind::Topic(_) => self
                    .config
                    .topics
                    .iter()
                    .position(|t| t.name.eq_ignore_ascii_case(key)),
                DefKind::Subscription { topic, sub } => self
                    .config
                    .topics
                    .iter()
                    .find(|t| t.name.eq_ignore_ascii_case(topic))
                    .and_then(|t| {
                        t.subscriptions
                            .iter()
                            .position(|s| s.name.eq_ignore_ascii_case(&sub.name))
                    }),
            };
            match configured.filter(|_| d.from_config) {
                Some(i) => (0, i as i64, key.to_owned()),
                None => (1, d.created_ms, key.to_owned()),
            }
        };
        let mut defs: Vec<(&String, &Def)> = reg.defs.iter().collect();
        defs.sort_by_cached_key(|(k, d)| rank(k, d));
        let depth = |key: &str| {
            reg.nodes
                .get(key)
                .and_then(|n| n.receiver.as_ref())
                .map(|e| Self::depth_of(e, now))
        };
        let queues = defs
            .iter()
            .filter(|(_, d)| matches!(d.kind, DefKind::Queue(_)))
            .filter_map(|(k, _)| depth(k))
            .collect();
        let topics = defs
            .iter()
            .filter_map(|(_, d)| match &d.kind {
                DefKind::Topic(t) => Some(t),
                _ => None,
            })
            .map(|t| TopicDepth {
                name: t.name.clone(),
                subscriptions: defs
                    .iter()
                    .filter(|(_, d)| {
                        matches!(&d.kind, DefKind::Subscription { topic, .. } if topic.eq_ignore_ascii_case(&t.name))
                    })
                    .filter_map(|(k, _)| depth(k))
                    .collect(),
            })
            .collect();
        (queues, topics)
    }

    /// [`Bus::depths`] and the Event Hubs' partitions (read from the store).
    pub async fn overview(&self) -> anyhow::Result<Overview> {
        let (queues, topics) = self.depths();
        Ok(Overview {
            queues,
            topics,
            event_hubs: self.hub_depths().await?,
        })
    }

    /// The Event Hubs' partitions: each one's first and last retained sequence number (two indexed reads
    /// of the store per partition).
    pub async fn hub_depths(&self) -> anyhow::Result<Vec<HubDepth>> {
        let mut event_hubs = Vec::new();
        for h in &self.config.event_hubs {
            let Some(hub) = self.event_hub(&h.name) else {
                continue;
            };
            let mut partitions = Vec::with_capacity(hub.partitions.len());
            for p in 0..hub.partitions.len() {
                partitions.push(hub.partition_info(&self.store, p).await?);
            }
            event_hubs.push(HubDepth {
                name: hub.name.clone(),
                partitions,
            });
        }
        Ok(event_hubs)
    }

    /// The queue or subscription `path` (case-insensitive); a `…/$DeadLetterQueue` path is not one.
    fn inspected(&self, path: &str) -> Result<Arc<Entity>, InspectError> {
        self.receiver(path)
            .filter(|e| e.dlq.is_some())
            .ok_or_else(|| InspectError::UnknownEntity(path.to_owned()))
    }

    /// The counts of queue or subscription `path`.
    pub fn entity_depth(&self, path: &str) -> Result<EntityDepth, InspectError> {
        self.inspected(path).map(|e| Self::depth_of(&e, now_ms()))
    }

    /// Up to `max` (at most [`MAX_PEEK`]) messages of `path` (or of its dead-letter queue) from sequence
    /// number `from` on, in sequence order, as Service Bus's peek: nothing is locked, no delivery count
    /// changes, scheduled and locked messages are included.
    pub async fn peek(
        &self,
        path: &str,
        dead_letter: bool,
        from: u64,
        max: usize,
    ) -> Result<Vec<Peeked>, InspectError> {
        let e = self.inspected(path)?;
        let e = if dead_letter {
            e.dlq.clone().expect("inspected entities have one")
        } else {
            e
        };
        let records = self
            .store
            .read_range(&e.key, from, max.clamp(1, MAX_PEEK))
            .await
            .map_err(InspectError::Store)?;
        let now = now_ms();
        Ok(records
            .into_iter()
            .map(|record| Peeked {
                state: e.message_state(record.seq, now),
                record,
            })
            .collect())
    }

    /// Resubmits dead-lettered message `seq` of `path`'s dead-letter queue to `path` (see
    /// [`Entity::resubmit_dead_letter`]); the new sequence number.
    pub async fn resubmit(&self, path: &str, seq: u64) -> Result<u64, InspectError> {
        let e = self.inspected(path)?;
        // A queue numbers its own messages; a subscription's sequence numbers are its topic's.
        let target = self
            .send_target(path)
            .or_else(|| {
                let (topic, _) = e.path.rsplit_once("/subscriptions/")?;
                self.send_target(topic)
            })
            .ok_or_else(|| InspectError::UnknownEntity(path.to_owned()))?;
        e.resubmit_dead_letter(&self.store, &target, seq)
            .await
            .map_err(InspectError::Resubmit)
    }
}
