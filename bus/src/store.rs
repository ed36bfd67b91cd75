//! SQLite persistence of messages, events, sequence counters and duplicate-detection ids.
//!
//! Owns the database file and the single writer thread. Group commit: every request's writes are queued to
//! the writer, which drains everything waiting into one transaction and one fsync (WAL, `synchronous=FULL`),
//! then answers each request. Callers reply to clients only after their batch committed, so a restart loses
//! nothing acknowledged. This module knows nothing about HTTP or about delivery rules.
//!
//! Message bodies and properties live only here: the broker keeps a small [`Slot`] per message and reads a
//! message back ([`Op::Take`]) when it delivers it, through the writer, so the read sees every write queued
//! before it (a dead-letter move submitted a moment earlier included).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use anyhow::Context as _;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::oneshot;

use crate::props::{BrokerProps, PropValue};

/// What travels with a message besides its body; stored as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// Content-Type as sent.
    pub content_type: Option<String>,
    /// Settable broker properties.
    pub broker: BrokerProps,
    /// Custom properties in arrival order.
    pub user: Vec<(String, PropValue)>,
}

impl Meta {
    /// Approximate size of the properties: names and values as text plus a small fixed overhead.
    pub fn approx_len(&self) -> usize {
        let b = &self.broker;
        let strings = [
            &self.content_type,
            &b.message_id,
            &b.correlation_id,
            &b.session_id,
            &b.label,
            &b.reply_to,
            &b.to,
            &b.reply_to_session_id,
            &b.partition_key,
        ];
        let user: usize = self
            .user
            .iter()
            .map(|(k, v)| {
                k.len()
                    + match v {
                        PropValue::String(s) => s.len(),
                        _ => 16,
                    }
            })
            .sum();
        64 + strings
            .iter()
            .map(|s| s.as_ref().map_or(0, String::len))
            .sum::<usize>()
            + user
    }
}

/// A stored message or event.
#[derive(Debug, Clone)]
pub struct Record {
    /// Sequence number (queues) or offset (event hub partitions).
    pub seq: u64,
    /// Enqueue time, ms since epoch.
    pub enqueued_ms: i64,
    /// Not deliverable before this time (scheduled messages).
    pub visible_ms: i64,
    /// Expiry, ms since epoch (i64::MAX = never).
    pub expires_ms: i64,
    /// Deliveries so far.
    pub delivery_count: u32,
    /// Properties.
    pub meta: Arc<Meta>,
    /// Body bytes, stored verbatim.
    pub body: Bytes,
}

impl Record {
    /// Bytes counted against entity quotas: body plus the properties' text (an estimate computed without
    /// serialising, because it runs on every enqueue and dequeue).
    pub fn size(&self) -> usize {
        self.body.len() + self.meta.approx_len()
    }

    /// The in-memory index entry of this record.
    pub fn slot(&self) -> Slot {
        Slot {
            seq: self.seq,
            visible_ms: self.visible_ms,
            expires_ms: self.expires_ms,
            delivery_count: self.delivery_count,
            size: self.size() as u64,
        }
    }
}

/// What the broker keeps in memory per available or locked message (about 40 bytes): enough to choose,
/// expire and count it; the body and properties stay in SQLite until it is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Sequence number.
    pub seq: u64,
    /// Not deliverable before this time (scheduled messages).
    pub visible_ms: i64,
    /// Expiry, ms since epoch (i64::MAX = never).
    pub expires_ms: i64,
    /// Deliveries so far.
    pub delivery_count: u32,
    /// Bytes counted against the entity quota ([`Record::size`] at send; body and properties' stored
    /// lengths after a restart).
    pub size: u64,
}

