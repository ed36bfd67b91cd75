//! Service Bus delivery semantics for queues, topic subscriptions and their `$DeadLetterQueue` subqueues.
//!
//! Owns the in-memory state of each entity (an index of available messages in sequence order, deferred
//! messages, peek-locks, duplicate ids, size) and the rules: TTL, scheduled enqueue, lock duration and expiry,
//! max delivery count → dead letter, deferral (out of ordinary receives until received by sequence number),
//! duplicate detection, correlation filters. Bodies and properties are not kept here: a
//! [`Slot`] per message is, and the message is read back from [`Store`] when delivered, so memory does not
//! grow with the backlog's bytes. Every state change that must survive a restart goes to [`Store`] and the
//! caller answers only after it committed. It does not parse HTTP.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::props::{PropValue, now_ms};
use crate::store::{Meta, Op, Record, Slot, Store};

/// Prefix of Dataverse claim property names, used by the filter shorthand.
pub const CLAIMS_PREFIX: &str = "http://schemas.microsoft.com/xrm/2011/Claims/";

/// Messages leaving an entity for its dead-letter queue: (slot, DeadLetterReason, description).
type Moves = Vec<(Slot, String, String)>;

/// Delivery settings of one receivable entity, in milliseconds.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Peek-lock duration.
    pub lock_ms: i64,
    /// Default TTL (None = forever).
    pub default_ttl_ms: Option<i64>,
    /// Deliveries before dead-lettering.
    pub max_delivery: u32,
    /// Dead-letter expired messages instead of dropping them.
    pub dead_letter_on_expiration: bool,
    /// Size quota in bytes.
    pub max_bytes: u64,
}

/// A queue, subscription or dead-letter subqueue that receivers read from.
pub struct Entity {
    /// Path as configured (`orders`, `orders/$DeadLetterQueue`, `events/subscriptions/accounts`).
    pub path: String,
    /// Store key (lower-case path).
    pub key: Arc<str>,
    /// Delivery settings (changed at runtime by the management API).
    settings: RwLock<Settings>,
    /// The dead-letter subqueue (None for a dead-letter queue itself).
    pub dlq: Option<Arc<Entity>>,
    /// The subscription's rules: a message is copied when any one matches (Azure's rule semantics). A queue
    /// has one rule that matches everything.
    filters: RwLock<Vec<Filter>>,
    /// Set when the entity was deleted through the management API: receivers still holding it stop.
    deleted: AtomicBool,
    state: Mutex<State>,
    notify: Notify,
}

/// One rule's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every entry must equal the message's property as text (see [`property_text`]); empty = TrueFilter.
    Match(BTreeMap<String, String>),
    /// Azure's FalseFilter (`1=0`): matches nothing.
    Never,
}

impl Filter {
    fn matches(&self, meta: &Meta) -> bool {
        match self {
            Filter::Never => false,
            Filter::Match(m) => m
                .iter()
                .all(|(k, want)| property_text(meta, k).is_some_and(|v| &v == want)),
        }
    }
}

#[derive(Default)]
struct State {
    available: BTreeMap<u64, Slot>,
    /// Deferred messages: never handed out by an ordinary receive, only by [`Entity::receive_deferred`].
    deferred: BTreeMap<u64, Slot>,
    locked: HashMap<Uuid, Locked>,
    next_lock_expiry: i64,
    /// Earliest expiry among `deferred` (i64::MAX when none), so receives look for expired deferred
    /// messages only when one is due rather than walking the deferred set every time.
    next_deferred_expiry: i64,
    bytes: u64,
}

struct Locked {
    slot: Slot,
    /// The MessageId (a lock URI may name it instead of the sequence number); known once the message was
    /// read back, which happens before its lock token is handed out.
    message_id: Option<String>,
    until_ms: i64,
    /// Received by sequence number while deferred: an abandon or an expired lock returns it to the
    /// deferred set, not to the receivable one (as Service Bus does).
    deferred: bool,
}

/// A message handed to a receiver.
pub struct Delivered {
    /// The record with its updated delivery count.
    pub rec: Record,
    /// Lock token and expiry (peek-lock only).
    pub lock: Option<(Uuid, i64)>,
}

/// An entity's message counts (Azure's `ActiveMessageCount` and `ScheduledMessageCount`; a dead-letter
/// queue's `active` is the parent's `DeadLetterMessageCount`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Deliverable now, locked by a receiver or deferred (locked and deferred ones are still active in
    /// Azure's count).
    pub active: u64,
    /// Waiting for their `ScheduledEnqueueTimeUtc`.
    pub scheduled: u64,
    /// Of `active`, peek-locked by a receiver now (deferred messages received by sequence number included).
    pub locked: u64,
    /// Of `active`, deferred (locked or not): received only by sequence number.
    pub deferred: u64,
}

/// Where one message is, for a peek.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// Available to receivers.
    Active,
    /// Waiting for its scheduled enqueue time.
    Scheduled,
    /// Peek-locked by a receiver.
    Locked,
    /// Deferred: received only by sequence number (also while such a receive holds its lock).
    Deferred,
}

impl MessageState {
    /// Service Bus's name of the state (`Active`, `Scheduled`, `Deferred`), or `Locked`.
    pub fn name(self) -> &'static str {
        match self {
            MessageState::Active => "Active",
            MessageState::Scheduled => "Scheduled",
            MessageState::Locked => "Locked",
            MessageState::Deferred => "Deferred",
        }
    }
}

