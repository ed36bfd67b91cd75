//! [`Admission`]: how many plug-in invocations may run at once, so the pool of
//! instances is never exhausted by callers and a caller that finds it full
//! waits a bounded time, then gets a typed capacity failure (the API answers
//! 503 with `Retry-After`) — never a trap blamed on the plug-in.
//!
//! Owns the permits and the per-thread nesting count; must not know about
//! stores or operations. A plug-in's organization-service call can run another
//! plug-in on the same thread while the first is still live: such nested
//! invocations do not wait for a permit (the outer one holds one and would wait
//! for itself); they draw on a reserve of the pool kept for them.

use std::cell::Cell;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

thread_local! {
    /// Invocations open on this thread.
    static OPEN: Cell<u32> = const { Cell::new(0) };
}

/// The permits for top-level invocations.
pub(super) struct Admission {
    free: Mutex<u32>,
    freed: Condvar,
    wait: Duration,
}

/// Held while an invocation runs; gives its permit back when dropped.
pub(super) struct Ticket<'a> {
    permit: Option<&'a Admission>,
}

impl Admission {
    /// `permits` concurrent top-level invocations; a caller waits at most `wait`.
    pub(super) fn new(permits: u32, wait: Duration) -> Admission {
        Admission {
            free: Mutex::new(permits.max(1)),
            freed: Condvar::new(),
            wait,
        }
    }

    /// Top-level permits for a pool of `instances`: a quarter of the pool is
    /// kept for nested invocations.
    pub(super) fn permits_for(instances: u32) -> u32 {
        (instances - instances / 4).max(1)
    }

    /// A ticket to run one invocation, or `None` when no permit came free within
    /// the wait.
    pub(super) fn enter(&self) -> Option<Ticket<'_>> {
        if OPEN.with(Cell::get) > 0 {
            OPEN.with(|open| open.set(open.get() + 1));
            return Some(Ticket { permit: None });
        }
        let deadline = Instant::now() + self.wait;
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            free = self
                .freed
                .wait_timeout(free, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *free -= 1;
        OPEN.with(|open| open.set(open.get() + 1));
        Some(Ticket { permit: Some(self) })
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        OPEN.with(|open| open.set(open.get().saturating_sub(1)));
        if let Some(admission) = self.permit {
            let mut free = admission.free.lock().unwrap_or_else(|e| e.into_inner());
            *free += 1;
            admission.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// With every permit taken a caller waits the bounded time, then is refused;
    /// a nested invocation on a thread that holds one is not.
    #[test]
    fn waits_a_bounded_time_then_refuses() {
        let admission = Arc::new(Admission::new(1, Duration::from_millis(50)));
        let held = admission.enter().expect("a free permit");
        assert!(admission.enter().is_some(), "nested on the same thread");
        let other = Arc::clone(&admission);
        let started = Instant::now();
        let refused = std::thread::spawn(move || other.enter().is_none())
            .join()
            .unwrap();
        assert!(refused);
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(held);
        let other = Arc::clone(&admission);
        assert!(
            std::thread::spawn(move || other.enter().is_some())
                .join()
                .unwrap()
        );
    }
}