/// One write. `entity` is the lower-cased store key (`orders`, `orders/$deadletterqueue`, `t/subscriptions/s`,
/// `hub/partitions/0`).
pub enum Op {
    /// Insert a message or event and raise the `seq_key` counter past `rec.seq`.
    Insert {
        /// store key
        entity: Arc<str>,
        /// the record
        rec: Record,
        /// counter that allocated `rec.seq` (the queue, the topic, the partition); None for dead-letter copies
        seq_key: Option<Arc<str>>,
    },
    /// Mark a message deferred (Service Bus deferral): it stays in its entity, out of ordinary receives,
    /// until a receive by sequence number settles it. Nothing happens when the row is gone.
    Defer {
        /// store key
        entity: Arc<str>,
        /// sequence number
        seq: u64,
    },
    /// Set custom properties of a message (Service Bus's "properties to modify" with an abandon or a
    /// defer): each replaces the property of that name or is added. Nothing happens when the row is gone.
    SetProperties {
        /// store key
        entity: Arc<str>,
        /// sequence number
        seq: u64,
        /// name and value of each property set
        props: Vec<(String, PropValue)>,
    },
    /// Delete a message.
    Delete {
        /// store key
        entity: Arc<str>,
        /// sequence number
        seq: u64,
    },
    /// Read a message back for delivery and, in the same transaction, delete it (receive-and-delete) or
    /// record its new delivery count (peek-lock). Its result is the record, or None when the row is missing
    /// or unreadable (then nothing is changed: a damaged row stays in the file for inspection).
    Take {
        /// store key
        entity: Arc<str>,
        /// sequence number
        seq: u64,
        /// delete the row (receive-and-delete) rather than update its count
        delete: bool,
        /// the delivery count, this delivery included
        count: u32,
    },
    /// Move a message to a dead-letter queue, adding the `DeadLetterReason` and
    /// `DeadLetterErrorDescription` properties; it never expires there.
    DeadLetter {
        /// store key of the entity it leaves
        from: Arc<str>,
        /// store key of the dead-letter queue
        to: Arc<str>,
        /// sequence number (kept)
        seq: u64,
        /// DeadLetterReason
        reason: String,
        /// DeadLetterErrorDescription
        description: String,
    },
    /// Resubmit a dead-lettered message: read it from `from`, delete it there and insert it into `to` as a
    /// new message `new_seq` (delivery count 0, enqueued and visible at `now_ms`, expiring after its
    /// TimeToLive capped by `ttl_cap_ms`, without the dead-letter properties). Its result is the new
    /// record, or None when the row is missing (then nothing is changed).
    Resubmit {
        /// store key of the dead-letter queue
        from: Arc<str>,
        /// store key of the entity it returns to
        to: Arc<str>,
        /// sequence number in the dead-letter queue
        seq: u64,
        /// sequence number it gets in `to`
        new_seq: u64,
        /// counter that allocated `new_seq` (the queue or the topic)
        seq_key: Arc<str>,
        /// the resubmit's time, ms since epoch
        now_ms: i64,
        /// the entity's default TTL, ms (the message's own TimeToLive can only shorten it)
        ttl_cap_ms: Option<i64>,
    },
    /// Delete an entity's records enqueued before `before_ms` (event hub retention).
    PurgeBefore {
        /// store key
        entity: Arc<str>,
        /// cut-off, ms since epoch
        before_ms: i64,
    },
    /// Forget an entity's duplicate-detection ids whose window ended before `now_ms`.
    DedupExpire {
        /// store key
        entity: Arc<str>,
        /// current time, ms since epoch
        now_ms: i64,
    },
    /// Create or replace a management-API entity's definition (keeps its creation time and order).
    PutEntity(StoredEntity),
    /// Forget a management-API entity's definition (if any) and delete everything stored under each of
    /// `keys` (messages, sequence counter, duplicate ids): the entity, its dead-letter queue, its
    /// subscriptions.
    DropEntity {
        /// store key of the definition
        key: String,
        /// store keys whose data goes
        keys: Vec<String>,
    },
    /// Remember a MessageId for duplicate detection until `expires_ms`.
    Dedup {
        /// store key
        entity: Arc<str>,
        /// MessageId
        id: String,
        /// end of the window
        expires_ms: i64,
    },
}

/// The records read by a job's [`Op::Take`]s, in order.
type Taken = Vec<Option<Record>>;

struct Job {
    ops: Vec<Op>,
    done: Option<oneshot::Sender<Result<Taken, String>>>,
}

/// A queued write; [`Pending::wait`] resolves once it is committed.
pub struct Pending {
    rx: oneshot::Receiver<Result<Taken, String>>,
    sent: bool,
}

