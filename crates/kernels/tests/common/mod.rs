//! Helpers shared by the matmul test binaries: the types, the levels, random inputs.
#![allow(dead_code)]

use gguf::GgmlType;
use kernels::{quantize_row, Level};
use rand::rngs::StdRng;
use rand::Rng;

/// Every type with an integer kernel.
pub const QTYPES: [GgmlType; 10] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// The dispatch levels this CPU has.
pub fn levels() -> Vec<Level> {
    Level::ALL.into_iter().filter(|l| l.available()).collect()
}

/// `n` values in `±scale`, with some 8x outliers so block scales differ a lot.
pub fn rand_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let big = if i % 97 == 3 { 8.0 } else { 1.0 };
            rng.gen_range(-1.0f32..1.0) * scale * big
        })
        .collect()
}

/// Random weights of `ty`, `[rows, cols]`, and their dequantized values.
pub fn weights(rng: &mut StdRng, ty: GgmlType, rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let f = rand_vec(rng, rows * cols, 0.5);
    let rb = cols / ty.block_size() * ty.type_size();
    let mut data = vec![0u8; rows * rb];
    for r in 0..rows {
        quantize_row(
            ty,
            &f[r * cols..(r + 1) * cols],
            &mut data[r * rb..(r + 1) * rb],
        )
        .unwrap();
    }
    let mut deq = vec![0f32; rows * cols];
    for r in 0..rows {
        kernels::dequantize_row(
            ty,
            &data[r * rb..(r + 1) * rb],
            &mut deq[r * cols..(r + 1) * cols],
        )
        .unwrap();
    }
    (data, deq)
}
