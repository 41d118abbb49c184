//! Sub-millisecond sleeps without spinning.
//!
//! Tokio's timer wheel has 1 ms resolution and always rounds deadlines up, which would add up
//! to a millisecond of error to every simulated token (20 % of a 5 ms inter-token latency).
//! Two tools avoid that, neither of which busy-waits:
//! - [`sleep_until_blocking`] for the engine threads: a plain OS sleep, with the thread's
//!   kernel timer slack lowered to 1 µs (Linux) so the kernel does not add its default 50 µs.
//! - [`PreciseTimer`] for async tasks: every pending deadline sits in one binary heap with the
//!   waker of its task (no allocation per sleep). The heap is driven by a `timerfd` registered
//!   with the tokio runtime it was started in (Linux): the runtime's own event loop wakes up
//!   at the earliest deadline plus [`COALESCE`] and wakes every task whose deadline has passed,
//!   on the same thread, without a second OS thread and the context switches and futex calls
//!   a hand-off to it costs. Outside a runtime, or where `timerfd` is unavailable, one OS
//!   thread does the same with a condition variable. Thousands of streams with distinct
//!   deadlines thus share at most `1 s / COALESCE` wake-ups per second; a wake-up is late by
//!   at most `COALESCE` plus the OS wake-up latency, and never early.

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

    /// When the driver should wake next: the earliest deadline plus [`COALESCE`].
    fn next_wake(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at + COALESCE)
    }
}

/// What wakes up to fire deadlines.
enum Driver {
    /// An OS thread waiting on this condition variable.
    Thread(Condvar),
    /// A timerfd watched by the tokio runtime the timer was started in.
    #[cfg(target_os = "linux")]
    Fd(std::os::fd::OwnedFd),
}

struct Shared {
    state: Mutex<State>,
    driver: Driver,
    /// Set by [`PreciseTimer::stop`] (also kept in `State::stop`, read without the lock).
    stopped: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the driver that the earliest deadline moved to `at` (lock held by the caller).
    fn rearm(&self, st: &mut State, at: Instant) {
        match &self.driver {
            Driver::Thread(cv) => cv.notify_one(),
            #[cfg(target_os = "linux")]
            Driver::Fd(fd) => {
                st.wake_at = Some(at);
                set_timerfd(fd, Some(at));
            }
        }
    }
}

/// A precise async timer (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct PreciseTimer {
    shared: Arc<Shared>,
}

impl PreciseTimer {
    /// Start the timer: on the current tokio runtime's event loop when there is one (Linux),
    /// else on its own OS thread.
    pub fn start() -> PreciseTimer {
        #[cfg(target_os = "linux")]
        if let Some(t) = fd_timer::start() {
            return t;
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            driver: Driver::Thread(Condvar::new()),
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
            self.shared.rearm(&mut st, deadline + COALESCE);
        }
        drop(st);
        *registered = Some(cx.waker().clone());
        Poll::Pending
    }

    /// How many times the timer has woken up to fire deadlines.
    pub fn wakeups(&self) -> u64 {
        self.shared.lock().wakeups
    }

    /// Stop the timer (pending and later sleeps return immediately).
    pub fn stop(&self) {
        let mut st = self.shared.lock();
        st.stop = true;
        self.shared.stopped.store(true, AtomicOrdering::Release);
        let wakers: Vec<Waker> = std::mem::take(&mut st.heap)
            .into_iter()
            .map(|e| e.waker)
            .collect();
        let now = Instant::now();
        self.shared.rearm(&mut st, now);
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
    let Driver::Thread(cv) = &shared.driver else {
        return;
    };
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

/// Arms `fd` to fire once at `at` (`None`: disarm).
#[cfg(target_os = "linux")]
fn set_timerfd(fd: &std::os::fd::OwnedFd, at: Option<Instant>) {
    use std::os::fd::AsRawFd;
    let ts = |d: Duration| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    };
    let value = match at {
        // An all-zero value disarms the timer, so a passed deadline fires after 1 ns.
        Some(at) => ts(at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1))),
        None => ts(Duration::ZERO),
    };
    let spec = libc::itimerspec {
        it_interval: ts(Duration::ZERO),
        it_value: value,
    };
    // SAFETY: `fd` is an open timerfd; `spec` is a valid itimerspec; the old value is not
    // asked for.
    unsafe {
        libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut());
    }
}