impl Pending {
    /// Waits for the commit.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.taken().await.map(|_| ())
    }

    /// Waits for the commit; returns what the job's [`Op::Take`]s read, in order.
    pub async fn taken(self) -> anyhow::Result<Taken> {
        anyhow::ensure!(self.sent, "bus store is shut down");
        self.rx
            .await
            .map_err(|_| anyhow::anyhow!("bus store writer stopped"))?
            .map_err(|e| anyhow::anyhow!("bus store write failed: {e}"))
    }
}

/// Handle to the writer thread and a reader connection.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
    reader: Arc<Mutex<Connection>>,
    /// The data directory's lock: one bus (or `weft up` with its bus) per directory.
    _lock: Arc<weft_store::DirLock>,
}

/// Everything loaded at start.
pub struct Loaded {
    /// Index entries of the stored messages per store key, in sequence order (bodies stay in the file).
    pub messages: HashMap<String, Vec<Slot>>,
    /// Sequence numbers of the deferred messages among them, per store key.
    pub deferred: HashMap<String, HashSet<u64>>,
    /// Next sequence number per store key.
    pub next_seq: HashMap<String, u64>,
    /// Live duplicate-detection ids per store key.
    pub dedup: HashMap<String, Vec<(String, i64)>>,
    /// Entities created through the management API, in creation order (topics before their
    /// subscriptions).
    pub entities: Vec<StoredEntity>,
}

