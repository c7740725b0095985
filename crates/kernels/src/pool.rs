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

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;

/// How many times an idle worker polls for new work with `spin_loop` before it starts
/// yielding its time slice between polls (so a busy, oversubscribed machine is not starved
/// by spinning workers).
const SPIN_ITERS: u32 = 1 << 12;
/// Polls (each after a `yield_now`) before an idle worker parks on the condvar.
const YIELD_ITERS: u32 = 1 << 12;

type TaskFn = dyn Fn(usize) + Sync;

struct Shared {
    /// `generation << 32 | next task index`. Generations are even while a job is being
    /// published and odd once it is ready; claiming a task is a CAS on this word, so a worker
    /// can never take an index of a job other than the one it read.
    ticket: AtomicU64,
    /// The current job: the closure's data and vtable pointers and its task count. Written
    /// only while the generation is even (seqlock style), read by workers and validated by
    /// re-reading `ticket`.
    job_data: AtomicPtr<()>,
    job_vtable: AtomicPtr<()>,
    job_n: AtomicUsize,
    /// Tasks finished in the current job.
    done: AtomicUsize,
    /// A task panicked in a worker.
    panicked: AtomicBool,
    quit: AtomicBool,
    sleepers: AtomicUsize,
    /// Workers that have started running (the pool is handed out only once all have, so a
    /// thread's start-up work never lands in the middle of someone's decode loop).
    started: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

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

/// The thread count the pool starts with (and `set_num_threads(0)` restores): physical cores
/// (SMT siblings share one core's SIMD units, so they rarely help these kernels), capped by
/// what the process may use; `available_parallelism` where the core count cannot be read.
/// Starts no thread.
pub fn default_threads() -> usize {
    let avail = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    match physical_cores() {
        Some(p) if p > 0 => p.min(avail),
        _ => avail,
    }
}

/// Distinct (physical id, core id) pairs in `/proc/cpuinfo` (Linux).
fn physical_cores() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mut cores = std::collections::HashSet::new();
    let mut phys = "";
    for line in text.lines() {
        let mut kv = line.splitn(2, ':').map(str::trim);
        match (kv.next(), kv.next()) {
            (Some("physical id"), Some(v)) => phys = v,
            (Some("core id"), Some(v)) => {
                cores.insert((phys, v));
            }
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

impl Pool {
    fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            ticket: AtomicU64::new(0),
            job_data: AtomicPtr::new(std::ptr::null_mut()),
            job_vtable: AtomicPtr::new(std::ptr::null_mut()),
            job_n: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            quit: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
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
        let n_workers = threads.max(1) - 1;
        while shared.started.load(Acquire) < n_workers {
            std::thread::yield_now();
        }
        THREADS.store(threads.max(1), SeqCst);
        Pool { shared, workers }
    }

    fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    fn shutdown(&mut self) {
        let s = &self.shared;
        s.quit.store(true, SeqCst);
        {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The generation part of a ticket.
fn gen_of(t: u64) -> u64 {
    t >> 32
}

/// A fat `&dyn Fn` split into its two pointer words, and back.
fn split(f: &(dyn Fn(usize) + Sync + '_)) -> (*mut (), *mut ()) {
    // SAFETY: a `&dyn Trait` is two pointer-sized words (data, vtable); only the lifetime is
    // erased, and `join` is used only while the closure is alive (see `parallel_for`).
    unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), (*mut (), *mut ())>(f) }
}

/// # Safety
/// `(data, vtable)` must come from [`split`] of a closure that is still alive.
unsafe fn join<'a>(data: *mut (), vtable: *mut ()) -> &'a TaskFn {
    // SAFETY: the caller guarantees that `(data, vtable)` came from `split` of a closure that is
    // still alive, so the two words are a valid `&TaskFn` for `'a`.
    unsafe { std::mem::transmute::<(*mut (), *mut ()), &'a TaskFn>((data, vtable)) }
}

fn worker(s: &Shared) {
    IN_POOL.with(|c| c.set(true));
    s.started.fetch_add(1, Release);
    let mut seen = 0u64;
    loop {
        // Wait for a ready generation we have not served.
        let mut spins = 0u32;
        let ready = |t: u64| gen_of(t) != seen && gen_of(t) % 2 == 1;
        while !ready(s.ticket.load(Acquire)) && !s.quit.load(Relaxed) {
            if spins < SPIN_ITERS {
                spins += 1;
                std::hint::spin_loop();
            } else if spins < SPIN_ITERS + YIELD_ITERS {
                spins += 1;
                std::thread::yield_now();
            } else {
                let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, SeqCst);
                while !ready(s.ticket.load(SeqCst)) && !s.quit.load(SeqCst) {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, SeqCst);
            }
        }
        if s.quit.load(Acquire) {
            return;
        }
        let t0 = s.ticket.load(Acquire);
        let gen = gen_of(t0);
        seen = gen;
        if gen & 1 == 0 {
            continue;
        }
        let (data, vtable, n) = (
            s.job_data.load(Acquire),
            s.job_vtable.load(Acquire),
            s.job_n.load(Acquire),
        );
        // The fields belong to `gen` only if it is still current (they are rewritten only
        // after the generation changes); claiming re-checks it on every task.
        if gen_of(s.ticket.load(Acquire)) != gen {
            continue;
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            while let Some(i) = claim(s, gen, n) {
                // SAFETY: a task of `gen` was claimed, so its publisher is still waiting for
                // `done` to reach `n` and the closure is alive.
                let f = unsafe { join(data, vtable) };
                f(i);
                s.done.fetch_add(1, Release);
            }
        }));
        if r.is_err() {
            s.panicked.store(true, SeqCst);
            s.done.fetch_add(1, Release);
        }
    }
}

/// Claims the next task index of generation `gen`, if that job still has one.
fn claim(s: &Shared, gen: u64, n: usize) -> Option<usize> {
    let mut t = s.ticket.load(Relaxed);
    loop {
        let i = (t & 0xFFFF_FFFF) as usize;
        if gen_of(t) != gen || i >= n {
            return None;
        }
        match s.ticket.compare_exchange_weak(t, t + 1, AcqRel, Relaxed) {
            Ok(_) => return Some(i),
            Err(now) => t = now,
        }
    }
}

/// Runs `f(0) .. f(n_tasks - 1)` on the pool (the calling thread takes part) and returns when
/// all are done. Task order and placement are unspecified. A panic in a task is re-raised here.
///
/// At most `u32::MAX` tasks (a task index is 32 bits of the pool's ticket); more panic, on
/// every path.
pub fn parallel_for(n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    assert!(
        n_tasks <= u32::MAX as usize,
        "parallel_for: {n_tasks} tasks, at most {} per call",
        u32::MAX
    );
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
    // Publish: even generation (busy), job fields, then the odd (ready) generation.
    let busy = ((gen_of(s.ticket.load(Relaxed)) | 1) + 1) & 0xFFFF_FFFF;
    s.ticket.store(busy << 32, SeqCst);
    let (data, vtable) = split(f);
    s.job_data.store(data, Release);
    s.job_vtable.store(vtable, Release);
    s.job_n.store(n_tasks, Release);
    s.done.store(0, Release);
    let gen = busy + 1;
    s.ticket.store(gen << 32, SeqCst);
    if s.sleepers.load(SeqCst) > 0 {
        let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.wake.notify_all();
    }
    IN_POOL.with(|c| c.set(true));
    let mine = catch_unwind(AssertUnwindSafe(|| {
        while let Some(i) = claim(s, gen, n_tasks) {
            f(i);
            s.done.fetch_add(1, Release);
        }
    }));
    IN_POOL.with(|c| c.set(false));
    if mine.is_err() {
        // The panicking task never counted itself; skip the tasks nobody claimed yet.
        s.done.fetch_add(1, Release);
        while claim(s, gen, n_tasks).is_some() {
            s.done.fetch_add(1, Release);
        }
    }
    // Every task is claimed; wait until the workers running some have finished them.
    let mut spins = 0u32;
    while s.done.load(Acquire) < n_tasks {
        spins = spins.wrapping_add(1);
        if spins & 1023 == 0 {
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

/// Sets the number of threads (the caller plus `n - 1` workers; `0` means
/// [`default_threads`]). Waits for a running job to finish first.
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