#[cfg(target_os = "linux")]
mod fd_timer {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::{Arc, Mutex};
    use std::task::Waker;
    use std::time::Instant;

    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    use super::{AtomicBool, Driver, PreciseTimer, Shared, State, set_timerfd};

    /// The driver task's state; fields drop in order, so the fd is deregistered from the
    /// runtime before `shared` (which owns it) can close it.
    struct Task {
        afd: AsyncFd<RawFd>,
        shared: Arc<Shared>,
    }

    /// A timer driven by a timerfd on the current runtime (which must have its I/O driver
    /// enabled, as any runtime serving sockets has); `None` outside a runtime or when the
    /// timerfd cannot be created or registered.
    pub(super) fn start() -> Option<PreciseTimer> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        // SAFETY: plain syscall; the returned descriptor is checked and then owned.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let raw = fd.as_raw_fd();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            driver: Driver::Fd(fd),
            stopped: AtomicBool::new(false),
        });
        let _guard = handle.enter();
        // SAFETY: `raw` stays open while the AsyncFd lives: `shared` owns it and is dropped
        // after `afd` (see `Task`).
        let afd = unsafe { AsyncFd::register_with_interest(raw, Interest::READABLE) }.ok()?;
        let task = Task {
            afd,
            shared: shared.clone(),
        };
        handle.spawn(async move { task.run().await });
        Some(PreciseTimer { shared })
    }

    impl Task {
        async fn run(&self) {
            super::precise_thread();
            let mut due: Vec<Waker> = Vec::with_capacity(1024);
            loop {
                let Ok(mut ready) = self.afd.readable().await else {
                    return;
                };
                let mut expirations = [0u8; 8];
                // SAFETY: reads at most 8 bytes into a buffer of 8 from an open timerfd (a
                // nonblocking read that may fail with EAGAIN, which is fine).
                unsafe {
                    libc::read(*self.afd.get_ref(), expirations.as_mut_ptr().cast(), 8);
                }
                ready.clear_ready();
                {
                    let mut st = self.shared.lock();
                    if st.stop {
                        return;
                    }
                    st.take_due(Instant::now(), &mut due);
                    st.wake_at = st.next_wake();
                    if let Driver::Fd(fd) = &self.shared.driver {
                        set_timerfd(fd, st.wake_at);
                    }
                }
                for w in due.drain(..) {
                    w.wake();
                }
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
    #[test]
    fn outside_a_runtime_a_thread_drives_the_timer() {
        let t = PreciseTimer::start();
        assert!(matches!(t.shared.driver, Driver::Thread(_)));
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

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn inside_a_runtime_its_event_loop_drives_the_timer() {
        let t = PreciseTimer::start();
        assert!(matches!(t.shared.driver, Driver::Fd(_)));
        // Two sleeps in a row on one task, then a later deadline pushed before an earlier
        // one (the earlier must re-arm the timerfd).
        for us in [800u64, 300] {
            let deadline = Instant::now() + Duration::from_micros(us);
            t.sleep_until(deadline).await;
            assert!(Instant::now() >= deadline);
        }
        let now = Instant::now();
        let (late, early) = (
            now + Duration::from_millis(50),
            now + Duration::from_millis(2),
        );
        let t2 = t.clone();
        let h = tokio::spawn(async move {
            t2.sleep_until(late).await;
            Instant::now()
        });
        tokio::task::yield_now().await;
        t.sleep_until(early).await;
        let woke = Instant::now();
        assert!(woke >= early);
        assert!(woke < late, "the earlier deadline waited for the later one");
        assert!(h.await.unwrap() >= late);
        t.stop();
    }
}
