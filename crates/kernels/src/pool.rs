//! A small persistent thread pool for [`parallel_for`].
//!
//! `n - 1` workers plus the calling thread. A job is published by bumping a generation
//! counter; workers spin on it for a short while (decode runs ~200 small matmuls per token, so
//! waking from a futex each time would cost more than the work), then park on a condvar.
//! Tasks are claimed one index at a time from an atomic counter, so uneven tasks balance.
//! Nothing is allocated per call.
//!
//! A call made while the pool is busy (from inside a task, or from a second thread at the same
//! time) runs its tasks serially on the calling thread.

use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

/// How many times a idle worker polls for new work before parking.
const SPIN_ITERS: u32 = 1 << 16;

type TaskFn = dyn Fn(usize) + Sync;

struct Shared {
    /// Bumped once per job.
    gen: AtomicU64,
    /// The current job; written only while no worker is inside a job (see `parallel_for`).
    job: UnsafeCell<(*const TaskFn, usize)>,
    /// Next task index to hand out.
    next: AtomicUsize,
    /// Workers that have not finished the current job yet.
    pending: AtomicUsize,
    /// A task panicked in a worker.
    panicked: AtomicBool,
    quit: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written by the publishing thread only while `pending == 0` (no worker reads
// it) and read by workers only between seeing a new `gen` (Acquire, after the write) and
// decrementing `pending` (Release); the pointee is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

thread_local! {
    /// Set on worker threads and on a caller while it runs a job: nested calls go serial.
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

/// Mirror of the pool's thread count, readable without the pool lock.
static THREADS: AtomicUsize = AtomicUsize::new(0);

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Pool::new(default_threads())))
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Pool {
    fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            gen: AtomicU64::new(0),
            job: UnsafeCell::new((std::ptr::null::<fn(usize)>() as *const TaskFn, 0)),
            next: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            quit: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (1..threads.max(1))
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("lume-kernels-{i}"))
                    .spawn(move || worker(&s))
                    .expect("spawning a kernel worker thread")
            })
            .collect();
        THREADS.store(threads.max(1), SeqCst);
        Pool { shared, workers }
    }

    fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    fn shutdown(&mut self) {
        let s = &self.shared;
        s.quit.store(true, SeqCst);
        s.gen.fetch_add(1, SeqCst);
        {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(s: &Shared) {
    IN_POOL.with(|c| c.set(true));
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        while s.gen.load(Acquire) == seen {
            if spins < SPIN_ITERS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, SeqCst);
                while s.gen.load(SeqCst) == seen {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, SeqCst);
            }
        }
        seen = s.gen.load(Acquire);
        if s.quit.load(Acquire) {
            return;
        }
        // SAFETY: a new generation was published after `job` was written (Acquire above), and
        // the publisher does not touch `job` or return before we decrement `pending`.
        let (f, n) = unsafe { *s.job.get() };
        // SAFETY: the closure outlives the job (the publisher waits for `pending == 0`).
        let f = unsafe { &*f };
        let r = catch_unwind(AssertUnwindSafe(|| run_tasks(s, f, n)));
        if r.is_err() {
            s.panicked.store(true, SeqCst);
        }
        s.pending.fetch_sub(1, Release);
    }
}

fn run_tasks(s: &Shared, f: &(dyn Fn(usize) + Sync + '_), n: usize) {
    loop {
        let i = s.next.fetch_add(1, Relaxed);
        if i >= n {
            return;
        }
        f(i);
    }
}

/// Runs `f(0) .. f(n_tasks - 1)` on the pool (the calling thread takes part) and returns when
/// all are done. Task order and placement are unspecified. A panic in a task is re-raised here.
pub fn parallel_for(n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    if n_tasks == 0 {
        return;
    }
    let serial = |f: &(dyn Fn(usize) + Sync)| (0..n_tasks).for_each(f);
    if n_tasks == 1 || IN_POOL.with(|c| c.get()) {
        return serial(f);
    }
    let Ok(guard) = pool().try_lock() else {
        return serial(f);
    };
    if guard.workers.is_empty() {
        drop(guard);
        return serial(f);
    }
    let s = &*guard.shared;
    // SAFETY: only the lifetime is erased; we wait below until no worker can touch `f` again.
    let fp: *const TaskFn = unsafe {
        std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static TaskFn>(f)
    };
    // SAFETY: `pending == 0` here (every previous job was waited for), so no worker reads `job`.
    unsafe { *s.job.get() = (fp, n_tasks) };
    s.next.store(0, Relaxed);
    s.pending.store(guard.workers.len(), Relaxed);
    s.gen.fetch_add(1, SeqCst);
    if s.sleepers.load(SeqCst) > 0 {
        let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
    }
    IN_POOL.with(|c| c.set(true));
    let mine = catch_unwind(AssertUnwindSafe(|| run_tasks(s, f, n_tasks)));
    IN_POOL.with(|c| c.set(false));
    let mut spins = 0u32;
    while s.pending.load(Acquire) != 0 {
        spins = spins.wrapping_add(1);
        if spins % 1024 == 0 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    let worker_panicked = s.panicked.swap(false, SeqCst);
    drop(guard);
    if let Err(p) = mine {
        std::panic::resume_unwind(p);
    }
    if worker_panicked {
        panic!("a kernels::parallel_for task panicked on a worker thread");
    }
}

/// Sets the number of threads (the caller plus `n - 1` workers; `0` means the default,
/// `available_parallelism`). Waits for a running job to finish first.
pub fn set_num_threads(n: usize) {
    let n = if n == 0 { default_threads() } else { n };
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    if p.threads() != n {
        p.shutdown();
        *p = Pool::new(n);
    }
}

/// The number of threads [`parallel_for`] uses (including the caller).
pub fn num_threads() -> usize {
    pool();
    THREADS.load(SeqCst)
}
