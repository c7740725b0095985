//! Debug aid: writes one-pass and cached-decode logits of a fixed token sequence as raw f32:
//! `cargo run -p model --release --example dump_logits -- MODEL OUT_PREFIX`.
use model::{Batch, Model};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let m = Model::load(hub::ensure(&args[1]).unwrap()).unwrap();
    let vocab = m.info().vocab as u32;
    let tokens: Vec<u32> = (0..40u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let mut cache = m.new_cache(2, 64).unwrap();
    let mut one = Vec::new();
    m.forward(
        &Batch::from_tokens(&tokens, 0, 0, true),
        &mut cache,
        &mut one,
    )
    .unwrap();
    let mut cached = Vec::new();
    let mut logits = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        let mut b = Batch::new();
        b.push(t, i as u32, 1, true);
        m.forward(&b, &mut cache, &mut logits).unwrap();
        cached.extend_from_slice(&logits);
    }
    let dump = |name: &str, v: &[f32]| {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(format!("{}_{name}.bin", args[2]), bytes).unwrap();
    };
    dump("one", &one);
    dump("cached", &cached);
}
