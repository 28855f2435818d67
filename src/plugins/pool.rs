//! A bounded pool of one plugin use's instances. At most `max` instances live; a call
//! takes an idle one, or reserves a slot and creates one, or waits (at most `waiting`
//! callers, each at most `wait`) for one to be given back or discarded.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a caller got.
pub enum Lease<T> {
    /// An idle instance.
    Idle(T),
    /// A reserved slot: create the instance, then `give_back` or `discard` it.
    Create,
}

/// Why a caller got nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum PoolError {
    /// Too many callers were already waiting.
    Busy { waiting: usize },
    /// No instance was free in time.
    Timeout { wait: Duration },
}

#[derive(Debug)]
struct State<T> {
    idle: Vec<T>,
    live: usize,
    waiting: usize,
}

#[derive(Debug)]
pub struct Pool<T> {
    max: usize,
    max_waiting: usize,
    wait: Duration,
    state: Mutex<State<T>>,
    freed: Condvar,
}

/// How many instances live, are idle, and callers wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub live: usize,
    pub idle: usize,
    pub waiting: usize,
}

impl<T> Pool<T> {
    pub fn new(max: usize, max_waiting: usize, wait: Duration) -> Self {
        Self {
            max: max.max(1),
            max_waiting,
            wait,
            state: Mutex::new(State { idle: Vec::new(), live: 0, waiting: 0 }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an instance created outside a lease (the first one); false when full.
    pub fn seed(&self, item: T) -> bool {
        let mut s = self.lock();
        if s.live >= self.max {
            return false;
        }
        s.live += 1;
        s.idle.push(item);
        true
    }

    pub fn acquire(&self) -> Result<Lease<T>, PoolError> {
        let mut s = self.lock();
        let mut deadline = None;
        loop {
            if let Some(item) = s.idle.pop() {
                if deadline.is_some() {
                    s.waiting -= 1;
                }
                return Ok(Lease::Idle(item));
            }
            if s.live < self.max {
                s.live += 1;
                if deadline.is_some() {
                    s.waiting -= 1;
                }
                return Ok(Lease::Create);
            }
            let until = match deadline {
                Some(until) => until,
                None => {
                    if s.waiting >= self.max_waiting {
                        return Err(PoolError::Busy { waiting: s.waiting });
                    }
                    s.waiting += 1;
                    *deadline.insert(Instant::now() + self.wait)
                }
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                s.waiting -= 1;
                return Err(PoolError::Timeout { wait: self.wait });
            }
            s = self.freed.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// An idle instance, without creating or waiting.
    pub fn take_idle(&self) -> Option<T> {
        self.lock().idle.pop()
    }

    /// Returns a healthy instance.
    pub fn give_back(&self, item: T) {
        self.lock().idle.push(item);
        self.freed.notify_one();
    }

    /// Frees the slot of an instance that was dropped (it failed) or never created.
    pub fn discard(&self) {
        let mut s = self.lock();
        s.live = s.live.saturating_sub(1);
        drop(s);
        self.freed.notify_one();
    }

    pub fn stats(&self) -> PoolStats {
        let s = self.lock();
        PoolStats { live: s.live, idle: s.idle.len(), waiting: s.waiting }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Lease, Pool, PoolError, PoolStats};

    #[test]
    fn bounded_instances_and_bounded_waiters() {
        let pool: Arc<Pool<u32>> = Arc::new(Pool::new(1, 1, Duration::from_secs(60)));
        assert!(matches!(pool.acquire(), Ok(Lease::Create)));
        // One caller waits (on another thread) ...
        let waiter = {
            let pool = pool.clone();
            std::thread::spawn(move || matches!(pool.acquire(), Ok(Lease::Idle(7))))
        };
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while pool.stats().waiting == 0 {
            assert!(std::time::Instant::now() < until, "the waiter never waited");
            std::thread::yield_now();
        }
        // ... the next is refused at once ...
        assert_eq!(pool.acquire().err(), Some(PoolError::Busy { waiting: 1 }));
        // ... and the waiter gets the instance given back.
        pool.give_back(7);
        assert!(waiter.join().unwrap());
        assert_eq!(pool.stats(), PoolStats { live: 1, idle: 0, waiting: 0 });
        pool.discard();
        assert!(matches!(pool.acquire(), Ok(Lease::Create)), "a discarded slot can be refilled");
    }

    #[test]
    fn a_caller_that_cannot_get_an_instance_in_time_fails() {
        let pool: Pool<u32> = Pool::new(1, 4, Duration::ZERO);
        assert!(pool.seed(1));
        assert!(!pool.seed(2), "seeding respects the bound");
        assert!(matches!(pool.acquire(), Ok(Lease::Idle(1))));
        assert_eq!(pool.acquire().err(), Some(PoolError::Timeout { wait: Duration::ZERO }));
        assert_eq!(pool.stats().waiting, 0);
    }
}
