//! The bidirectional mask of the block description (encoders), on the tiny llama weights run
//! as an encoder: no RoPE, every token sees its whole sequence.
//!
//! Without positions a bidirectional stack is permutation-equivariant: permuting the input
//! tokens permutes the output rows (up to summation order), which a causal mask breaks. Two
//! sequences of different lengths in one batch (two slots) give the rows each gives alone.

mod common;

use common::*;
use gguf::GgufFile;
use model::decoder::Decoder;
use model::desc::{AttnDesc, BlockDesc, DecoderDesc, Mask};
use model::hparams::HParams;
use model::{Batch, Model};

/// f32 summation-order noise on 512 logits of a 2-layer random model, times a margin; a
/// token that sees the wrong keys moves logits by more than 1e-2.
const TOL: f32 = 1e-4;

fn encoder(mask: Mask) -> Model {
    let path = tiny_dir("llama").join("model.f32.gguf");
    let file = GgufFile::open(&path).unwrap();
    let hp = HParams::read(&file, "llama").unwrap();
    let block = BlockDesc {
        attn: AttnDesc {
            mask,
            ..AttnDesc::default()
        },
        rope: None,
        ..BlockDesc::default()
    };
    let desc = DecoderDesc::uniform(hp.n_layer, block, None);
    let dec = Decoder::load(&file, hp, desc).unwrap();
    Model::from_architecture(file, Box::new(dec))
}

/// Every row's logits of `tokens` as one sequence in a fresh cache.
fn rows(m: &Model, tokens: &[u32]) -> Vec<f32> {
    let mut cache = m.new_cache(1, 64).unwrap();
    let mut out = Vec::new();
    m.forward(
        &Batch::from_tokens(tokens, 0, 0, true),
        &mut cache,
        &mut out,
    )
    .unwrap();
    out
}

/// Largest difference between row `i` of `b` and row `perm[i]` of `a`.
fn permuted_diff(a: &[f32], b: &[f32], perm: &[usize], vocab: usize) -> f32 {
    let mut err = 0f32;
    for (i, &p) in perm.iter().enumerate() {
        let d = max_abs_diff(
            &b[i * vocab..(i + 1) * vocab],
            &a[p * vocab..(p + 1) * vocab],
        );
        err = err.max(d);
    }
    err
}

#[test]
fn bidirectional_attention_is_permutation_equivariant() {
    let tokens = [17u32, 301, 5, 88, 420, 233, 64];
    let perm = [3usize, 0, 6, 2, 5, 1, 4];
    let permuted: Vec<u32> = perm.iter().map(|&p| tokens[p]).collect();
    let bi = encoder(Mask::Bidirectional);
    let vocab = bi.info().vocab;
    let err = permuted_diff(&rows(&bi, &tokens), &rows(&bi, &permuted), &perm, vocab);
    println!("bidirectional: permuted rows differ by {err:.3e}");
    assert!(err < TOL, "bidirectional rows not equivariant: {err}");
    // The same check fails for the causal mask: the test can tell the two apart.
    let causal = encoder(Mask::Causal);
    let err = permuted_diff(
        &rows(&causal, &tokens),
        &rows(&causal, &permuted),
        &perm,
        vocab,
    );
    println!("causal: permuted rows differ by {err:.3e}");
    assert!(
        err > 100.0 * TOL,
        "causal rows should depend on order: {err}"
    );
}

#[test]
fn sequences_of_different_lengths_share_a_batch() {
    let m = encoder(Mask::Bidirectional);
    let vocab = m.info().vocab;
    let (a, b) = ([9u32, 77, 310, 4, 150], [260u32, 31, 480]);
    let (ra, rb) = (rows(&m, &a), rows(&m, &b));
    // Interleaved: a0 b0 a1 b1 a2 b2 a3 a4, in slots 1 and 0 of a 2-slot cache.
    let mut batch = Batch::new();
    let (mut ia, mut ib) = (0, 0);
    while ia < a.len() || ib < b.len() {
        if ia < a.len() {
            batch.push(a[ia], ia as u32, 1, true);
            ia += 1;
        }
        if ib < b.len() {
            batch.push(b[ib], ib as u32, 0, true);
            ib += 1;
        }
    }
    let mut cache = m.new_cache(2, 64).unwrap();
    let mut out = Vec::new();
    m.forward(&batch, &mut cache, &mut out).unwrap();
    let (mut ja, mut jb) = (0, 0);
    for (i, &slot) in batch.seq_ids.iter().enumerate() {
        let got = &out[i * vocab..(i + 1) * vocab];
        let (want, j) = if slot == 1 {
            ja += 1;
            (&ra, ja - 1)
        } else {
            jb += 1;
            (&rb, jb - 1)
        };
        let err = max_abs_diff(got, &want[j * vocab..(j + 1) * vocab]);
        assert!(err < TOL, "row {i} (slot {slot}) differs by {err}");
    }
}