/// An entity created through the management API: its definition as JSON (the `[bus]` section's shape, see
/// `server::manage`), so it is served again after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntity {
    /// Store key (lower-cased path: `orders`, `events/subscriptions/all`).
    pub key: String,
    /// `queue`, `topic` or `subscription`.
    pub kind: String,
    /// The definition, JSON.
    pub def: String,
    /// When it was created, ms since epoch.
    pub created_ms: i64,
    /// When it was last changed, ms since epoch.
    pub updated_ms: i64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages(
  entity TEXT NOT NULL, seq INTEGER NOT NULL, enqueued_ms INTEGER NOT NULL, visible_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL, delivery_count INTEGER NOT NULL, meta TEXT NOT NULL, body BLOB NOT NULL,
  state INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(entity, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sequences(entity TEXT PRIMARY KEY, next INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup(entity TEXT NOT NULL, id TEXT NOT NULL, expires_ms INTEGER NOT NULL,
  PRIMARY KEY(entity, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entities(key TEXT PRIMARY KEY, kind TEXT NOT NULL, def TEXT NOT NULL,
  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, ord INTEGER NOT NULL);
";

/// `messages.state` of a deferred message: Service Bus's own number for the state (the
/// `x-opt-message-state` annotation: 0 active, 1 deferred, 2 scheduled). Active and scheduled messages
/// are told apart by their visible time, so only deferral needs the column.
pub const STATE_DEFERRED: i64 = 1;

/// Adds `messages.state` to a store written before deferral existed (every message in it is active: the
/// column's default).
fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let has_state: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('messages') WHERE name = 'state'",
        [],
        |r| r.get(0),
    )?;
    if !has_state {
        conn.execute_batch("ALTER TABLE messages ADD COLUMN state INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl Store {
    /// Opens (creating) `dir/bus.sqlite`, loads its content and starts the writer thread.
    pub fn open(dir: &Path) -> anyhow::Result<(Store, Loaded)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        // A second bus on the same directory would serve the same messages twice: refused, naming the
        // holder's pid.
        let lock = Arc::new(weft_store::DirLock::acquire(dir)?);
        let path = dir.join("bus.sqlite");
        let conn = open(&path)?;
        conn.execute_batch(SCHEMA)
            .context("cannot create bus schema")?;
        migrate(&conn).context("cannot add the message state column to the bus schema")?;
        let loaded = load(&conn).with_context(|| format!("cannot load {}", path.display()))?;
        let reader = open(&path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("weft-bus-writer".into())
            .spawn(move || writer(conn, rx))
            .context("cannot start the bus writer thread")?;
        Ok((
            Store {
                tx,
                reader: Arc::new(Mutex::new(reader)),
                _lock: lock,
            },
            loaded,
        ))
    }

    /// Queues `ops` and waits until they are committed (fsynced).
    pub async fn commit(&self, ops: Vec<Op>) -> anyhow::Result<()> {
        self.enqueue(ops).wait().await
    }

    /// [`Store::commit`] that returns what the [`Op::Take`]s among `ops` read, in order.
    pub async fn commit_take(&self, ops: Vec<Op>) -> anyhow::Result<Taken> {
        self.enqueue(ops).taken().await
    }

    /// Queues `ops` now (jobs commit in queue order) and returns a handle to await the commit. Callers that
    /// allocate offsets under a lock enqueue under that lock so commit order equals offset order.
    pub fn enqueue(&self, ops: Vec<Op>) -> Pending {
        let (done, rx) = oneshot::channel();
        let sent = self
            .tx
            .send(Job {
                ops,
                done: Some(done),
            })
            .is_ok();
        Pending { rx, sent }
    }

    /// Queues `ops` without waiting (writes whose loss on a crash is harmless, e.g. expiry clean-up).
    pub fn submit(&self, ops: Vec<Op>) {
        if !ops.is_empty() {
            let _ = self.tx.send(Job { ops, done: None });
        }
    }

    /// Reads up to `max` records of `entity` with `seq >= from` (event hub partitions), on a blocking thread.
    pub async fn read_range(
        &self,
        entity: &str,
        from: u64,
        max: usize,
    ) -> anyhow::Result<Vec<Record>> {
        let reader = self.reader.clone();
        let entity = entity.to_string();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| anyhow::anyhow!("reader lock poisoned"))?;
            let mut stmt = conn.prepare_cached(
                "SELECT seq, enqueued_ms, visible_ms, expires_ms, delivery_count, meta, body FROM messages
                 WHERE entity = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![entity, from as i64, max as i64], row_to_record)?;
            rows.map(|r| r.map_err(anyhow::Error::from).and_then(|r| r))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await?
    }

    /// The newest stored record of `entity` (an Event Hubs partition's last enqueued event).
    pub async fn last(&self, entity: &str) -> anyhow::Result<Option<Record>> {
        let reader = self.reader.clone();
        let entity = entity.to_string();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().map_err(|_| anyhow::anyhow!("reader lock poisoned"))?;
            let mut stmt = conn.prepare_cached(
                "SELECT seq, enqueued_ms, visible_ms, expires_ms, delivery_count, meta, body FROM messages
                 WHERE entity = ?1 ORDER BY seq DESC LIMIT 1",
            )?;
            let mut rows = stmt.query_map(params![entity], row_to_record)?;
            rows.next().transpose()?.transpose()
        })
        .await?
    }

    /// The first sequence number of `entity` enqueued after `ms` (at or after, when `inclusive`): where an
    /// Event Hubs reader asked to start by enqueue time begins. None when no stored event qualifies.
    pub async fn first_enqueued_after(
        &self,
        entity: &str,
        ms: i64,
        inclusive: bool,
    ) -> anyhow::Result<Option<u64>> {
        let reader = self.reader.clone();
        let entity = entity.to_string();
        let sql = if inclusive {
            "SELECT MIN(seq) FROM messages WHERE entity = ?1 AND enqueued_ms >= ?2"
        } else {
            "SELECT MIN(seq) FROM messages WHERE entity = ?1 AND enqueued_ms > ?2"
        };
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .map_err(|_| anyhow::anyhow!("reader lock poisoned"))?;
            let seq: Option<i64> = conn
                .prepare_cached(sql)?
                .query_row(params![entity, ms], |r| r.get(0))?;
            Ok(seq.map(|s| s as u64))
        })
        .await?
    }
}

type RowResult = anyhow::Result<Record>;

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let meta: String = row.get(5)?;
    let body: Vec<u8> = row.get(6)?;
    let seq: i64 = row.get(0)?;
    Ok(serde_json::from_str::<Meta>(&meta)
        .map_err(|e| anyhow::anyhow!("stored message {seq} has unreadable properties: {e}"))
        .map(|meta| Record {
            seq: seq as u64,
            enqueued_ms: row.get(1).unwrap_or_default(),
            visible_ms: row.get(2).unwrap_or_default(),
            expires_ms: row.get(3).unwrap_or(i64::MAX),
            delivery_count: row.get::<_, i64>(4).unwrap_or_default() as u32,
            meta: Arc::new(meta),
            body: Bytes::from(body),
        }))
}

