//! Wake-ups between hosts sharing one database: `NOTIFY` after a commit that wrote system jobs or
//! registration, and one `LISTEN` connection per host that turns the others' notifications into
//! [`Change`]s for the host's listeners ([`crate::Store::watch_changes`]).
//!
//! Owns the two channels, the sender thread and the listener thread with their connections. It must not
//! touch rows: a notification carries no data (only the sending store's token, so a host skips its own),
//! and losing one costs only latency — the asynchronous service still polls, and a lost listener
//! connection is reopened and answered with a wake-up of every kind (what it may have missed).
//!
//! Why the NOTIFY is sent after the commit, from a connection of its own, rather than inside the committing
//! transaction: PostgreSQL serialises the commits of notifying transactions (`PreCommit_Notify` takes a
//! database-wide lock held until the commit's WAL flush is done), so a NOTIFY in every operation's
//! transaction would turn the server's group commit into one flush per operation. Here the commits stay
//! concurrent; the sender coalesces what committed while it was busy into one NOTIFY per channel, in a
//! transaction with `synchronous_commit = off` (a wake-up needs no flush). A notification still follows
//! the commit it announces, so the rows are visible to whoever it wakes. At most one NOTIFY transaction per
//! [`MIN_INTERVAL`] per store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::{Client, Config};
use uuid::Uuid;

use crate::{Change, ChangeListener};

/// The channel announcing committed system jobs.
pub(crate) const JOBS_CHANNEL: &str = "weft_jobs";
/// The channel announcing committed registration changes.
pub(crate) const REGISTRATION_CHANNEL: &str = "weft_registration";

/// How long a lost connection waits before it is reopened.
const RECONNECT: Duration = Duration::from_secs(1);
/// The least time between two NOTIFY transactions of one store: what commits meanwhile shares the next.
/// Under load a host would otherwise send one per round trip (measured: a NOTIFY transaction for every
/// six operations at 1,900 ops/s, each a transaction the server runs); this bounds them to 50 a second
/// and adds at most this much to another host's wake-up (its own host is woken in process).
const MIN_INTERVAL: Duration = Duration::from_millis(20);
/// How long [`Signals::watch`] waits for the first LISTEN.
const READY_WAIT: Duration = Duration::from_secs(5);
/// How often the listener checks that it should stop.
const STOP_CHECK: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Pending {
    jobs: bool,
    registration: bool,
    stop: bool,
}

/// One store's side of the wake-ups.
pub(crate) struct Signals {
    config: Config,
    /// This store's token: notifications carrying it are this host's own and are skipped.
    origin: String,
    pending: Mutex<Pending>,
    wake: Condvar,
    listeners: Mutex<Vec<ChangeListener>>,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    listening: AtomicBool,
    /// Set once the listener's first LISTEN is in place (what [`Signals::watch`] waits for).
    ready: Mutex<bool>,
    ready_changed: Condvar,
}

impl Signals {
    /// Starts the sender thread (its connection is opened at the first commit to announce).
    pub(crate) fn start(config: Config) -> std::io::Result<Arc<Signals>> {
        let signals = Arc::new(Signals {
            config,
            origin: Uuid::new_v4().simple().to_string(),
            pending: Mutex::default(),
            wake: Condvar::new(),
            listeners: Mutex::default(),
            stop: AtomicBool::new(false),
            threads: Mutex::default(),
            listening: AtomicBool::new(false),
            ready: Mutex::new(false),
            ready_changed: Condvar::new(),
        });
        let sender = Arc::clone(&signals);
        let thread = std::thread::Builder::new()
            .name("weft-pg-notify".into())
            .spawn(move || sender.send_loop())?;
        signals
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(thread);
        Ok(signals)
    }