/// Why a receive by sequence number failed.
#[derive(Debug, PartialEq, Eq)]
pub enum DeferredError {
    /// This sequence number is not a deferred message of the entity that is free to lock: never deferred,
    /// settled, expired, or locked by another receive (Service Bus's `MessageNotFound`). Nothing was taken.
    NotFound(u64),
}

impl std::fmt::Display for DeferredError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeferredError::NotFound(seq) => write!(
                f,
                "Failed to lock one or more specified messages. Either the message is already locked or does not exist. Sequence number: {seq}"
            ),
        }
    }
}

/// Why a dead-letter resubmit failed.
#[derive(Debug)]
pub enum ResubmitError {
    /// The entity is itself a dead-letter queue.
    NoDeadLetterQueue,
    /// No message with this sequence number in the dead-letter queue (resubmitted, received, or never
    /// there).
    NotFound(u64),
    /// A receiver holds a peek-lock on it: it is theirs to settle first.
    Locked(u64),
    /// The store failed; nothing changed.
    Store(anyhow::Error),
}

impl std::fmt::Display for ResubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResubmitError::NoDeadLetterQueue => {
                f.write_str("a dead-letter queue has no dead-letter queue of its own")
            }
            ResubmitError::NotFound(seq) => write!(
                f,
                "no dead-lettered message with sequence number {seq} (it may have been resubmitted or received already)"
            ),
            ResubmitError::Locked(seq) => write!(
                f,
                "dead-lettered message {seq} is locked by a receiver; settle or abandon it first"
            ),
            ResubmitError::Store(e) => write!(f, "the store failed, nothing changed: {e:#}"),
        }
    }
}

/// How to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Destructive read.
    ReceiveAndDelete,
    /// Non-destructive read with a lock.
    PeekLock,
}

/// Why a lock operation failed.
#[derive(Debug, PartialEq, Eq)]
pub enum LockError {
    /// No live lock with that token (never existed, completed, expired, or the id part does not match).
    NotFound,
}

/// A queue or topic: where sends go. Holds the sequence counter and duplicate-detection ids.
pub struct SendTarget {
    /// Path as configured.
    pub path: String,
    /// Store key.
    pub key: Arc<str>,
    /// Receivers that get a copy (the queue itself, or the topic's subscriptions; changed at runtime by
    /// the management API).
    receivers: RwLock<Vec<Arc<Entity>>>,
    /// Set when the entity was deleted through the management API: senders still holding it fail.
    deleted: AtomicBool,
    /// Duplicate detection window, ms.
    pub dedup_window_ms: Option<i64>,
    /// Topic-level default TTL (queues carry theirs in [`Settings`]).
    pub default_ttl_ms: Option<i64>,
    /// Whether this is a topic (affects error texts only).
    pub is_topic: bool,
    seq: Mutex<SeqState>,
}

/// How often expired duplicate-detection ids are deleted from the store (piggybacked on sends).
const DEDUP_SWEEP_EVERY_MS: i64 = 60_000;

#[derive(Default)]
struct SeqState {
    next: u64,
    last_dedup_sweep: i64,
    dedup: HashMap<String, i64>,
    dedup_order: VecDeque<(i64, String)>,
}

/// A message to enqueue.
pub struct NewMessage {
    /// Properties.
    pub meta: Meta,
    /// Body.
    pub body: Bytes,
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// The entity quota would be exceeded (Azure: 403 QuotaExceeded).
    QuotaExceeded(String),
    /// The store failed.
    Store(anyhow::Error),
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave State half-updated in a way that matters more than
    // refusing service would, so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Entity {
    /// A receivable entity; `dlq` is created by the caller for non-DLQ entities. `filter` is its one rule
    /// (empty: everything); [`Entity::set_filters`] replaces the rules.
    pub fn new(
        path: String,
        settings: Settings,
        dlq: Option<Arc<Entity>>,
        filter: BTreeMap<String, String>,
    ) -> Entity {
        Entity {
            key: path.to_ascii_lowercase().into(),
            path,
            settings: RwLock::new(settings),
            dlq,
            filters: RwLock::new(vec![Filter::Match(filter)]),
            deleted: AtomicBool::new(false),
            state: Mutex::new(State {
                next_lock_expiry: i64::MAX,
                next_deferred_expiry: i64::MAX,
                ..State::default()
            }),
            notify: Notify::new(),
        }
    }

    /// How many messages an entity holds now, as the console and `/metrics` report them.
    pub fn depth(&self, now: i64) -> Depth {
        let st = lock(&self.state);
        // One pass over the index (about 40 bytes a message): a scrape of a 150,000-message backlog
        // holds the entity's lock for about a millisecond.
        let scheduled = st.available.values().filter(|s| s.visible_ms > now).count() as u64;
        let locked = st.locked.len() as u64;
        let deferred = st.deferred.len() as u64;
        Depth {
            active: st.available.len() as u64 - scheduled + locked + deferred,
            scheduled,
            locked,
            deferred: deferred + st.locked.values().filter(|l| l.deferred).count() as u64,
        }
    }

    /// Where message `seq` is now: available, waiting for its scheduled time, locked by a receiver or
    /// deferred (a deferred message received by sequence number stays Deferred while locked, as Service
    /// Bus's peek reports it); None when this entity no longer holds it.
    pub fn message_state(&self, seq: u64, now: i64) -> Option<MessageState> {
        let st = lock(&self.state);
        if let Some(s) = st.available.get(&seq) {
            return Some(if s.visible_ms > now {
                MessageState::Scheduled
            } else {
                MessageState::Active
            });
        }
        if st.deferred.contains_key(&seq) {
            return Some(MessageState::Deferred);
        }
        st.locked.values().find(|l| l.slot.seq == seq).map(|l| {
            if l.deferred {
                MessageState::Deferred
            } else {
                MessageState::Locked
            }
        })
    }

