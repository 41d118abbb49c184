//! Sub-millisecond sleeps without spinning.
//!
//! Tokio's timer wheel has 1 ms resolution and always rounds deadlines up, which would add up
//! to a millisecond of error to every simulated token (20 % of a 5 ms inter-token latency).
//! Two tools avoid that, neither of which busy-waits:
//! - [`sleep_until_blocking`] for the engine threads: a plain OS sleep, with the thread's
//!   kernel timer slack lowered to 1 µs (Linux) so the kernel does not add its default 50 µs.
//! - [`PreciseTimer`] for async tasks: one OS thread holds every pending deadline in a binary
//!   heap, each with the waker of its task (no channel or allocation per sleep). It sleeps
//!   until the earliest deadline plus [`COALESCE`], then wakes every task whose deadline has
//!   passed. Thousands of streams with distinct deadlines thus share at most
//!   `1 s / COALESCE` wake-ups per second; a wake-up is late by at most `COALESCE` plus the
//!   OS wake-up latency, and never early.
//!
//! A variant that armed a `timerfd` watched by the tokio runtime itself (no second thread)
//! was measured and dropped: under CPU contention its deadlines fired tens of milliseconds
//! late (the runtime's worker, busy writing chunks, is woken less promptly than a thread
//! that only sleeps), which batched tokens and wrecked the simulator's timing.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

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

/// A pending deadline and the task to wake at it.
struct Entry {
    at: Instant,
    seq: u64,
    waker: Waker,
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
    /// When the driver will next wake up by itself (`None`: it waits for a push).
    wake_at: Option<Instant>,
    /// Wake-ups that fired at least one deadline (for tests and benchmarks).
    wakeups: u64,
}

impl State {
    /// Moves the wakers of every deadline at or before `now` to `due`.
    fn take_due(&mut self, now: Instant, due: &mut Vec<Waker>) {
        let before = due.len();
        while self.heap.peek().is_some_and(|e| e.at <= now) {
            due.push(self.heap.pop().expect("peeked").waker);
        }
        if due.len() > before {
            self.wakeups += 1;
        }
    }

    /// When the timer thread should wake next: the earliest deadline plus [`COALESCE`].
    fn next_wake(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at + COALESCE)
    }
}

struct Shared {
    state: Mutex<State>,
    /// The timer thread waits on it.
    cv: Condvar,
    /// Set by [`PreciseTimer::stop`] (also kept in `State::stop`, read without the lock).
    stopped: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A precise async timer (see the module docs). Cheap to clone.
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
            stopped: AtomicBool::new(false),
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
    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep {
            timer: self.clone(),
            deadline,
            registered: None,
        }
    }

    /// Polls a sleep until `deadline` (what [`Sleep`] does, for hand-written futures).
    /// `registered` holds the waker an earlier poll of the same sleep left with the timer
    /// (`None` for a new sleep); it is `None` again when this returns `Ready`.
    pub fn poll_until(
        &self,
        deadline: Instant,
        registered: &mut Option<Waker>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if Instant::now() >= deadline {
            *registered = None;
            return Poll::Ready(());
        }
        if self.shared.stopped.load(AtomicOrdering::Acquire) {
            *registered = None;
            return Poll::Ready(());
        }
        if registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let mut st = self.shared.lock();
        if st.stop {
            *registered = None;
            return Poll::Ready(());
        }
        st.seq += 1;
        let seq = st.seq;
        st.heap.push(Entry {
            at: deadline,
            seq,
            waker: cx.waker().clone(),
        });
        // Only a deadline the driver would otherwise miss needs to wake it.
        if st.wake_at.is_none_or(|w| deadline + COALESCE < w) {
            self.shared.cv.notify_one();
        }
        drop(st);
        *registered = Some(cx.waker().clone());
        Poll::Pending
    }

    /// How many times the timer has woken up to fire deadlines.
    pub fn wakeups(&self) -> u64 {
        self.shared.lock().wakeups
    }

    /// Stop the timer thread (pending and later sleeps return immediately).
    pub fn stop(&self) {
        let mut st = self.shared.lock();
        st.stop = true;
        self.shared.stopped.store(true, AtomicOrdering::Release);
        let wakers: Vec<Waker> = std::mem::take(&mut st.heap)
            .into_iter()
            .map(|e| e.waker)
            .collect();
        self.shared.cv.notify_one();
        drop(st);
        for w in wakers {
            w.wake();
        }
    }
}

/// The future of [`PreciseTimer::sleep_until`].
pub struct Sleep {
    timer: PreciseTimer,
    deadline: Instant,
    registered: Option<Waker>,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.timer
            .poll_until(this.deadline, &mut this.registered, cx)
    }
}

fn timer_thread(shared: Arc<Shared>) {
    precise_thread();
    let cv = &shared.cv;
    let mut due: Vec<Waker> = Vec::with_capacity(1024);
    let mut st = shared.lock();
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        st.take_due(now, &mut due);
        if !due.is_empty() {
            // Wake the sleepers without holding the lock (they may push their next deadline).
            st.wake_at = Some(now);
            drop(st);
            for w in due.drain(..) {
                w.wake();
            }
            st = shared.lock();
            continue;
        }
        st.wake_at = st.next_wake();
        st = match st.wake_at {
            None => cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some(wake) => {
                cv.wait_timeout(st, wake.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
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
    #[test]
    fn sleeps_from_another_runtime_and_after_stop() {
        let t = PreciseTimer::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_micros(1500);
        rt.block_on(t.sleep_until(deadline));
        assert!(Instant::now() >= deadline);
        assert_eq!(t.wakeups(), 1);
        t.stop();
        // A stopped timer does not wait.
        let start = Instant::now();
        rt.block_on(t.sleep_until(start + Duration::from_secs(60)));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
