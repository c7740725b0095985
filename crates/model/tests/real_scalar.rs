//! Batching on a real model with the scalar kernels (`LUME_CPU=scalar`, set before the first
//! kernel call of this test binary), whose sums do not depend on the batch size: one pass,
//! token-by-token decoding and two slots decoded together must give bit-identical logits.
//! (With SIMD kernels they differ slightly; see `tests/real.rs`.)

mod common;

use model::Batch;

#[test]
fn smollm2_batching_is_exact_with_scalar_kernels() {
    std::env::set_var("LUME_CPU", "scalar");
    assert_eq!(kernels::cpu::level(), kernels::Level::Scalar);
    let m = common::real_model("smollm2-135m");
    let vocab = m.info().vocab;
    let a: Vec<u32> = vec![1, 9690, 314, 260, 1345, 282, 4649, 314];
    let b: Vec<u32> = vec![1, 2683, 2056, 253, 655, 30, 339, 1848, 281, 1341, 4025];

    // One pass per sequence, every row.
    let mut cache = m.new_cache(3, 32).unwrap();
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    m.forward(&Batch::from_tokens(&a, 0, 0, true), &mut cache, &mut ra)
        .unwrap();
    m.forward(&Batch::from_tokens(&b, 0, 1, true), &mut cache, &mut rb)
        .unwrap();

    // Slot 2: `a` token by token.
    let mut row = Vec::new();
    let mut by_token = Vec::new();
    for (i, &t) in a.iter().enumerate() {
        m.forward(
            &Batch::from_tokens(&[t], i as u32, 2, true),
            &mut cache,
            &mut row,
        )
        .unwrap();
        by_token.extend_from_slice(&row);
    }
    assert_eq!(by_token, ra, "token-by-token vs one pass");

    // Both sequences interleaved in one batch, in a fresh cache.
    let mut cache = m.new_cache(2, 32).unwrap();
    let mut batch = Batch::new();
    for i in 0..b.len() {
        if i < a.len() {
            batch.push(a[i], i as u32, 1, true);
        }
        batch.push(b[i], i as u32, 0, true);
    }
    let mut logits = Vec::new();
    m.forward(&batch, &mut cache, &mut logits).unwrap();
    let (mut ga, mut gb) = (Vec::new(), Vec::new());
    for (j, &slot) in batch.seq_ids.iter().enumerate() {
        let r = &logits[j * vocab..(j + 1) * vocab];
        if slot == 1 {
            ga.extend_from_slice(r);
        } else {
            gb.extend_from_slice(r);
        }
    }
    assert_eq!(ga, ra, "sequence a in a shared batch");
    assert_eq!(gb, rb, "sequence b in a shared batch");
}