    /// Announces a commit that wrote system jobs and/or registration. Never blocks on the server.
    pub(crate) fn committed(&self, jobs: bool, registration: bool) {
        if !jobs && !registration {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.jobs |= jobs;
        pending.registration |= registration;
        self.wake.notify_one();
    }

    /// Adds a listener; the first one starts the listener thread. Returns once the LISTEN is in place, so
    /// what commits afterwards is heard (or after [`READY_WAIT`] when the server cannot be reached yet: the
    /// thread keeps trying).
    pub(crate) fn watch(self: &Arc<Self>, listener: ChangeListener) -> bool {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(listener);
        if !self.listening.swap(true, Ordering::SeqCst) {
            let me = Arc::clone(self);
            match std::thread::Builder::new()
                .name("weft-pg-listen".into())
                .spawn(move || me.listen_loop())
            {
                Ok(t) => self
                    .threads
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(t),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the LISTEN thread: other hosts' jobs are found by polling");
                    return false;
                }
            }
        }
        let ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .ready_changed
            .wait_timeout_while(ready, READY_WAIT, |ready| !*ready);
        true
    }

    /// Stops both threads (the listener within [`STOP_CHECK`]).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.wake.notify_all();
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }

    fn connect(&self) -> Option<Client> {
        match super::tls::connect_sync(&self.config) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %super::conn::causes(&e), "PostgreSQL wake-up connection: cannot connect (polling goes on)");
                None
            }
        }
    }

    fn send_loop(&self) {
        let mut client: Option<Client> = None;
        loop {
            let (jobs, registration) = {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                while !pending.stop && !pending.jobs && !pending.registration {
                    pending = self
                        .wake
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if pending.stop {
                    return;
                }
                (
                    std::mem::take(&mut pending.jobs),
                    std::mem::take(&mut pending.registration),
                )
            };
            if client.as_ref().is_none_or(Client::is_closed) {
                client = self.connect();
            }
            let Some(c) = client.as_mut() else {
                std::thread::sleep(RECONNECT);
                continue;
            };
            let origin = &self.origin;
            let mut sql = String::from("BEGIN; SET LOCAL synchronous_commit = off;");
            if jobs {
                sql.push_str(&format!(" NOTIFY {JOBS_CHANNEL}, '{origin}';"));
            }
            if registration {
                sql.push_str(&format!(" NOTIFY {REGISTRATION_CHANNEL}, '{origin}';"));
            }
            sql.push_str(" COMMIT");
            if let Err(e) = c.batch_execute(&sql) {
                tracing::warn!(error = %e, "PostgreSQL NOTIFY failed (other hosts poll instead)");
                client = None;
            }
            std::thread::sleep(MIN_INTERVAL);
        }
    }

    fn listen_loop(&self) {
        let mut first = true;
        while !self.stop.load(Ordering::SeqCst) {
            let Some(mut client) = self.connect() else {
                std::thread::sleep(RECONNECT);
                continue;
            };
            if let Err(e) = client.batch_execute(&format!(
                "LISTEN {JOBS_CHANNEL}; LISTEN {REGISTRATION_CHANNEL}"
            )) {
                tracing::warn!(error = %e, "PostgreSQL LISTEN failed (polling goes on)");
                std::thread::sleep(RECONNECT);
                continue;
            }
            if first {
                *self.ready.lock().unwrap_or_else(PoisonError::into_inner) = true;
                self.ready_changed.notify_all();
            } else {
                // Whatever was announced while the connection was down.
                self.tell(Change::Jobs);
                self.tell(Change::Registration);
            }
            first = false;
            while !self.stop.load(Ordering::SeqCst) {
                let next = client.notifications().timeout_iter(STOP_CHECK).next();
                match next {
                    Ok(Some(n)) => {
                        if n.payload() == self.origin {
                            continue;
                        }
                        match n.channel() {
                            JOBS_CHANNEL => self.tell(Change::Jobs),
                            REGISTRATION_CHANNEL => self.tell(Change::Registration),
                            _ => {}
                        }
                    }
                    // A timeout, or the connection ended (the iterator says None for both).
                    Ok(None) if !client.is_closed() => {}
                    Ok(None) => {
                        tracing::warn!(
                            "PostgreSQL LISTEN connection closed (reconnecting; polling goes on)"
                        );
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "PostgreSQL LISTEN connection lost (reconnecting; polling goes on)");
                        break;
                    }
                }
            }
        }
    }

    fn tell(&self, change: Change) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for l in listeners {
            l(change);
        }
    }
}
