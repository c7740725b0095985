//! Refactoring check: one line per model with a digest of the exact bits of its logits over a
//! fixed workload, so two builds can be compared bit for bit (`LUME_CPU=scalar` for the
//! reference level):
//!
//! ```text
//! cargo run -p model --release --example logits_digest -- testdata/tiny/*/model.*.gguf smollm2-135m
//! ```
//!
//! The workload: 40 tokens as one batch (every row's logits) in slot 0; the same tokens one per
//! step in slot 1; then 8 steps of both slots in one batch; all again in a windowed cache.
use model::{Batch, KvType, Model};

/// FNV-1a over the bits of every value.
fn digest(h: &mut u64, v: &[f32]) {
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            *h ^= b as u64;
            *h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
}

fn run(m: &Model, windowed: bool, h: &mut u64) {
    let vocab = m.info().vocab as u32;
    let tokens: Vec<u32> = (0..40u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let mut cache = if windowed {
        m.new_cache_windowed(2, 64, KvType::F16).unwrap()
    } else {
        m.new_cache(2, 64).unwrap()
    };
    let mut logits = Vec::new();
    m.forward(
        &Batch::from_tokens(&tokens, 0, 0, true),
        &mut cache,
        &mut logits,
    )
    .unwrap();
    digest(h, &logits);
    for (i, &t) in tokens.iter().enumerate() {
        let mut b = Batch::new();
        b.push(t, i as u32, 1, true);
        m.forward(&b, &mut cache, &mut logits).unwrap();
        digest(h, &logits);
    }
    for i in 0..8u32 {
        let mut b = Batch::new();
        b.push((i * 31 + 5) % vocab, 40 + i, 0, true);
        b.push((i * 17 + 3) % vocab, 40 + i, 1, true);
        m.forward(&b, &mut cache, &mut logits).unwrap();
        digest(h, &logits);
    }
}

fn main() {
    for arg in std::env::args().skip(1) {
        let path = hub::ensure(&arg).unwrap();
        let m = Model::load(&path).unwrap();
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        run(&m, false, &mut h);
        run(&m, true, &mut h);
        println!("{h:016x}  {arg}");
    }
}