fn load(conn: &Connection) -> anyhow::Result<Loaded> {
    let mut messages: HashMap<String, Vec<Slot>> = HashMap::new();
    let mut deferred: HashMap<String, HashSet<u64>> = HashMap::new();
    // Only the index: bodies and properties are read back when a message is delivered.
    let mut stmt = conn.prepare(
        "SELECT entity, seq, visible_ms, expires_ms, delivery_count, length(body) + length(meta), state
         FROM messages WHERE entity NOT LIKE '%/partitions/%' ORDER BY entity, seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let entity: String = row.get(0)?;
        let seq = row.get::<_, i64>(1)? as u64;
        if row.get::<_, i64>(6)? == STATE_DEFERRED {
            deferred.entry(entity.clone()).or_default().insert(seq);
        }
        messages.entry(entity).or_default().push(Slot {
            seq,
            visible_ms: row.get(2)?,
            expires_ms: row.get(3)?,
            delivery_count: row.get::<_, i64>(4)? as u32,
            size: row.get::<_, i64>(5)? as u64,
        });
    }
    let mut next_seq = HashMap::new();
    let mut stmt = conn.prepare("SELECT entity, next FROM sequences")?;
    for r in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (e, n) = r?;
        next_seq.insert(e, n as u64);
    }
    let mut dedup: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    let now = crate::props::now_ms();
    let mut stmt =
        conn.prepare("SELECT entity, id, expires_ms FROM dedup WHERE expires_ms > ?1")?;
    for r in stmt.query_map([now], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (e, id, exp) = r?;
        dedup.entry(e).or_default().push((id, exp));
    }
    conn.execute("DELETE FROM dedup WHERE expires_ms <= ?1", [now])?;
    let mut stmt = conn.prepare(
        "SELECT key, kind, def, created_ms, updated_ms FROM entities ORDER BY ord, created_ms",
    )?;
    let entities = stmt
        .query_map([], |r| {
            Ok(StoredEntity {
                key: r.get(0)?,
                kind: r.get(1)?,
                def: r.get(2)?,
                created_ms: r.get(3)?,
                updated_ms: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Loaded {
        messages,
        deferred,
        next_seq,
        dedup,
        entities,
    })
}

/// Most jobs folded into one transaction; bounds latency of the first waiter in a burst.
const MAX_BATCH: usize = 4096;

fn writer(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let result = apply(&mut conn, &jobs).map_err(|e| format!("{e:#}"));
        if let Err(e) = &result {
            tracing::error!("bus store batch of {} requests failed: {e}", jobs.len());
        }
        match result {
            Ok(taken) => {
                for (j, t) in jobs.into_iter().zip(taken) {
                    if let Some(done) = j.done {
                        let _ = done.send(Ok(t));
                    }
                }
            }
            Err(e) => {
                for j in jobs {
                    if let Some(done) = j.done {
                        let _ = done.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

const SELECT_ONE: &str =
    "SELECT seq, enqueued_ms, visible_ms, expires_ms, delivery_count, meta, body FROM messages
     WHERE entity = ?1 AND seq = ?2";

/// Reads one message; None when it is missing or its properties are unreadable (logged).
fn read_one(
    tx: &rusqlite::Transaction<'_>,
    entity: &str,
    seq: u64,
) -> anyhow::Result<Option<Record>> {
    let row = tx
        .prepare_cached(SELECT_ONE)?
        .query_row(params![entity, seq as i64], row_to_record)
        .optional()?;
    Ok(match row {
        Some(Ok(rec)) => Some(rec),
        Some(Err(e)) => {
            tracing::error!(entity, "{e:#}; left in place");
            None
        }
        None => {
            tracing::error!(entity, seq, "message to deliver is not in the store");
            None
        }
    })
}

/// Applies every job's ops in one transaction; returns each job's [`Op::Take`] results.
fn apply(conn: &mut Connection, jobs: &[Job]) -> anyhow::Result<Vec<Taken>> {
    let tx = conn.transaction()?;
    let mut next: HashMap<&str, u64> = HashMap::new();
    let mut taken = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut t = Vec::new();
        for op in &job.ops {
            apply_op(&tx, op, &mut next, &mut t)?;
        }
        taken.push(t);
    }
    {
        let mut seqs = tx.prepare_cached(
            "INSERT INTO sequences(entity, next) VALUES (?1, ?2)
             ON CONFLICT(entity) DO UPDATE SET next = max(next, excluded.next)",
        )?;
        for (e, n) in &next {
            seqs.execute(params![e, *n as i64])?;
        }
    }
    tx.commit()?;
    Ok(taken)
}

const INSERT: &str = "INSERT OR REPLACE INTO messages(entity, seq, enqueued_ms, visible_ms, expires_ms, delivery_count, meta, body)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

fn apply_op<'a>(
    tx: &rusqlite::Transaction<'_>,
    op: &'a Op,
    next: &mut HashMap<&'a str, u64>,
    taken: &mut Taken,
) -> anyhow::Result<()> {
    let delete = |entity: &str, seq: u64| {
        tx.prepare_cached("DELETE FROM messages WHERE entity = ?1 AND seq = ?2")?
            .execute(params![entity, seq as i64])
    };
    match op {
        Op::Insert {
            entity,
            rec,
            seq_key,
        } => {
            let meta = serde_json::to_string(&*rec.meta)?;
            tx.prepare_cached(INSERT)?.execute(params![
                &**entity,
                rec.seq as i64,
                rec.enqueued_ms,
                rec.visible_ms,
                rec.expires_ms,
                rec.delivery_count as i64,
                meta,
                &rec.body[..]
            ])?;
            if let Some(k) = seq_key {
                let n = next.entry(&**k).or_default();
                *n = (*n).max(rec.seq + 1);
            }
        }
        Op::Defer { entity, seq } => {
            tx.prepare_cached("UPDATE messages SET state = ?3 WHERE entity = ?1 AND seq = ?2")?
                .execute(params![&**entity, *seq as i64, STATE_DEFERRED])?;
        }
        Op::SetProperties { entity, seq, props } => {
            let meta: Option<String> = tx
                .prepare_cached("SELECT meta FROM messages WHERE entity = ?1 AND seq = ?2")?
                .query_row(params![&**entity, *seq as i64], |r| r.get(0))
                .optional()?;
            let Some(meta) = meta else { return Ok(()) };
            let mut meta: Meta = serde_json::from_str(&meta)
                .with_context(|| format!("stored message {seq} has unreadable properties"))?;
            for (name, value) in props {
                match meta.user.iter_mut().find(|(k, _)| k == name) {
                    Some((_, v)) => *v = value.clone(),
                    None => meta.user.push((name.clone(), value.clone())),
                }
            }
            tx.prepare_cached("UPDATE messages SET meta = ?3 WHERE entity = ?1 AND seq = ?2")?
                .execute(params![
                    &**entity,
                    *seq as i64,
                    serde_json::to_string(&meta)?
                ])?;
        }
        Op::Delete { entity, seq } => {
            delete(entity, *seq)?;
        }
        Op::Take {
            entity,
            seq,
            delete: del,
            count,
        } => {
            let rec = read_one(tx, entity, *seq)?;
            if rec.is_some() {
                if *del {
                    delete(entity, *seq)?;
                } else {
                    tx.prepare_cached(
                        "UPDATE messages SET delivery_count = ?3 WHERE entity = ?1 AND seq = ?2",
                    )?
                    .execute(params![
                        &**entity,
                        *seq as i64,
                        *count as i64
                    ])?;
                }
            }
            taken.push(rec);
        }
        Op::DeadLetter {
            from,
            to,
            seq,
            reason,
            description,
        } => {
            let Some(mut rec) = read_one(tx, from, *seq)? else {
                return Ok(());
            };
            let mut meta = (*rec.meta).clone();
            meta.user
                .retain(|(k, _)| k != "DeadLetterReason" && k != "DeadLetterErrorDescription");
            meta.user
                .push(("DeadLetterReason".into(), PropValue::String(reason.clone())));
            meta.user.push((
                "DeadLetterErrorDescription".into(),
                PropValue::String(description.clone()),
            ));
            rec.meta = Arc::new(meta);
            rec.expires_ms = i64::MAX;
            delete(from, *seq)?;
            let meta = serde_json::to_string(&*rec.meta)?;
            tx.prepare_cached(INSERT)?.execute(params![
                &**to,
                rec.seq as i64,
                rec.enqueued_ms,
                rec.visible_ms,
                rec.expires_ms,
                rec.delivery_count as i64,
                meta,
                &rec.body[..]
            ])?;
        }
        Op::Resubmit {
            from,
            to,
            seq,
            new_seq,
            seq_key,
            now_ms,
            ttl_cap_ms,
        } => {
            let Some(rec) = read_one(tx, from, *seq)? else {
                taken.push(None);
                return Ok(());
            };
            let mut meta = (*rec.meta).clone();
            meta.user
                .retain(|(k, _)| k != "DeadLetterReason" && k != "DeadLetterErrorDescription");
            // Back in the queue now: a past schedule must not hold it again.
            meta.broker.scheduled_enqueue_time_utc = None;
            let ttl = [
                meta.broker.time_to_live.map(|t| (t * 1000.0) as i64),
                *ttl_cap_ms,
            ]
            .into_iter()
            .flatten()
            .min();
            let new = Record {
                seq: *new_seq,
                enqueued_ms: *now_ms,
                visible_ms: *now_ms,
                expires_ms: ttl.map_or(i64::MAX, |t| now_ms.saturating_add(t)),
                delivery_count: 0,
                meta: Arc::new(meta),
                body: rec.body,
            };
            delete(from, *seq)?;
            let meta = serde_json::to_string(&*new.meta)?;
            tx.prepare_cached(INSERT)?.execute(params![
                &**to,
                new.seq as i64,
                new.enqueued_ms,
                new.visible_ms,
                new.expires_ms,
                0i64,
                meta,
                &new.body[..]
            ])?;
            let n = next.entry(&**seq_key).or_default();
            *n = (*n).max(new.seq + 1);
            taken.push(Some(new));
        }
        Op::PurgeBefore { entity, before_ms } => {
            tx.prepare_cached("DELETE FROM messages WHERE entity = ?1 AND enqueued_ms < ?2")?
                .execute(params![&**entity, before_ms])?;
        }
        Op::DedupExpire { entity, now_ms } => {
            tx.prepare_cached("DELETE FROM dedup WHERE entity = ?1 AND expires_ms <= ?2")?
                .execute(params![&**entity, now_ms])?;
        }
        Op::PutEntity(e) => {
            tx.prepare_cached(
                "INSERT INTO entities(key, kind, def, created_ms, updated_ms, ord)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT coalesce(max(ord), 0) + 1 FROM entities))
                 ON CONFLICT(key) DO UPDATE SET kind = excluded.kind, def = excluded.def,
                   updated_ms = excluded.updated_ms",
            )?
            .execute(params![e.key, e.kind, e.def, e.created_ms, e.updated_ms])?;
        }
        Op::DropEntity { key, keys } => {
            tx.prepare_cached("DELETE FROM entities WHERE key = ?1")?
                .execute(params![key])?;
            for k in keys {
                tx.prepare_cached("DELETE FROM messages WHERE entity = ?1")?
                    .execute(params![k])?;
                tx.prepare_cached("DELETE FROM sequences WHERE entity = ?1")?
                    .execute(params![k])?;
                tx.prepare_cached("DELETE FROM dedup WHERE entity = ?1")?
                    .execute(params![k])?;
            }
        }
        Op::Dedup {
            entity,
            id,
            expires_ms,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO dedup(entity, id, expires_ms) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&**entity, id, expires_ms])?;
        }
    }
    Ok(())
}

/// Highest stored offset + 1 for an event hub partition (used at start; events are not loaded into memory).
pub fn partition_next(store: &Store, entity: &str) -> anyhow::Result<u64> {
    let conn = store
        .reader
        .lock()
        .map_err(|_| anyhow::anyhow!("reader lock poisoned"))?;
    let n: Option<i64> = conn
        .query_row(
            "SELECT next FROM sequences WHERE entity = ?1",
            [entity],
            |r| r.get(0),
        )
        .optional()?;
    Ok(n.unwrap_or(0) as u64)
}
