//! [`RowLocks`]: the in-process row locks that let operations run concurrently while a second writer of a row
//! waits for the first.
//!
//! Owns which operation holds which row and which operation waits for which row (the wait-for graph). A writer
//! takes a row's lock before it reads the row to change it, and keeps it until its operation's commit is durable
//! or rolled back. A wait is bounded by the operation's deadline ([`StoreError::LockTimeout`]); a wait that would
//! close a cycle in the wait-for graph fails at once ([`StoreError::Deadlock`]) — the operation that closes the
//! cycle is the one that fails, so the others keep their locks and go on. It must not know about rows' contents
//! or about SQL.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::{Result, StoreError};

/// A lockable row: table logical name and id.
pub(crate) type RowKey = (String, Uuid);

/// How long a wait may last when the operation has no deadline of its own (the pipeline's 2-minute limit).
const DEFAULT_WAIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct State {
    /// Row → the operation holding it.
    holders: HashMap<RowKey, u64>,
    /// Operation → the row it waits for (the wait-for graph's edges go from it to that row's holder).
    waiting: HashMap<u64, RowKey>,
}

/// The row locks of one store.
#[derive(Default)]
pub(crate) struct RowLocks {
    state: Mutex<State>,
    released: Condvar,
}

impl RowLocks {
    /// Takes `key` for `owner` (at once when free or already its own), waiting until `deadline` while another
    /// operation holds it.
    pub(crate) fn lock(&self, owner: u64, key: &RowKey, deadline: Option<Instant>) -> Result<()> {
        let deadline = deadline.unwrap_or_else(|| Instant::now() + DEFAULT_WAIT);
        let mut state = self.state.lock().map_err(|_| StoreError::Closed)?;
        loop {
            let holder = match state.holders.get(key) {
                None => {
                    state.holders.insert(key.clone(), owner);
                    state.waiting.remove(&owner);
                    return Ok(());
                }
                Some(h) if *h == owner => return Ok(()),
                Some(h) => *h,
            };
            if closes_cycle(&state, owner, holder) {
                state.waiting.remove(&owner);
                return Err(StoreError::Deadlock {
                    table: key.0.clone(),
                    id: key.1,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                state.waiting.remove(&owner);
                return Err(StoreError::LockTimeout {
                    table: key.0.clone(),
                    id: key.1,
                });
            }
            state.waiting.insert(owner, key.clone());
            state = self
                .released
                .wait_timeout(state, deadline - now)
                .map_err(|_| StoreError::Closed)?
                .0;
        }
    }

    /// Releases every row `owner` holds in `keys` and wakes the waiters.
    pub(crate) fn release(&self, owner: u64, keys: &[RowKey]) {
        if keys.is_empty() {
            return;
        }
        // A poisoned lock means a panic while holding it; the map is still consistent (no step can panic
        // half-way through an insert or remove), so keep releasing.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if state.holders.get(k) == Some(&owner) {
                state.holders.remove(k);
            }
        }
        state.waiting.remove(&owner);
        drop(state);
        self.released.notify_all();
    }
}

/// Whether `owner` waiting for a row `holder` holds would close a cycle: `holder` waits (transitively) for a
/// row `owner` holds.
fn closes_cycle(state: &State, owner: u64, mut holder: u64) -> bool {
    // Each operation waits for at most one row, so the graph is a chain from `holder`; its length is bounded
    // by the number of waiting operations.
    for _ in 0..=state.waiting.len() {
        if holder == owner {
            return true;
        }
        match state
            .waiting
            .get(&holder)
            .and_then(|k| state.holders.get(k))
        {
            Some(next) => holder = *next,
            None => return false,
        }
    }
    false
}
