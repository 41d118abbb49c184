//! Sub-millisecond sleeps.
//!
//! Tokio's timer wheel has 1 ms resolution and always rounds deadlines up, which would add up
//! to a millisecond of error to every simulated token (20 % of a 5 ms inter-token latency).
//! Two tools avoid that:
//! - [`sleep_until_blocking`] for the engine threads: an OS sleep that stops a little early,
//!   then yields until the deadline (typically < 20 µs late).
//! - [`PreciseTimer`] for async tasks: a coarse tokio sleep to about 2 ms before the deadline,
//!   then one shared OS thread that fires the remaining wake-ups precisely.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How early an OS sleep is stopped before yielding up to the deadline.
const SPIN_MARGIN: Duration = Duration::from_micros(80);

/// Block the current OS thread until `deadline`, precisely.
pub fn sleep_until_blocking(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > SPIN_MARGIN {
            std::thread::sleep(left - SPIN_MARGIN);
        } else {
            std::thread::yield_now();
        }
    }
}

struct Entry {
    at: Instant,
    seq: u64,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and we want the earliest deadline on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Entry>,
    seq: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

/// A precise async timer backed by one OS thread. Cheap to clone.
#[derive(Clone)]
pub struct PreciseTimer {
    shared: Arc<Shared>,
}

/// Deadlines further away than this are first waited for with tokio's own timer.
const COARSE_MARGIN: Duration = Duration::from_millis(2);

impl PreciseTimer {
    /// Start the timer thread.
    pub fn start() -> PreciseTimer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("sim-timer".into())
            .spawn(move || timer_thread(s))
            .expect("spawn timer thread");
        PreciseTimer { shared }
    }

    /// Sleep until `deadline` with sub-millisecond precision.
    pub async fn sleep_until(&self, deadline: Instant) {
        let now = Instant::now();
        if deadline <= now {
            return;
        }
        if deadline - now > COARSE_MARGIN {
            tokio::time::sleep_until((deadline - COARSE_MARGIN).into()).await;
        }
        if deadline <= Instant::now() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.state.lock().expect("timer lock");
            if st.stop {
                return;
            }
            st.seq += 1;
            let seq = st.seq;
            let earliest = st.heap.peek().map(|e| e.at);
            st.heap.push(Entry {
                at: deadline,
                seq,
                tx,
            });
            if earliest.is_none_or(|e| deadline < e) {
                self.shared.cv.notify_one();
            }
        }
        let _ = rx.await;
    }

    /// Stop the timer thread (pending sleeps return immediately).
    pub fn stop(&self) {
        let mut st = self.shared.state.lock().expect("timer lock");
        st.stop = true;
        st.heap.clear();
        self.shared.cv.notify_one();
    }
}

fn timer_thread(shared: Arc<Shared>) {
    let mut st = shared.state.lock().expect("timer lock");
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        while st.heap.peek().is_some_and(|e| e.at <= now) {
            let e = st.heap.pop().expect("peeked");
            let _ = e.tx.send(());
        }
        match st.heap.peek().map(|e| e.at) {
            None => {
                st = shared.cv.wait(st).expect("timer lock");
            }
            Some(at) => {
                let left = at.saturating_duration_since(now);
                if left > SPIN_MARGIN {
                    st = shared
                        .cv
                        .wait_timeout(st, left - SPIN_MARGIN)
                        .expect("timer lock")
                        .0;
                } else {
                    drop(st);
                    std::thread::yield_now();
                    st = shared.state.lock().expect("timer lock");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_sleep_is_precise() {
        let start = Instant::now();
        let deadline = start + Duration::from_micros(1500);
        sleep_until_blocking(deadline);
        let late = Instant::now() - deadline;
        assert!(late < Duration::from_millis(5), "late by {late:?}");
    }

    #[tokio::test]
    async fn async_sleep_reaches_deadline() {
        let t = PreciseTimer::start();
        let deadline = Instant::now() + Duration::from_micros(2500);
        t.sleep_until(deadline).await;
        assert!(Instant::now() >= deadline);
        t.stop();
    }
}
