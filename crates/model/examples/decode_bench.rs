//! Rough speed check: `cargo run -p model --release --example decode_bench -- [model] [n_prompt] [n_decode]`.
//! `model` is a path or a catalogue name (default smollm2-135m).

use std::time::Instant;

use model::{Batch, Model};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map(String::as_str).unwrap_or("smollm2-135m");
    let n_prompt: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let n_decode: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let path = hub::ensure(name).expect("model");
    let m = Model::load(path).expect("load");
    println!("{:?}", m.info());
    let vocab = m.info().vocab as u32;
    let prompt: Vec<u32> = (0..n_prompt as u32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();
    let mut cache = m.new_cache(1, n_prompt + n_decode + 1).unwrap();
    let mut logits = Vec::new();
    let t = Instant::now();
    m.forward(
        &Batch::from_tokens(&prompt, 0, 0, false),
        &mut cache,
        &mut logits,
    )
    .unwrap();
    let pp = t.elapsed().as_secs_f64();
    let mut batch = Batch::new();
    let t = Instant::now();
    for i in 0..n_decode {
        let tok = logits
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (j, &v)| if v > b.1 { (j, v) } else { b })
            .0 as u32;
        batch.clear();
        batch.push(tok, (n_prompt + i) as u32, 0, true);
        m.forward(&batch, &mut cache, &mut logits).unwrap();
    }
    let tg = t.elapsed().as_secs_f64();
    println!(
        "prompt {n_prompt} tokens: {:.1} tok/s; decode {n_decode} tokens: {:.1} tok/s ({} threads)",
        n_prompt as f64 / pp,
        n_decode as f64 / tg,
        kernels::num_threads()
    );
}
