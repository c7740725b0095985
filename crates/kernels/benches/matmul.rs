//! Matrix products on the default model's shapes (SmolLM2-135M: 576 embd, 1536 ffn, 49152
//! vocab) for one token (tg: reported as weight GB/s) and 512 tokens (pp: reported as
//! elements/s = FLOP/s, 2 per multiply-add).
//!
//! `LUME_CPU=avx2 cargo bench -p kernels` compares levels; `LUME_BENCH_THREADS` sets threads.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gguf::GgmlType;
use kernels::{matmul, quantize_row, QMatrix};
use std::time::Duration;

/// (rows, cols): attention q/o, ffn gate/up, ffn down, output head.
const SHAPES: [(usize, usize); 4] = [(576, 576), (1536, 576), (576, 1536), (49152, 576)];

fn weights(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
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
    data
}

fn bench(c: &mut Criterion) {
    if let Some(t) = std::env::var("LUME_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        kernels::set_num_threads(t);
    }
    eprintln!(
        "level {}, {} threads",
        kernels::cpu::level(),
        kernels::num_threads()
    );
    let types = [
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_0,
        GgmlType::Q6_K,
        GgmlType::Q4_0,
        GgmlType::F32,
    ];
    let filter_types: Option<Vec<String>> = std::env::var("LUME_BENCH_TYPES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_uppercase()).collect());
    for ty in types {
        if let Some(f) = &filter_types {
            if !f.iter().any(|t| t == ty.name()) {
                continue;
            }
        }
        let mut g = c.benchmark_group(format!("matmul/{}", ty.name()));
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(10);
        for (rows, cols) in SHAPES {
            if cols % ty.block_size() != 0 {
                continue;
            }
            let data = weights(ty, rows, cols);
            let w = QMatrix {
                ty,
                data: &data,
                rows,
                cols,
            };
            for n in [1usize, 512] {
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
                    .collect();
                let mut y = vec![0f32; n * rows];
                if n == 1 {
                    g.throughput(Throughput::Bytes(data.len() as u64));
                } else {
                    g.throughput(Throughput::Elements((2 * rows * cols * n) as u64));
                }
                g.bench_function(BenchmarkId::new(format!("{rows}x{cols}"), n), |b| {
                    b.iter(|| matmul(&w, &x, n, &mut y))
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