    /// Resubmits dead-lettered message `seq` (in this entity's dead-letter queue) to this entity, as Service
    /// Bus Explorer's "resubmit" does: a new message with the same body, broker and custom properties
    /// (without `DeadLetterReason` / `DeadLetterErrorDescription`), a new sequence number from `target`'s
    /// counter, delivery count 0, enqueued now and visible now, its TimeToLive counted from now. The
    /// dead-letter copy is deleted and the new one inserted in one store transaction, so a crash leaves
    /// exactly one of them. Duplicate detection is not applied: the operator asked for this message again.
    /// Returns the new sequence number.
    pub async fn resubmit_dead_letter(
        &self,
        store: &Store,
        target: &SendTarget,
        seq: u64,
    ) -> Result<u64, ResubmitError> {
        let dlq = self.dlq.as_ref().ok_or(ResubmitError::NoDeadLetterQueue)?;
        // A dead letter a receiver deferred is resubmitted as well: the operator asked for it.
        let (slot, was_deferred) = {
            let mut st = lock(&dlq.state);
            let found = match st.available.remove(&seq) {
                Some(slot) => Some((slot, false)),
                None => st.deferred.remove(&seq).map(|slot| (slot, true)),
            };
            match found {
                Some((slot, d)) => {
                    st.bytes = st.bytes.saturating_sub(slot.size);
                    (slot, d)
                }
                None if st.locked.values().any(|l| l.slot.seq == seq) => {
                    return Err(ResubmitError::Locked(seq));
                }
                None => return Err(ResubmitError::NotFound(seq)),
            }
        };
        // Nothing changed: the message goes back where it was.
        let put_back = |slot: Slot| {
            if was_deferred {
                let mut st = lock(&dlq.state);
                st.bytes += slot.size;
                Self::insert_deferred(&mut st, slot);
            } else {
                dlq.insert_available([slot]);
            }
        };
        let new_seq = target.allocate_seq();
        let ttl_cap_ms = [self.settings().default_ttl_ms, target.default_ttl_ms]
            .into_iter()
            .flatten()
            .min();
        let op = Op::Resubmit {
            from: dlq.key.clone(),
            to: self.key.clone(),
            seq,
            new_seq,
            seq_key: target.key.clone(),
            now_ms: now_ms(),
            ttl_cap_ms,
        };
        match store.commit_take(vec![op]).await {
            Ok(mut taken) => match taken.pop().flatten() {
                Some(rec) => {
                    self.insert_available([rec.slot()]);
                    Ok(new_seq)
                }
                None => {
                    // Not in the file (yet): a dead-letter move queued a moment ago commits after this
                    // look. Nothing changed; the message stays where it was.
                    put_back(slot);
                    Err(ResubmitError::NotFound(seq))
                }
            },
            Err(e) => {
                put_back(slot);
                Err(ResubmitError::Store(e))
            }
        }
    }

    /// A dead-letter subqueue for `parent_path`: no expiry, no further dead-lettering.
    pub fn dead_letter(parent_path: &str, lock_ms: i64) -> Entity {
        let settings = Settings {
            lock_ms,
            default_ttl_ms: None,
            max_delivery: u32::MAX,
            dead_letter_on_expiration: false,
            max_bytes: u64::MAX,
        };
        Entity::new(
            format!("{parent_path}/$DeadLetterQueue"),
            settings,
            None,
            BTreeMap::new(),
        )
    }

    /// Puts loaded index entries back (start-up): those whose sequence number is in `deferred` into the
    /// deferred set, the others into the receivable one. Locks are not persisted, so a message locked at
    /// shutdown is available (or deferred) again.
    pub fn restore(&self, slots: Vec<Slot>, deferred: &HashSet<u64>) {
        let mut st = lock(&self.state);
        for s in slots {
            st.bytes += s.size;
            if deferred.contains(&s.seq) {
                Self::insert_deferred(&mut st, s);
            } else {
                st.available.insert(s.seq, s);
            }
        }
    }

