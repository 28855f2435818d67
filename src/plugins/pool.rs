//! The bounded pool of one plugin's instances, shared by the rules that use it. An
//! instance is initialised with one config (its key) and serves only calls with that
//! config. At most `max` instances live: a call takes an idle one of its key, or
//! reserves a free slot (evicting an idle instance of another key if need be) and
//! creates one, or waits (at most `waiting` callers, each at most `wait`) for one to be
//! given back or discarded.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a caller got.
pub enum Lease<T> {
    /// An idle instance.
    Idle(T),
    /// A reserved slot: create the instance, then `give_back` or `discard` it. The idle
    /// instance of another key evicted to make room, if any, is the caller's to drop
    /// (outside the pool's lock).
    Create(Option<T>),
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
struct State<K, T> {
    idle: Vec<(K, T)>,
    live: usize,
    waiting: usize,
}

impl<K: PartialEq, T> State<K, T> {
    fn take(&mut self, key: &K) -> Option<T> {
        let i = self.idle.iter().rposition(|(k, _)| k == key)?;
        Some(self.idle.swap_remove(i).1)
    }
}

#[derive(Debug)]
pub struct Pool<K, T> {
    max: usize,
    max_waiting: usize,
    wait: Duration,
    state: Mutex<State<K, T>>,
    freed: Condvar,
}

/// How many instances live, are idle, and callers wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub live: usize,
    pub idle: usize,
    pub waiting: usize,
}

impl<K: PartialEq, T> Pool<K, T> {
    pub fn new(max: usize, max_waiting: usize, wait: Duration) -> Self {
        Self {
            max: max.max(1),
            max_waiting,
            wait,
            state: Mutex::new(State { idle: Vec::new(), live: 0, waiting: 0 }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K, T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an instance created outside a lease (a rule's first one), evicting an idle
    /// one of another key when full; gives it back when there is no room.
    pub fn seed(&self, key: K, item: T) -> Result<Option<T>, T> {
        let mut s = self.lock();
        if s.live < self.max {
            s.live += 1;
            s.idle.push((key, item));
            return Ok(None);
        }
        match s.idle.iter().position(|(k, _)| *k != key) {
            Some(i) => {
                let (_, evicted) = s.idle.remove(i);
                s.idle.push((key, item));
                Ok(Some(evicted))
            }
            None => Err(item),
        }
    }

    pub fn acquire(&self, key: &K) -> Result<Lease<T>, PoolError> {
        let mut s = self.lock();
        let mut deadline = None;
        loop {
            if let Some(item) = s.take(key) {
                if deadline.is_some() {
                    s.waiting -= 1;
                }
                return Ok(Lease::Idle(item));
            }
            let evicted = if s.live < self.max {
                s.live += 1;
                Some(None)
            } else if s.idle.is_empty() {
                None
            } else {
                // Full, but an instance of another key is idle: it makes room.
                Some(Some(s.idle.remove(0).1))
            };
            if let Some(evicted) = evicted {
                if deadline.is_some() {
                    s.waiting -= 1;
                }
                return Ok(Lease::Create(evicted));
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

    /// An idle instance of `key`, without creating or waiting.
    pub fn take_idle(&self, key: &K) -> Option<T> {
        self.lock().take(key)
    }

    /// Returns a healthy instance.
    pub fn give_back(&self, key: K, item: T) {
        let mut s = self.lock();
        s.idle.push((key, item));
        let waiting = s.waiting > 0;
        drop(s);
        // Every waiter looks: the one whose key this is, or one that may evict it. Waiters
        // count themselves under the lock before they wait, so none is missed; without
        // any, no wake-up is sent (it is a system call on every call otherwise).
        if waiting {
            self.freed.notify_all();
        }
    }

    /// Frees the slot of an instance that was dropped (it failed) or never created.
    pub fn discard(&self) {
        let mut s = self.lock();
        s.live = s.live.saturating_sub(1);
        let waiting = s.waiting > 0;
        drop(s);
        if waiting {
            self.freed.notify_all();
        }
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
        let pool: Arc<Pool<&str, u32>> = Arc::new(Pool::new(1, 1, Duration::from_secs(60)));
        assert!(matches!(pool.acquire(&"a"), Ok(Lease::Create(None))));
        // One caller waits (on another thread) ...
        let waiter = {
            let pool = pool.clone();
            std::thread::spawn(move || matches!(pool.acquire(&"a"), Ok(Lease::Idle(7))))
        };
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while pool.stats().waiting == 0 {
            assert!(std::time::Instant::now() < until, "the waiter never waited");
            std::thread::yield_now();
        }
        // ... the next is refused at once ...
        assert_eq!(pool.acquire(&"a").err(), Some(PoolError::Busy { waiting: 1 }));
        // ... and the waiter gets the instance given back.
        pool.give_back("a", 7);
        assert!(waiter.join().unwrap());
        assert_eq!(pool.stats(), PoolStats { live: 1, idle: 0, waiting: 0 });
        pool.discard();
        assert!(matches!(pool.acquire(&"a"), Ok(Lease::Create(None))), "a discarded slot can be refilled");
    }

    #[test]
    fn a_full_pool_makes_room_from_idle_instances_of_other_configs() {
        let pool: Pool<&str, u32> = Pool::new(2, 4, Duration::ZERO);
        assert!(matches!(pool.seed("a", 1), Ok(None)));
        assert!(matches!(pool.seed("b", 2), Ok(None)));
        // Full: a third config evicts an idle instance of another one.
        assert!(matches!(pool.seed("c", 3), Ok(Some(1))));
        assert!(matches!(pool.acquire(&"a"), Ok(Lease::Create(Some(2)))));
        assert_eq!(pool.stats(), PoolStats { live: 2, idle: 1, waiting: 0 });
        // Nothing idle of another key and no room: it waits (here: not at all) and fails.
        assert!(matches!(pool.acquire(&"c"), Ok(Lease::Idle(3))));
        assert_eq!(pool.acquire(&"d").err(), Some(PoolError::Timeout { wait: Duration::ZERO }));
        assert!(matches!(pool.seed("d", 4), Err(4)));
    }

    #[test]
    fn a_caller_that_cannot_get_an_instance_in_time_fails() {
        let pool: Pool<(), u32> = Pool::new(1, 4, Duration::ZERO);
        assert!(matches!(pool.seed((), 1), Ok(None)));
        assert!(matches!(pool.seed((), 2), Err(2)), "seeding respects the bound");
        assert!(matches!(pool.acquire(&()), Ok(Lease::Idle(1))));
        assert_eq!(pool.acquire(&()).err(), Some(PoolError::Timeout { wait: Duration::ZERO }));
        assert_eq!(pool.stats().waiting, 0);
    }
}
