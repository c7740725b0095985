//! Quick single-shape timing of one matrix product (for kernel work; criterion has the
//! figures that go into docs): `cargo run --release -p kernels --example kbench -- Q5_0 896 896 512`.
use gguf::GgmlType;
use kernels::{matmul, quantize_row, QMatrix};
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let ty = GgmlType::from_name(&a[1].to_uppercase()).expect("type");
    let rows: usize = a[2].parse().unwrap();
    let cols: usize = a[3].parse().unwrap();
    let n: usize = a[4].parse().unwrap();
    kernels::set_num_threads(a.get(5).map(|s| s.parse().unwrap()).unwrap_or(1));
    let rb = cols / ty.block_size() * ty.type_size();
    let mut data = vec![0u8; rows * rb];
    let mut s = 0x9e3779b9u32;
    let mut row = vec![0f32; cols];
    for r in 0..rows {
        for v in row.iter_mut() {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            *v = (s as f32 / u32::MAX as f32 - 0.5) * 0.2;
        }
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
    let mut best = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        matmul(&w, &x, n, &mut y);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let macs = (rows * cols * n) as f64;
    println!(
        "{} {rows}x{cols} n={n}: best {:.3} ms, {:.1} GMAC/s",
        ty.name(),
        best * 1e3,
        macs / best / 1e9
    );
}