    /// Whether a message passes one of this entity's rules.
    pub fn accepts(&self, meta: &Meta) -> bool {
        self.filters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|f| f.matches(meta))
    }

    /// The delivery settings now.
    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the delivery settings (management API update); the size quota and lock duration apply to
    /// the next send / lock.
    pub fn set_settings(&self, s: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Replaces the rules (management API: a rule created or deleted). No rule: the entity gets nothing.
    pub fn set_filters(&self, filters: Vec<Filter>) {
        *self.filters.write().unwrap_or_else(|p| p.into_inner()) = filters;
    }

    /// Marks the entity (and its dead-letter queue) deleted and wakes its waiting receivers, which then
    /// get [`Entity::deleted_error`].
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        if let Some(d) = &self.dlq {
            d.mark_deleted();
        }
    }

    /// Whether the management API deleted this entity.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }

    /// Messages available, locked or deferred now, of them scheduled, and their bytes (the management
    /// API's counts; Azure counts deferred messages as active).
    pub fn counts(&self, now: i64) -> (u64, u64, u64) {
        let st = lock(&self.state);
        let scheduled = st.available.values().filter(|s| s.visible_ms > now).count() as u64;
        let total = (st.available.len() + st.locked.len() + st.deferred.len()) as u64;
        (total, scheduled, st.bytes)
    }

    fn insert_available(&self, slots: impl IntoIterator<Item = Slot>) {
        let mut st = lock(&self.state);
        for s in slots {
            st.bytes += s.size;
            st.available.insert(s.seq, s);
        }
        drop(st);
        self.notify.notify_waiters();
    }

    /// Receives one message, waiting up to `timeout_ms` (0 = just look). Returns None when nothing arrived.
    /// Returns None early when `stop` turns true (shutdown).
    pub async fn receive(
        &self,
        store: &Store,
        mode: Mode,
        timeout_ms: i64,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Option<Delivered>> {
        let deadline = now_ms() + timeout_ms;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_deleted() {
                anyhow::bail!("The messaging entity '{}' has been deleted", self.path);
            }
            let now = now_ms();
            let (got, mut ops, moves, wake) = self.try_take(mode, now);
            ops.extend(self.move_to_dlq(moves));
            if let Some((slot, lock)) = got {
                ops.push(Op::Take {
                    entity: self.key.clone(),
                    seq: slot.seq,
                    delete: lock.is_none(),
                    count: slot.delivery_count,
                });
                let taken = store.commit_take(ops).await?.pop().flatten();
                if let Some(d) = self.delivered(slot, lock, taken) {
                    return Ok(Some(d));
                }
                continue;
            }
            store.submit(ops);
            if now >= deadline || *stop.borrow() {
                return Ok(None);
            }
            let until = deadline.min(wake);
            let sleep =
                tokio::time::sleep(std::time::Duration::from_millis((until - now).max(1) as u64));
            tokio::select! {
                _ = &mut notified => {}
                _ = sleep => {}
                _ = stop.changed() => return Ok(None),
            }
        }
    }

    /// The delivery of `slot` once the store read it back. A message the store no longer has (or cannot
    /// read) is dropped from memory (its lock too) and None returned: the receiver looks for the next one.
    fn delivered(
        &self,
        slot: Slot,
        lock_: Option<(Uuid, i64)>,
        taken: Option<Record>,
    ) -> Option<Delivered> {
        let mut st = lock(&self.state);
        let Some(mut rec) = taken else {
            if let Some((token, _)) = lock_
                && st.locked.remove(&token).is_some()
            {
                st.bytes = st.bytes.saturating_sub(slot.size);
            }
            return None;
        };
        rec.delivery_count = slot.delivery_count;
        if let Some((token, _)) = lock_
            && let Some(l) = st.locked.get_mut(&token)
        {
            l.message_id = rec.meta.broker.message_id.clone();
        }
        Some(Delivered { rec, lock: lock_ })
    }

    /// One attempt under the lock. Returns the slot chosen (with its lock when peek-locked), store ops,
    /// messages to dead-letter, and when to look again (earliest lock expiry or scheduled time).
    #[allow(clippy::type_complexity)]
    fn try_take(
        &self,
        mode: Mode,
        now: i64,
    ) -> (Option<(Slot, Option<(Uuid, i64)>)>, Vec<Op>, Moves, i64) {
        let mut ops = Vec::new();
        let mut moves = Vec::new();
        let mut st = lock(&self.state);
        self.expire_locks(&mut st, now, &mut moves);
        self.expire_deferred(&mut st, now, &mut ops, &mut moves);
        let mut expired = Vec::new();
        let mut chosen = None;
        let mut wake = i64::MAX;
        for (seq, r) in &st.available {
            if r.expires_ms <= now {
                expired.push(*seq);
            } else if r.visible_ms > now {
                wake = wake.min(r.visible_ms);
            } else {
                chosen = Some(*seq);
                break;
            }
        }
        for seq in expired {
            if let Some(r) = st.available.remove(&seq) {
                self.expired(&mut st, r, &mut ops, &mut moves);
            }
        }
        // The store op (delete or new delivery count) goes with the read-back, see `receive`.
        let got = chosen
            .and_then(|seq| st.available.remove(&seq))
            .map(|mut slot| {
                slot.delivery_count += 1;
                match mode {
                    Mode::ReceiveAndDelete => {
                        st.bytes = st.bytes.saturating_sub(slot.size);
                        (slot, None)
                    }
                    Mode::PeekLock => {
                        let until = now + self.settings().lock_ms;
                        (
                            slot,
                            Some((Self::lock_slot(&mut st, slot, until, false), until)),
                        )
                    }
                }
            });
        wake = wake.min(st.next_lock_expiry);
        (got, ops, moves, wake)
    }

    /// Returns expired locks to the queue, or marks them for dead-lettering when out of deliveries.
    fn expire_locks(&self, st: &mut State, now: i64, moves: &mut Moves) {
        if st.next_lock_expiry > now {
            return;
        }
        let expired: Vec<Uuid> = st
            .locked
            .iter()
            .filter(|(_, l)| l.until_ms <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            if let Some(l) = st.locked.remove(&t) {
                self.release(st, l.slot, l.deferred, moves);
            }
        }
        st.next_lock_expiry = st
            .locked
            .values()
            .map(|l| l.until_ms)
            .min()
            .unwrap_or(i64::MAX);
    }

    /// A message whose lock ended without completion goes back (to the deferred set when it was received
    /// by sequence number), or to the dead-letter queue when out of deliveries.
    fn release(&self, st: &mut State, rec: Slot, deferred: bool, moves: &mut Moves) {
        if rec.delivery_count >= self.settings().max_delivery && self.dlq.is_some() {
            st.bytes = st.bytes.saturating_sub(rec.size);
            let n = rec.delivery_count;
            moves.push((
                rec,
                "MaxDeliveryCountExceeded".into(),
                format!("Message could not be consumed after {n} delivery attempts."),
            ));
        } else if deferred {
            Self::insert_deferred(st, rec);
        } else {
            st.available.insert(rec.seq, rec);
        }
    }

    fn insert_deferred(st: &mut State, slot: Slot) {
        st.next_deferred_expiry = st.next_deferred_expiry.min(slot.expires_ms);
        st.deferred.insert(slot.seq, slot);
    }

    /// An expired message leaves the entity: to the dead-letter queue when the entity says so, else
    /// deleted.
    fn expired(&self, st: &mut State, slot: Slot, ops: &mut Vec<Op>, moves: &mut Moves) {
        st.bytes = st.bytes.saturating_sub(slot.size);
        if self.settings().dead_letter_on_expiration && self.dlq.is_some() {
            moves.push((
                slot,
                "TTLExpiredException".into(),
                "The message expired and was dead lettered.".into(),
            ));
        } else {
            ops.push(Op::Delete {
                entity: self.key.clone(),
                seq: slot.seq,
            });
        }
    }

    /// Deferred messages expire by their TTL as any other; looked for only once the earliest is due.
    fn expire_deferred(&self, st: &mut State, now: i64, ops: &mut Vec<Op>, moves: &mut Moves) {
        if st.next_deferred_expiry > now {
            return;
        }
        let expired: Vec<u64> = st
            .deferred
            .values()
            .filter(|s| s.expires_ms <= now)
            .map(|s| s.seq)
            .collect();
        for seq in expired {
            if let Some(slot) = st.deferred.remove(&seq) {
                self.expired(st, slot, ops, moves);
            }
        }
        st.next_deferred_expiry = st
            .deferred
            .values()
            .map(|s| s.expires_ms)
            .min()
            .unwrap_or(i64::MAX);
    }

    /// Moves messages to the dead-letter queue in memory and queues the store ops (fire-and-forget: if lost in
    /// a crash the message is back in its queue with its delivery count and is dead-lettered again). The
    /// store adds the dead-letter properties when it copies the row.
    fn move_to_dlq(&self, moves: Moves) -> Vec<Op> {
        let Some(dlq) = &self.dlq else { return vec![] };
        if moves.is_empty() {
            return vec![];
        }
        let mut ops = Vec::new();
        let mut slots = Vec::new();
        for (mut slot, reason, description) in moves {
            slot.expires_ms = i64::MAX;
            slot.size += (reason.len() + description.len()) as u64;
            ops.push(Op::DeadLetter {
                from: self.key.clone(),
                to: dlq.key.clone(),
                seq: slot.seq,
                reason,
                description,
            });
            slots.push(slot);
        }
        dlq.insert_available(slots);
        ops
    }

    /// The live lock `token`; `id` (a lock URI's sequence number or MessageId) must match when given — AMQP
    /// names a lock by its token alone.
    fn locked_mut<'a>(
        st: &'a mut State,
        id: Option<&str>,
        token: &str,
    ) -> Result<(Uuid, &'a mut Locked), LockError> {
        let token = Uuid::parse_str(token).map_err(|_| LockError::NotFound)?;
        let l = st.locked.get_mut(&token).ok_or(LockError::NotFound)?;
        let id_ok =
            id.is_none_or(|id| l.slot.seq.to_string() == id || l.message_id.as_deref() == Some(id));
        if id_ok {
            Ok((token, l))
        } else {
            Err(LockError::NotFound)
        }
    }

    /// Removes the live lock `token` (see [`Entity::locked_mut`]) and answers what it held.
    fn take_locked(st: &mut State, id: Option<&str>, token: &str) -> Result<Locked, LockError> {
        let (t, _) = Self::locked_mut(st, id, token)?;
        Ok(st.locked.remove(&t).expect("lock found above"))
    }

    /// Locks `slot` until `until` (peek-lock) and answers its lock token.
    fn lock_slot(st: &mut State, slot: Slot, until: i64, deferred: bool) -> Uuid {
        let token = Uuid::new_v4();
        st.locked.insert(
            token,
            Locked {
                slot,
                message_id: None,
                until_ms: until,
                deferred,
            },
        );
        st.next_lock_expiry = st.next_lock_expiry.min(until);
        token
    }

    /// Completes (deletes) a locked message.
    pub async fn complete(
        &self,
        store: &Store,
        id: Option<&str>,
        token: &str,
    ) -> anyhow::Result<Result<(), LockError>> {
        let (ops, moves) = {
            let mut st = lock(&self.state);
            let mut moves = Vec::new();
            self.expire_locks(&mut st, now_ms(), &mut moves);
            let l = match Self::take_locked(&mut st, id, token) {
                Ok(l) => l,
                Err(e) => {
                    drop(st);
                    store.submit(self.move_to_dlq(moves));
                    return Ok(Err(e));
                }
            };
            st.bytes = st.bytes.saturating_sub(l.slot.size);
            (
                vec![Op::Delete {
                    entity: self.key.clone(),
                    seq: l.slot.seq,
                }],
                moves,
            )
        };
        store.submit(self.move_to_dlq(moves));
        store.commit(ops).await?;
        Ok(Ok(()))
    }

    /// Abandons (unlocks) a locked message: it is available again, or dead-lettered when out of deliveries.
    pub async fn abandon(
        &self,
        store: &Store,
        id: Option<&str>,
        token: &str,
    ) -> anyhow::Result<Result<(), LockError>> {
        let mut moves = Vec::new();
        let res = {
            let mut st = lock(&self.state);
            self.expire_locks(&mut st, now_ms(), &mut moves);
            Self::take_locked(&mut st, id, token)
                .map(|l| self.release(&mut st, l.slot, l.deferred, &mut moves))
        };
        let ops = self.move_to_dlq(moves);
        store.commit(ops).await?;
        self.notify.notify_waiters();
        Ok(res)
    }

    /// Sets custom properties of a locked message — the "properties to modify" a client may send with an
    /// abandon or a defer — committed before it returns, so the settlement that follows keeps them. The
    /// entity's byte count is not adjusted (the change is a few bytes of properties).
    pub async fn modify_locked(
        &self,
        store: &Store,
        token: &str,
        props: Vec<(String, PropValue)>,
    ) -> anyhow::Result<Result<(), LockError>> {
        if props.is_empty() {
            return Ok(Ok(()));
        }
        let seq = {
            let mut st = lock(&self.state);
            match Self::locked_mut(&mut st, None, token) {
                Ok((_, l)) => l.slot.seq,
                Err(e) => return Ok(Err(e)),
            }
        };
        store
            .commit(vec![Op::SetProperties {
                entity: self.key.clone(),
                seq,
                props,
            }])
            .await?;
        Ok(Ok(()))
    }

    /// Defers a locked message (AMQP `modified` with `undeliverable-here`, `update-disposition` `defered`):
    /// it leaves the receivable set, keeps its delivery count, still counts and expires, and only
    /// [`Entity::receive_deferred`] hands it out again. Deferring a message received by sequence number
    /// leaves it deferred. Committed before it returns.
    pub async fn defer(
        &self,
        store: &Store,
        id: Option<&str>,
        token: &str,
    ) -> anyhow::Result<Result<(), LockError>> {
        let mut moves = Vec::new();
        let res = {
            let mut st = lock(&self.state);
            self.expire_locks(&mut st, now_ms(), &mut moves);
            Self::take_locked(&mut st, id, token).map(|l| {
                Self::insert_deferred(&mut st, l.slot);
                l.slot.seq
            })
        };
        let mut ops = self.move_to_dlq(moves);
        if let Ok(seq) = res {
            ops.push(Op::Defer {
                entity: self.key.clone(),
                seq,
            });
        }
        store.commit(ops).await?;
        Ok(res.map(|_| ()))
    }

    /// Receives deferred messages by sequence number (`com.microsoft:receive-by-sequence-number`): all of
    /// `seqs` or none — a number that is not a deferred message free to lock fails the whole request, as
    /// Service Bus does. Peek-lock locks them (their delivery count goes up; settled by lock token, an
    /// abandon leaves them deferred); receive-and-delete deletes them. In the order asked, duplicates
    /// once; a message the store can no longer read is left out.
    pub async fn receive_deferred(
        &self,
        store: &Store,
        seqs: &[u64],
        mode: Mode,
    ) -> anyhow::Result<Result<Vec<Delivered>, DeferredError>> {
        let now = now_ms();
        let mut ops = Vec::new();
        let mut moves = Vec::new();
        let mut taken = Vec::new();
        let missing = {
            let mut st = lock(&self.state);
            self.expire_locks(&mut st, now, &mut moves);
            self.expire_deferred(&mut st, now, &mut ops, &mut moves);
            let mut seen = HashSet::with_capacity(seqs.len());
            let wanted: Vec<u64> = seqs.iter().copied().filter(|s| seen.insert(*s)).collect();
            let missing = wanted
                .iter()
                .copied()
                .find(|s| !st.deferred.contains_key(s));
            if missing.is_none() {
                let lock_ms = self.settings().lock_ms;
                for seq in wanted {
                    let mut slot = st.deferred.remove(&seq).expect("checked above");
                    slot.delivery_count += 1;
                    let lock_ = match mode {
                        Mode::ReceiveAndDelete => {
                            st.bytes = st.bytes.saturating_sub(slot.size);
                            None
                        }
                        Mode::PeekLock => {
                            let until = now + lock_ms;
                            Some((Self::lock_slot(&mut st, slot, until, true), until))
                        }
                    };
                    taken.push((slot, lock_));
                }
            }
            missing
        };
        ops.extend(self.move_to_dlq(moves));
        if let Some(seq) = missing {
            store.commit(ops).await?;
            return Ok(Err(DeferredError::NotFound(seq)));
        }
        for (slot, lock_) in &taken {
            ops.push(Op::Take {
                entity: self.key.clone(),
                seq: slot.seq,
                delete: lock_.is_none(),
                count: slot.delivery_count,
            });
        }
        // One result per Take, in order (the other ops answer nothing).
        let mut records = store.commit_take(ops).await?.into_iter();
        Ok(Ok(taken
            .into_iter()
            .filter_map(|(slot, lock_)| self.delivered(slot, lock_, records.next().flatten()))
            .collect()))
    }

    /// Dead-letters a locked message at the client's request (AMQP `rejected` / `update-disposition`
    /// `suspended`), with the client's DeadLetterReason and DeadLetterErrorDescription. A dead-letter queue
    /// has no dead-letter queue of its own: there the message is completed, as Azure does.
    pub async fn dead_letter_locked(
        &self,
        store: &Store,
        token: &str,
        reason: String,
        description: String,
    ) -> anyhow::Result<Result<(), LockError>> {
        let mut moves = Vec::new();
        let slot = {
            let mut st = lock(&self.state);
            self.expire_locks(&mut st, now_ms(), &mut moves);
            Self::take_locked(&mut st, None, token).map(|l| {
                st.bytes = st.bytes.saturating_sub(l.slot.size);
                l.slot
            })
        };
        let res = match slot {
            Ok(slot) if self.dlq.is_some() => {
                moves.push((slot, reason, description));
                Ok(())
            }
            Ok(slot) => {
                store
                    .commit(vec![Op::Delete {
                        entity: self.key.clone(),
                        seq: slot.seq,
                    }])
                    .await?;
                Ok(())
            }
            Err(e) => Err(e),
        };
        store.commit(self.move_to_dlq(moves)).await?;
        Ok(res)
    }

    /// Takes out a message that is still waiting for its scheduled enqueue time and returns the store op
    /// that deletes it; None when there is none with that sequence number (already visible, received, or
    /// never scheduled here).
    pub fn cancel_scheduled(&self, seq: u64) -> Option<Op> {
        let mut st = lock(&self.state);
        let now = now_ms();
        let scheduled = st.available.get(&seq).is_some_and(|s| s.visible_ms > now);
        if !scheduled {
            return None;
        }
        let slot = st.available.remove(&seq)?;
        st.bytes = st.bytes.saturating_sub(slot.size);
        Some(Op::Delete {
            entity: self.key.clone(),
            seq,
        })
    }

    /// Renews a lock; returns the new LockedUntil (ms).
    pub fn renew(&self, store: &Store, id: Option<&str>, token: &str) -> Result<i64, LockError> {
        let now = now_ms();
        let mut moves = Vec::new();
        let res = {
            let mut st = lock(&self.state);
            self.expire_locks(&mut st, now, &mut moves);
            let until = now + self.settings().lock_ms;
            let r = Self::locked_mut(&mut st, id, token).map(|(_, l)| {
                l.until_ms = until;
                until
            });
            st.next_lock_expiry = st
                .locked
                .values()
                .map(|l| l.until_ms)
                .min()
                .unwrap_or(i64::MAX);
            r
        };
        store.submit(self.move_to_dlq(moves));
        res
    }
}

