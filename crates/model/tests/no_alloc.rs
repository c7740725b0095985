//! The decode loop allocates nothing: after two warm-up steps, single-token forward passes
//! (quantized matrix products on the pool, attention, norms, logits) make no heap allocation
//! on any thread. Counted with a global allocator wrapper.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::tiny_dir;
use model::{Batch, Model};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System.alloc` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as `dealloc` / `alloc`.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Prompt, two warm-up steps, then 16 counted steps; returns the allocations counted.
fn decode_allocations(m: &Model) -> usize {
    let mut cache = m.new_cache(1, 128).unwrap();
    let mut logits = Vec::new();
    let prompt: Vec<u32> = (1..12).collect();
    m.forward(
        &Batch::from_tokens(&prompt, 0, 0, false),
        &mut cache,
        &mut logits,
    )
    .unwrap();
    let mut batch = Batch::new();
    let mut pos = prompt.len() as u32;
    let mut step = |batch: &mut Batch, logits: &mut Vec<f32>| {
        batch.clear();
        batch.push(7 + pos % 5, pos, 0, true);
        m.forward(batch, &mut cache, logits).unwrap();
        pos += 1;
    };
    step(&mut batch, &mut logits);
    step(&mut batch, &mut logits);
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..16 {
        step(&mut batch, &mut logits);
    }
    ALLOCS.load(Ordering::SeqCst) - before
}

/// One test function for all models: the counter is process-wide, and the test harness
/// allocates when another test of this binary finishes.
#[test]
fn decode_loop_does_not_allocate() {
    for arch in ["llama", "qwen2", "gemma3", "gpt2"] {
        let m = Model::load(tiny_dir(arch).join("model.f32.gguf")).unwrap();
        let n = decode_allocations(&m);
        println!("{arch}: {n} allocations in 16 decode steps");
        assert_eq!(
            n, 0,
            "{arch}: the decode loop allocated {n} times in 16 steps"
        );
    }
    let path = common::model_file("smollm2-135m");
    let m = Model::load(path).unwrap();
    let n = decode_allocations(&m);
    println!("smollm2-135m: {n} allocations in 16 decode steps");
    assert_eq!(
        n, 0,
        "smollm2-135m: the decode loop allocated {n} times in 16 steps"
    );
}
