//! Sub-millisecond sleeps without spinning.
//!
//! Tokio's timer wheel has 1 ms resolution and always rounds deadlines up, which would add up
//! to a millisecond of error to every simulated token (20 % of a 5 ms inter-token latency).
//! Two tools avoid that, neither of which busy-waits:
//! - [`sleep_until_blocking`] for the engine threads: a plain OS sleep, with the thread's
//!   kernel timer slack lowered to 1 µs (Linux) so the kernel does not add its default 50 µs.
//! - [`PreciseTimer`] for async tasks: one OS thread holds every pending deadline in a binary
//!   heap. It sleeps until the earliest deadline plus [`COALESCE`], then fires every deadline
//!   that has passed. Thousands of streams with distinct deadlines thus share at most
//!   `1 s / COALESCE` wake-ups per second; a wake-up is late by at most `COALESCE` plus the
//!   OS wake-up latency, and never early.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Deadlines within this much of the earliest pending one fire in the same wake-up.
pub const COALESCE: Duration = Duration::from_micros(200);

/// Lowers the calling thread's kernel timer slack to 1 µs (once per thread; Linux only).
fn precise_thread() {
    thread_local! {
        static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    DONE.with(|d| {
        if !d.replace(true) {
            #[cfg(target_os = "linux")]
            // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
            unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong);
            }
        }
    });
}

/// Block the current OS thread until `deadline` (an OS sleep; typically tens of µs late).
pub fn sleep_until_blocking(deadline: Instant) {
    precise_thread();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep(deadline - now);
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
    /// When the timer thread will next wake up by itself (`None`: it waits for a push).
    wake_at: Option<Instant>,
    /// Wake-ups so far (for tests and benchmarks).
    wakeups: u64,
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

    /// Sleep until `deadline`: returns at most [`COALESCE`] plus the OS wake-up latency after
    /// it, never before.
    pub async fn sleep_until(&self, deadline: Instant) {
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
            st.heap.push(Entry {
                at: deadline,
                seq,
                tx,
            });
            // Only a deadline the thread would otherwise miss needs to wake it.
            if st.wake_at.is_none_or(|w| deadline + COALESCE < w) {
                self.shared.cv.notify_one();
            }
        }
        let _ = rx.await;
    }

    /// How many times the timer thread has woken up to fire deadlines.
    pub fn wakeups(&self) -> u64 {
        self.shared.state.lock().expect("timer lock").wakeups
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
    precise_thread();
    let mut due: Vec<oneshot::Sender<()>> = Vec::with_capacity(1024);
    let mut st = shared.state.lock().expect("timer lock");
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        while st.heap.peek().is_some_and(|e| e.at <= now) {
            due.push(st.heap.pop().expect("peeked").tx);
        }
        if !due.is_empty() {
            st.wakeups += 1;
            // Wake the sleepers without holding the lock (they may push their next deadline).
            st.wake_at = Some(now);
            drop(st);
            for tx in due.drain(..) {
                let _ = tx.send(());
            }
            st = shared.state.lock().expect("timer lock");
            continue;
        }
        match st.heap.peek().map(|e| e.at) {
            None => {
                st.wake_at = None;
                st = shared.cv.wait(st).expect("timer lock");
            }
            Some(at) => {
                let wake = at + COALESCE;
                st.wake_at = Some(wake);
                st = shared
                    .cv
                    .wait_timeout(st, wake.saturating_duration_since(now))
                    .expect("timer lock")
                    .0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_sleep_is_never_early() {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_deadlines_share_wake_ups() {
        // 200 deadlines spread over 2 ms: with a 200 µs coalescing window the thread wakes
        // about ten times, not 200 times.
        let t = PreciseTimer::start();
        let base = Instant::now() + Duration::from_millis(20);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..200u64 {
            let t = t.clone();
            let at = base + Duration::from_micros(i * 10);
            set.spawn(async move {
                t.sleep_until(at).await;
                Instant::now() >= at
            });
        }
        while let Some(r) = set.join_next().await {
            assert!(r.unwrap(), "a sleep returned before its deadline");
        }
        let w = t.wakeups();
        assert!(
            (1..=40).contains(&w),
            "{w} wake-ups for 200 deadlines in 2 ms"
        );
        t.stop();
    }

    #[tokio::test]
    async fn stopped_timer_releases_sleepers() {
        let t = PreciseTimer::start();
        let t2 = t.clone();
        let h = tokio::spawn(async move {
            t2.sleep_until(Instant::now() + Duration::from_secs(60))
                .await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        t.stop();
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("sleeper released")
            .unwrap();
    }
}