/// A property's text for filters: system properties by name (optionally `sys.`), custom properties by exact
/// name (optionally `user.`), then the Dataverse claim `CLAIMS_PREFIX + name`.
pub fn property_text(meta: &Meta, name: &str) -> Option<String> {
    let b = &meta.broker;
    // SQL-filter scopes: `user.X` is only a custom property, `sys.X` only a system property.
    let (name, user_only) = match name.strip_prefix("user.") {
        Some(n) => (n, true),
        None => (name, false),
    };
    let sys_name = if user_only {
        ""
    } else {
        name.strip_prefix("sys.").unwrap_or(name)
    };
    let sys = match sys_name {
        "Label" => Some(&b.label),
        "CorrelationId" => Some(&b.correlation_id),
        "MessageId" => Some(&b.message_id),
        "To" => Some(&b.to),
        "ReplyTo" => Some(&b.reply_to),
        "SessionId" => Some(&b.session_id),
        "ReplyToSessionId" => Some(&b.reply_to_session_id),
        "ContentType" => Some(&meta.content_type),
        _ => None,
    };
    if let Some(v) = sys {
        return v.clone();
    }
    // The exact name first (batch sends and AMQP keep names' case); then, ignoring ASCII case, a name
    // that arrived as an HTTP header: HTTP/1.1 header names are case-insensitive and the server hands
    // them over lower-cased, where Azure's front end keeps the sender's spelling, so a REST client's
    // `EntityLogicalName: "account"` still meets the filter `EntityLogicalName` as it does on Azure.
    let find = |n: &str| {
        let user = &meta.user;
        user.iter()
            .find(|(k, _)| k == n)
            .or_else(|| user.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v.as_text())
    };
    find(name).or_else(|| {
        if name.contains(':') {
            None
        } else {
            find(&format!("{CLAIMS_PREFIX}{name}"))
        }
    })
}

