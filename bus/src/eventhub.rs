//! Event Hubs: partitions, partition choice and the weft read endpoint's data.
//!
//! Owns offset allocation per partition and the partition-key hash (the Azure SDKs' lookup3 resolver).
//! Events are durable in the store and read back from it by offset; events past the hub's retention are purged
//! about once a minute, piggybacked on sends. It does not parse HTTP.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    retention_ms: i64,
    last_purge: AtomicI64,
    created_ms: i64,
}

/// A partition's runtime information, as Event Hubs' `$management` `READ` of `com.microsoft:partition`
/// reports it (offsets are sequence numbers in weft).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionInfo {
    /// Sequence number of the oldest retained event (the next one to be written when empty).
    pub begin_sequence_number: i64,
    /// Sequence number of the newest event; -1 when nothing was ever written.
    pub last_enqueued_sequence_number: i64,
    /// Enqueue time of the newest event (ms since the epoch); 0 when the partition is empty.
    pub last_enqueued_time_ms: i64,
    /// No retained event.
    pub is_empty: bool,
}

/// How often retention purges run (piggybacked on sends).
const PURGE_EVERY_MS: i64 = 60_000;

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

/// Partition for a key, as the Azure SDKs' client-side resolvers compute it (the .NET/Java
/// `PartitionResolver`, written to match the service): Bob Jenkins' lookup3 `hashlittle2` over the key's UTF-8
/// bytes with both seeds 0, folded to a signed 16-bit value `(short)(c ^ b)`, then `|hash % count|` with a
/// truncating remainder.
pub fn partition_for_key(key: &str, partitions: usize) -> usize {
    let h = partition_key_hash(key) as i32;
    (h % partitions as i32).unsigned_abs() as usize
}

/// The signed 16-bit hash the SDKs use for partition keys (0 for an empty key).
pub fn partition_key_hash(key: &str) -> i16 {
    if key.is_empty() {
        return 0;
    }
    let (c, b) = lookup3(key.as_bytes());
    ((c ^ b) & 0xffff) as u16 as i16
}

/// lookup3 `hashlittle2` with seeds 0, 0: returns (c, b).
fn lookup3(data: &[u8]) -> (u32, u32) {
    let word = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    let init = 0xdead_beef_u32.wrapping_add(data.len() as u32);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut k = data;
    while k.len() > 12 {
        a = a.wrapping_add(word(&k[0..4]));
        b = b.wrapping_add(word(&k[4..8]));
        c = c.wrapping_add(word(&k[8..12]));
        mix(&mut a, &mut b, &mut c);
        k = &k[12..];
    }
    if k.is_empty() {
        return (c, b);
    }
    // The last 1–12 bytes, zero-padded: adding the padding's zeros is what lookup3's tail switch does.
    let mut tail = [0u8; 12];
    tail[..k.len()].copy_from_slice(k);
    a = a.wrapping_add(word(&tail[0..4]));
    b = b.wrapping_add(word(&tail[4..8]));
    c = c.wrapping_add(word(&tail[8..12]));
    final_mix(&mut a, &mut b, &mut c);
    (c, b)
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

impl Hub {
    /// A hub whose partitions resume at the stored offsets, keeping events `retention_ms`.
    pub fn new(name: String, count: u32, retention_ms: i64, store: &Store) -> anyhow::Result<Hub> {
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
            retention_ms,
            last_purge: AtomicI64::new(0),
            created_ms: now_ms(),
        })
    }

    /// When this bus started serving the hub (ms since the epoch): the hub's `created_at`, since weft's
    /// hubs come from configuration and have no creation event of their own.
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// The offset the next event of partition `p` gets (where a reader asking for "latest" starts).
    pub fn next_offset(&self, p: usize) -> u64 {
        *self.partitions[p]
            .next
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Partition `p`'s retained range and newest event, read from the store.
    pub async fn partition_info(&self, store: &Store, p: usize) -> anyhow::Result<PartitionInfo> {
        let key = &self.partitions[p].key;
        let first = store.read_range(key, 0, 1).await?.into_iter().next();
        let last = store.last(key).await?;
        Ok(match (first, last) {
            (Some(first), Some(last)) => PartitionInfo {
                begin_sequence_number: first.seq as i64,
                last_enqueued_sequence_number: last.seq as i64,
                last_enqueued_time_ms: last.enqueued_ms,
                is_empty: false,
            },
            _ => {
                let next = self.next_offset(p) as i64;
                PartitionInfo {
                    begin_sequence_number: next,
                    last_enqueued_sequence_number: next - 1,
                    last_enqueued_time_ms: 0,
                    is_empty: true,
                }
            }
        })
    }

    /// The offset of partition `p`'s first event enqueued after `ms` (at or after when `inclusive`), or
    /// the next offset when there is none yet.
    pub async fn offset_after_time(
        &self,
        store: &Store,
        p: usize,
        ms: i64,
        inclusive: bool,
    ) -> anyhow::Result<u64> {
        let found = store
            .first_enqueued_after(&self.partitions[p].key, ms, inclusive)
            .await?;
        Ok(found.unwrap_or_else(|| self.next_offset(p)))
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
        let last = self.last_purge.load(Ordering::Relaxed);
        if now - last >= PURGE_EVERY_MS
            && self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let before_ms = now - self.retention_ms;
            store.submit(
                self.partitions
                    .iter()
                    .map(|p| Op::PurgeBefore {
                        entity: p.key.clone(),
                        before_ms,
                    })
                    .collect(),
            );
        }
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

    /// The Azure SDK partition-key hash vectors (azure-sdk-for-python `test_partition_resolver.py`) match.
    #[test]
    fn sdk_partition_key_vectors() {
        let vectors: [(&str, i16); 11] = [
            ("7", -15263),
            ("7149583486996073602", 12977),
            ("FWfAT", -22341),
            ("sOdeEAsyQoEuEFPGerWO", -6503),
            (
                "FAyAIctPeCgmiwLKbJcyswoHglHVjQdvtBowLACDNORsYvOcLddNJYDmhAVkbyLOrHTKLneMNcbgWVlasVywOByANjs",
                5226,
            ),
            (
                "1XYM6!(7(lF5wq4k4m*e$Nc!1ezLJv*1YK1Y-C^*&B$O)lq^iUkG(TNzXG;Zi#z2Og*Qq0#^*k):vXh$3,C7We7%W0meJ;b3,rQCg^J;^twXgs5E$$hWKxqp",
                23950,
            ),
            (
                "E(x;RRIaQcJs*P;D&jTPau-4K04oqr:lF6Z):ERpo&;9040qyV@G1_c9mgOs-8_8/10Fwa-7b7-yP!T-!IH&968)FWuI;(^g$2fN;)HJ^^yTn:",
                -29304,
            ),
            ("!c*_!I@1^c", 15372),
            ("p4*!jioeO/z-!-;w:dh", -3104),
            ("$0cb", 26269),
            ("-4189260826195535198", 453),
        ];
        for (k, want) in vectors {
            assert_eq!(partition_key_hash(k), want, "{k}");
        }
        // |-15263 % 4| = 3 with a truncating remainder (.NET/Java), not Python's floored 1.
        assert_eq!(partition_for_key("7", 4), 3);
        assert_eq!(partition_key_hash(""), 0);
        let hits: std::collections::HashSet<usize> = (0..64)
            .map(|i| partition_for_key(&format!("k{i}"), 4))
            .collect();
        assert_eq!(hits.len(), 4);
    }
}
