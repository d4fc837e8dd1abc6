//! Memory reclamation off the reading thread: a background thread that frees what sled left to
//! free while the store is in use.
//!
//! sled 0.34 frees its evicted pages and replaced nodes through crossbeam's epoch-based
//! reclamation: it defers each drop, and whichever thread next collects runs up to eight
//! batches of 64 of them, every 128th time a thread pins an epoch. On a store bigger than
//! sled's cache every query evicts pages, so now and then a query paid for dropping hundreds of
//! other queries' pages: a tail of its own (docs/PERFORMANCE-LOG.md, item 20). This thread collects every
//! 50 µs while the store is in use, so the deferred drops mostly run here.
//!
//! It only moves work, so it may miss a wake-up or be missing altogether (the spawn failed):
//! the readers then collect as they did before. It parks after [`IDLE_ROUNDS`] rounds without
//! a store call, so an idle process does not wake it. While appends run it stands aside
//! ([`WRITE_PAUSE`] at a time): appends keep the CPUs busy, and waking every 50 µs among them
//! cost about 9% of the rate of 8 threads appending on 2 vCPUs. The collector is crossbeam-epoch's
//! global one, which sled uses too: the two must resolve to the same crossbeam-epoch (one 0.9
//! in Cargo.lock), or this thread collects a collector sled does not use.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

/// How often the thread collects while the store is in use.
const INTERVAL: Duration = Duration::from_micros(50);

/// Rounds in a row without a store call before the thread parks (about 2 ms).
const IDLE_ROUNDS: u32 = 40;

/// How long the thread pauses after a round in which the store appended.
const WRITE_PAUSE: Duration = Duration::from_millis(5);

/// The process's reclaimer, once started; `None` if its thread could not be.
static RECLAIMER: OnceLock<Option<Reclaimer>> = OnceLock::new();

/// Starts the process's reclaiming thread if it has none yet.
pub(crate) fn start() {
    RECLAIMER.get_or_init(Reclaimer::spawn);
}

/// Says the store is in use: called by every store call.
pub(crate) fn poke() {
    if let Some(Some(reclaimer)) = RECLAIMER.get() {
        reclaimer.poke();
    }
}

/// Says the store is appending: called by every append and import.
pub(crate) fn writing() {
    if let Some(Some(reclaimer)) = RECLAIMER.get() {
        reclaimer.state.wrote.store(true, Ordering::Relaxed);
    }
}

/// The thread and what it shares with the store's callers.
struct Reclaimer {
    state: Arc<State>,
    thread: Thread,
}

#[derive(Default)]
struct State {
    /// Set by every store call, taken by the thread each round.
    busy: AtomicBool,
    /// Set by every append, taken by the thread each round.
    wrote: AtomicBool,
    /// The thread is parked for want of calls (or about to): the next call unparks it.
    parked: AtomicBool,
}

impl Reclaimer {
    fn spawn() -> Option<Reclaimer> {
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let handle = std::thread::Builder::new()
            .name("pactum-reclaim".into())
            .spawn(move || shared.run())
            .ok()?;
        Some(Reclaimer {
            state,
            thread: handle.thread().clone(),
        })
    }

    /// Cheap, as every store call makes it: two relaxed atomics unless the thread is parked.
    fn poke(&self) {
        self.state.busy.store(true, Ordering::Relaxed);
        if self.state.parked.load(Ordering::Relaxed)
            && self.state.parked.swap(false, Ordering::AcqRel)
        {
            self.thread.unpark();
        }
    }
}

impl State {
    fn run(&self) {
        let mut idle = 0;
        loop {
            // Pinning and flushing runs the deferred drops whose epoch has passed.
            crossbeam_epoch::pin().flush();
            if self.wrote.swap(false, Ordering::AcqRel) {
                // Not `parked`: the calls made meanwhile do not wake it.
                std::thread::park_timeout(WRITE_PAUSE);
                idle = 0;
                continue;
            }
            if self.busy.swap(false, Ordering::AcqRel) {
                idle = 0;
            } else {
                idle += 1;
            }
            if idle < IDLE_ROUNDS {
                std::thread::sleep(INTERVAL);
                continue;
            }
            self.parked.store(true, Ordering::SeqCst);
            // A call between the swap above and this store saw `parked` false and did not
            // unpark: look again before parking. (A wake-up missed anyway only delays the
            // collecting until the next call.)
            if !self.busy.load(Ordering::SeqCst) {
                std::thread::park();
            }
            self.parked.store(false, Ordering::SeqCst);
            idle = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, PoisonError};
    use std::time::Instant;

    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let given_up = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < given_up, "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn what_a_reader_defers_is_freed_on_the_reclaiming_thread() {
        let reclaimer = Reclaimer::spawn().expect("a thread");
        let freed_on: Arc<Mutex<Vec<String>>> = Arc::default();
        {
            let guard = crossbeam_epoch::pin();
            // A thread's deferred drops go to the shared queue in batches of 64.
            for _ in 0..256 {
                let freed_on = Arc::clone(&freed_on);
                guard.defer(move || {
                    let name = std::thread::current().name().unwrap_or("").to_owned();
                    freed_on
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(name);
                });
            }
        }
        // This thread does not pin again: only other threads run those drops (all but the
        // last few, left in this thread's batch). Other tests' threads collect too, now and
        // then; the reclaimer, polling, gets some.
        until("nothing deferred was freed by the reclaimer", || {
            reclaimer.poke();
            freed_on
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|name| name == "pactum-reclaim")
        });
    }

    #[test]
    fn an_idle_reclaimer_parks_and_a_store_call_wakes_it() {
        let reclaimer = Reclaimer::spawn().expect("a thread");
        until("the reclaimer never parked", || {
            reclaimer.state.parked.load(Ordering::SeqCst)
        });
        reclaimer.poke();
        assert!(!reclaimer.state.parked.load(Ordering::SeqCst));
        // Awake, it takes the call and parks again once idle.
        until("the woken reclaimer did not take the call", || {
            !reclaimer.state.busy.load(Ordering::SeqCst)
        });
        until("the woken reclaimer never parked again", || {
            reclaimer.state.parked.load(Ordering::SeqCst)
        });
    }

    #[test]
    fn an_append_sends_the_reclaimer_aside_and_it_comes_back_for_reads() {
        let reclaimer = Reclaimer::spawn().expect("a thread");
        reclaimer.state.wrote.store(true, Ordering::SeqCst);
        until("the reclaimer did not take the append's mark", || {
            !reclaimer.state.wrote.load(Ordering::SeqCst)
        });
        reclaimer.poke();
        until("the reclaimer did not come back after its pause", || {
            !reclaimer.state.busy.load(Ordering::SeqCst)
        });
    }
}
