//! Event Hubs: partitions, partition choice and the weft read endpoint's data.
//!
//! Owns offset allocation per partition and the partition-key hash. Events are durable in the store and read
//! back from it by offset; they are never deleted (no retention sweep yet). It does not parse HTTP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::props::now_ms;
use crate::store::{Meta, Op, Record, Store};

/// One partition: its offset counter and readers' wake-up.
pub struct Partition {
    /// Store key `hub/partitions/N`.
    pub key: Arc<str>,
    next: Mutex<u64>,
    notify: Notify,
}

/// An Event Hub.
pub struct Hub {
    /// Name as configured.
    pub name: String,
    /// Partitions `0..n`.
    pub partitions: Vec<Partition>,
    round_robin: AtomicUsize,
}

/// Where an event goes.
#[derive(Clone, Copy)]
pub enum Route<'a> {
    /// `/partitions/{id}/messages`.
    Partition(usize),
    /// `/publishers/{id}/messages`: hashed like a partition key.
    Publisher(&'a str),
    /// `/messages`: by PartitionKey if set, else round-robin.
    Any,
}

/// Stable partition for a key: first 8 bytes of SHA-256 of the UTF-8 key, big-endian, modulo the count.
/// (Azure's service-side hash is unpublished; this one is stable across runs and versions of weft.)
pub fn partition_for_key(key: &str, partitions: usize) -> usize {
    let d = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) % partitions as u64) as usize
}

impl Hub {
    /// A hub whose partitions resume at the stored offsets.
    pub fn new(name: String, count: u32, store: &Store) -> anyhow::Result<Hub> {
        let partitions = (0..count)
            .map(|p| {
                let key: Arc<str> = format!("{}/partitions/{p}", name.to_ascii_lowercase()).into();
                let next = crate::store::partition_next(store, &key)?;
                Ok(Partition {
                    key,
                    next: Mutex::new(next),
                    notify: Notify::new(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Hub {
            name,
            partitions,
            round_robin: AtomicUsize::new(0),
        })
    }

    /// Picks the partition index for a send; None when an explicit partition does not exist.
    pub fn pick(&self, route: Route<'_>, meta: &Meta) -> Option<usize> {
        let n = self.partitions.len();
        match route {
            Route::Partition(p) => (p < n).then_some(p),
            Route::Publisher(id) => Some(partition_for_key(id, n)),
            Route::Any => Some(match &meta.broker.partition_key {
                Some(k) => partition_for_key(k, n),
                None => self.round_robin.fetch_add(1, Ordering::Relaxed) % n,
            }),
        }
    }

    /// Appends events; returns (partition, offset) per event after the commit.
    pub async fn send(
        &self,
        store: &Store,
        events: Vec<(usize, Meta, bytes::Bytes)>,
    ) -> anyhow::Result<Vec<(usize, u64)>> {
        let now = now_ms();
        let mut placed = Vec::with_capacity(events.len());
        let mut pendings = Vec::new();
        // Offsets are allocated and enqueued to the writer under the partition lock so commit order equals
        // offset order: a reader never sees offset n+1 committed before n.
        let mut by_partition: Vec<Vec<(Meta, bytes::Bytes)>> =
            (0..self.partitions.len()).map(|_| vec![]).collect();
        let mut order = Vec::new();
        for (p, meta, body) in events {
            order.push(p);
            by_partition[p].push((meta, body));
        }
        let mut offsets: Vec<Vec<u64>> = vec![vec![]; self.partitions.len()];
        for (p, evs) in by_partition.into_iter().enumerate() {
            if evs.is_empty() {
                continue;
            }
            let part = &self.partitions[p];
            let mut next = part.next.lock().unwrap_or_else(|e| e.into_inner());
            let ops = evs
                .into_iter()
                .map(|(meta, body)| {
                    let rec = Record {
                        seq: *next,
                        enqueued_ms: now,
                        visible_ms: now,
                        expires_ms: i64::MAX,
                        delivery_count: 0,
                        meta: Arc::new(meta),
                        body,
                    };
                    offsets[p].push(*next);
                    *next += 1;
                    Op::Insert {
                        entity: part.key.clone(),
                        rec,
                        seq_key: Some(part.key.clone()),
                    }
                })
                .collect();
            pendings.push(store.enqueue(ops));
        }
        for pending in pendings {
            pending.wait().await?;
        }
        let mut cursor = vec![0usize; self.partitions.len()];
        for p in order {
            placed.push((p, offsets[p][cursor[p]]));
            cursor[p] += 1;
        }
        for (p, offs) in offsets.iter().enumerate() {
            if !offs.is_empty() {
                self.partitions[p].notify.notify_waiters();
            }
        }
        Ok(placed)
    }

    /// Reads up to `max` events of partition `p` from `offset`, waiting up to `timeout_ms` for the first one.
    pub async fn read(
        &self,
        store: &Store,
        p: usize,
        offset: u64,
        max: usize,
        timeout_ms: i64,
    ) -> anyhow::Result<Vec<Record>> {
        let part = &self.partitions[p];
        let deadline = now_ms() + timeout_ms;
        loop {
            let notified = part.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let recs = store.read_range(&part.key, offset, max).await?;
            let now = now_ms();
            if !recs.is_empty() || now >= deadline {
                return Ok(recs);
            }
            let sleep =
                tokio::time::sleep(std::time::Duration::from_millis((deadline - now) as u64));
            tokio::select! {
                _ = &mut notified => {}
                _ = sleep => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The partition-key hash is deterministic and spreads keys over all partitions.
    #[test]
    fn stable_partition_hash() {
        let a = partition_for_key("account", 4);
        assert_eq!(a, partition_for_key("account", 4));
        let hits: std::collections::HashSet<usize> = (0..64)
            .map(|i| partition_for_key(&format!("k{i}"), 4))
            .collect();
        assert_eq!(hits.len(), 4);
    }
}