impl SendTarget {
    /// A send target over `receivers`, resuming at `next_seq`, with remembered duplicate ids.
    pub fn new(
        path: String,
        receivers: Vec<Arc<Entity>>,
        dedup_window_ms: Option<i64>,
        default_ttl_ms: Option<i64>,
        is_topic: bool,
        next_seq: u64,
        dedup: Vec<(String, i64)>,
    ) -> SendTarget {
        let mut s = SeqState {
            next: next_seq.max(1),
            ..SeqState::default()
        };
        let mut dedup = dedup;
        dedup.sort_by_key(|(_, e)| *e);
        for (id, exp) in dedup {
            s.dedup_order.push_back((exp, id.clone()));
            s.dedup.insert(id, exp);
        }
        SendTarget {
            key: path.to_ascii_lowercase().into(),
            path,
            receivers: RwLock::new(receivers),
            deleted: AtomicBool::new(false),
            dedup_window_ms,
            default_ttl_ms,
            is_topic,
            seq: Mutex::new(s),
        }
    }

    /// Takes the next sequence number (a resubmitted dead letter is a new message of this entity).
    pub fn allocate_seq(&self) -> u64 {
        let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let seq = s.next;
        s.next += 1;
        seq
    }

    /// The receivers that get a copy now.
    pub fn receivers(&self) -> Vec<Arc<Entity>> {
        self.receivers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds a subscription (management API); it gets messages sent from now on, as in Azure.
    pub fn add_receiver(&self, e: Arc<Entity>) {
        self.receivers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    /// Removes the subscription with store key `key`; returns it.
    pub fn remove_receiver(&self, key: &str) -> Option<Arc<Entity>> {
        let mut r = self.receivers.write().unwrap_or_else(|p| p.into_inner());
        let i = r.iter().position(|e| &*e.key == key)?;
        Some(r.remove(i))
    }

    /// Marks the queue or topic deleted (and every receiver of it).
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        for r in self.receivers() {
            r.mark_deleted();
        }
    }

    /// Whether the management API deleted this entity.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::SeqCst)
    }

