//! Matrix products over quantized weights.

use crate::{dequantize_row, QMatrix};

/// `y[t, r] = Σ_c x[t, c] · W[r, c]` for `t < n`.
///
/// `x`: `[n, w.cols]`, `y`: `[n, w.rows]`. Reference implementation: dequantizes one row at a
/// time (the fast paths come later and are tested against this one).
pub fn matmul(w: &QMatrix, x: &[f32], n: usize, y: &mut [f32]) {
    assert_eq!(x.len(), n * w.cols);
    assert_eq!(y.len(), n * w.rows);
    let mut row = vec![0f32; w.cols];
    for r in 0..w.rows {
        dequantize_row(w.ty, w.row(r), &mut row).expect("type checked at load");
        for t in 0..n {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            y[t * w.rows + r] = row.iter().zip(xt).map(|(a, b)| a * b).sum();
        }
    }
}
