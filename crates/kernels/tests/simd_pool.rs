//! The thread pool: every task runs exactly once, nesting and concurrent callers fall back to
//! serial, panics come back to the caller.

use std::sync::atomic::{AtomicUsize, Ordering};

fn counts(n: usize) -> Vec<AtomicUsize> {
    (0..n).map(|_| AtomicUsize::new(0)).collect()
}

#[test]
fn every_task_runs_once() {
    for n in [0, 1, 2, 3, 17, 1000] {
        for _ in 0..50 {
            let c = counts(n);
            kernels::parallel_for(n, &|i| {
                c[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(c.iter().all(|v| v.load(Ordering::Relaxed) == 1), "n={n}");
        }
    }
}

#[test]
fn many_tiny_jobs() {
    let total = AtomicUsize::new(0);
    for _ in 0..20_000 {
        kernels::parallel_for(4, &|i| {
            total.fetch_add(i, Ordering::Relaxed);
        });
    }
    assert_eq!(total.load(Ordering::Relaxed), 20_000 * 6);
}

#[test]
fn nested_and_concurrent_calls() {
    let c = counts(64);
    std::thread::scope(|sc| {
        for _ in 0..3 {
            sc.spawn(|| {
                kernels::parallel_for(8, &|i| {
                    kernels::parallel_for(8, &|j| {
                        c[i * 8 + j].fetch_add(1, Ordering::Relaxed);
                    });
                });
            });
        }
    });
    assert!(c.iter().all(|v| v.load(Ordering::Relaxed) == 3));
}

#[test]
fn a_panicking_task_reaches_the_caller() {
    for bad in [0usize, 5, 99] {
        let r = std::panic::catch_unwind(|| {
            kernels::parallel_for(100, &|i| {
                if i == bad {
                    panic!("task {i}");
                }
            });
        });
        assert!(r.is_err());
    }
    // The pool still works afterwards.
    let c = counts(10);
    kernels::parallel_for(10, &|i| {
        c[i].fetch_add(1, Ordering::Relaxed);
    });
    assert!(c.iter().all(|v| v.load(Ordering::Relaxed) == 1));
}

#[test]
fn default_thread_count_is_sane() {
    let n = kernels::num_threads();
    let avail = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    assert!(
        n >= 1 && n <= avail.max(1),
        "{n} threads, {avail} available"
    );
}
