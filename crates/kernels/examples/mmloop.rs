//! Runs one matmul shape in a loop, for profiling under `perf stat` (CPU time is robust when
//! the machine is shared, wall time is not):
//! `mmloop TYPE ROWS COLS N ITERS [THREADS]`, e.g. `perf stat -e task-clock mmloop Q4_1 576 576 512 50 1`.
//! Also prints the best single iteration as GMAC/s (multiply-adds per second), the figure the
//! kernel rows of docs/PERFORMANCE.md quote.

use gguf::GgmlType;
use kernels::{matmul, quantize_row, QMatrix};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!("usage: mmloop TYPE ROWS COLS N ITERS [THREADS]");
        std::process::exit(2);
    }
    let ty = GgmlType::from_name(&a[1]).expect("type name");
    let (rows, cols, n, iters): (usize, usize, usize, usize) = (
        a[2].parse().unwrap(),
        a[3].parse().unwrap(),
        a[4].parse().unwrap(),
        a[5].parse().unwrap(),
    );
    if let Some(t) = a.get(6) {
        kernels::set_num_threads(t.parse().unwrap());
    }
    let rb = cols / ty.block_size() * ty.type_size();
    let mut data = vec![0u8; rows * rb];
    let row: Vec<f32> = (0..cols)
        .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 500.0)
        .collect();
    for r in 0..rows {
        quantize_row(ty, &row, &mut data[r * rb..(r + 1) * rb]).unwrap();
    }
    let w = QMatrix {
        ty,
        data: &data,
        rows,
        cols,
    };
    let x: Vec<f32> = (0..n * cols)
        .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
        .collect();
    let mut y = vec![0f32; n * rows];
    matmul(&w, &x, n, &mut y);
    let t = std::time::Instant::now();
    let mut best = f64::MAX;
    for _ in 0..iters {
        let ti = std::time::Instant::now();
        matmul(&w, &x, n, &mut y);
        best = best.min(ti.elapsed().as_secs_f64());
    }
    let s = t.elapsed().as_secs_f64();
    let flop = 2.0 * (rows * cols * n * iters) as f64;
    println!(
        "{} {rows}x{cols} n={n}: {:.3} ms/iter wall, {:.1} GFLOP/s wall, {:.2} GB/s weights wall; \
         best {:.3} ms = {:.1} GMAC/s",
        ty.name(),
        s * 1e3 / iters as f64,
        flop / s / 1e9,
        (data.len() * iters) as f64 / s / 1e9,
        best * 1e3,
        (rows * cols * n) as f64 / best / 1e9
    );
}