    /// The next sequence number and the duplicate-detection ids still remembered (an update that turns
    /// duplicate detection on or off rebuilds the target and carries these over).
    pub fn sequence_state(&self) -> (u64, Vec<(String, i64)>) {
        let s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        (
            s.next,
            s.dedup.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        )
    }

    /// Raises the counter past restored messages (sequence numbers are never reused).
    pub fn observe_seq(&self, seq: u64) {
        let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        s.next = s.next.max(seq + 1);
    }

    /// Enqueues messages atomically: all are committed (and visible) or none. Duplicates within the window are
    /// accepted and dropped, as Azure does. Returns the sequence numbers given, one per message kept.
    pub async fn send(&self, store: &Store, msgs: Vec<NewMessage>) -> Result<Vec<u64>, SendError> {
        if self.is_deleted() {
            return Err(SendError::Store(anyhow::anyhow!(
                "The messaging entity '{}' has been deleted",
                self.path
            )));
        }
        let now = now_ms();
        let added: u64 = msgs.iter().map(|m| m.body.len() as u64).sum();
        // One snapshot for the whole send: a subscription added meanwhile gets the next send's messages.
        let receivers = self.receivers();
        for r in &receivers {
            let used = lock(&r.state).bytes;
            let max_bytes = r.settings().max_bytes;
            if used + added > max_bytes {
                return Err(SendError::QuotaExceeded(format!(
                    "The maximum entity size has been reached or exceeded for '{}'. Size of entity in bytes:{used}, Max entity size in bytes:{max_bytes}.",
                    r.path
                )));
            }
        }
        let mut ops = Vec::new();
        let mut per_receiver: Vec<Vec<Slot>> = vec![Vec::new(); receivers.len()];
        let mut seqs = Vec::new();
        {
            let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
            if self.dedup_window_ms.is_some() && now - s.last_dedup_sweep >= DEDUP_SWEEP_EVERY_MS {
                s.last_dedup_sweep = now;
                ops.push(Op::DedupExpire {
                    entity: self.key.clone(),
                    now_ms: now,
                });
            }
            while s.dedup_order.front().is_some_and(|(e, _)| *e <= now) {
                if let Some((_, id)) = s.dedup_order.pop_front() {
                    s.dedup.remove(&id);
                }
            }
            for mut m in msgs {
                let id = m
                    .meta
                    .broker
                    .message_id
                    .get_or_insert_with(|| Uuid::new_v4().simple().to_string())
                    .clone();
                if let Some(w) = self.dedup_window_ms {
                    if s.dedup.get(&id).is_some_and(|e| *e > now) {
                        continue;
                    }
                    s.dedup.insert(id.clone(), now + w);
                    s.dedup_order.push_back((now + w, id.clone()));
                    ops.push(Op::Dedup {
                        entity: self.key.clone(),
                        id,
                        expires_ms: now + w,
                    });
                }
                let seq = s.next;
                s.next += 1;
                seqs.push(seq);
                let meta = Arc::new(m.meta);
                let visible = meta
                    .broker
                    .scheduled_enqueue_time_utc
                    .map_or(now, |t| (t * 1000).max(now));
                for (i, r) in receivers.iter().enumerate() {
                    if !r.accepts(&meta) {
                        continue;
                    }
                    let ttl = [
                        meta.broker.time_to_live.map(|t| (t * 1000.0) as i64),
                        r.settings().default_ttl_ms,
                        self.default_ttl_ms,
                    ]
                    .into_iter()
                    .flatten()
                    .min();
                    let rec = Record {
                        seq,
                        enqueued_ms: now,
                        visible_ms: visible,
                        expires_ms: ttl.map_or(i64::MAX, |t| visible.saturating_add(t)),
                        delivery_count: 0,
                        meta: meta.clone(),
                        body: m.body.clone(),
                    };
                    per_receiver[i].push(rec.slot());
                    ops.push(Op::Insert {
                        entity: r.key.clone(),
                        rec,
                        seq_key: Some(self.key.clone()),
                    });
                }
            }
        }
        store.commit(ops).await.map_err(SendError::Store)?;
        for (r, slots) in receivers.iter().zip(per_receiver) {
            if !slots.is_empty() {
                r.insert_available(slots);
            }
        }
        Ok(seqs)
    }

    /// Cancels a scheduled message in every receiver that holds a copy; false when none did.
    pub async fn cancel_scheduled(&self, store: &Store, seq: u64) -> anyhow::Result<bool> {
        let ops: Vec<Op> = self
            .receivers()
            .iter()
            .filter_map(|r| r.cancel_scheduled(seq))
            .collect();
        let found = !ops.is_empty();
        store.commit(ops).await?;
        Ok(found)
    }
}
