//! The sandwich architectures (gemma2, gemma3, olmo2) beyond their reference logits
//! (`tiny_archs.rs`): the windowed KV cache (sliding layers as ring buffers) against the plain
//! one, multi-slot batches, truncation limits, and load errors naming the key or tensor.

mod common;

use common::{argmax, max_abs_diff, tiny_dir, tokens};
use gguf::{GgufFile, GgufWriter, Value};
use model::{Batch, KvCache, KvType, Model, MAX_BATCH};

/// Feeds `toks` to `slot` in chunks of the given sizes (cycled), logits for every token.
fn feed(m: &Model, cache: &mut KvCache, slot: usize, toks: &[u32], chunks: &[usize]) -> Vec<f32> {
    let mut all = Vec::new();
    let mut logits = Vec::new();
    let (mut start, mut c) = (cache.len(slot), 0);
    let end = start + toks.len();
    let base = start;
    while start < end {
        let n = chunks[c % chunks.len()].min(end - start);
        c += 1;
        let b = Batch::from_tokens(
            &toks[start - base..start - base + n],
            start as u32,
            slot,
            true,
        );
        m.forward(&b, cache, &mut logits).unwrap();
        all.extend_from_slice(&logits);
        start += n;
    }
    all
}

fn tiny(arch: &str) -> Model {
    Model::load(tiny_dir(arch).join("model.f32.gguf")).unwrap()
}

/// Ring-buffered sliding layers give exactly the plain cache's logits, over sequences much
/// longer than the ring (window 8 + MAX_BATCH - 1 = 519 rows), with full batches, odd chunks and
/// single tokens.
#[test]
fn windowed_cache_matches_plain_cache() {
    for arch in ["gemma3", "gemma2"] {
        let m = tiny(arch);
        let n_ctx = 1400;
        let toks = tokens(1300, 512, 7);
        let mut plain = m.new_cache(1, n_ctx).unwrap();
        let mut ring = m.new_cache_windowed(1, n_ctx, KvType::F32).unwrap();
        println!(
            "{arch}: plain cache {} KiB, windowed {} KiB",
            plain.kv_bytes() / 1024,
            ring.kv_bytes() / 1024
        );
        assert!(ring.kv_bytes() < plain.kv_bytes());
        for chunks in [&[MAX_BATCH][..], &[37, 1, 1, 200, 511, 3]] {
            plain.clear();
            ring.clear();
            let a = feed(&m, &mut plain, 0, &toks, chunks);
            let b = feed(&m, &mut ring, 0, &toks, chunks);
            assert_eq!(a.len(), 1300 * 512);
            // Same arithmetic in the same order: bit-identical.
            assert_eq!(max_abs_diff(&a, &b), 0.0, "{arch} chunks {chunks:?}");
        }
    }
}

/// Two sequences interleaved in one batch, each continuing its own ring.
#[test]
fn windowed_cache_with_two_slots() {
    let m = tiny("gemma3");
    let (t0, t1) = (tokens(900, 512, 1), tokens(900, 512, 2));
    let mut plain = m.new_cache(1, 1000).unwrap();
    let want0 = feed(&m, &mut plain, 0, &t0, &[MAX_BATCH]);
    plain.clear();
    let want1 = feed(&m, &mut plain, 0, &t1, &[MAX_BATCH]);

    let mut ring = m.new_cache_windowed(2, 1000, KvType::F32).unwrap();
    let mut logits = Vec::new();
    let (mut got0, mut got1) = (Vec::new(), Vec::new());
    let mut pos = 0;
    while pos < 900 {
        // 256 tokens of each slot per batch, interleaved: 512 in all.
        let n = 256.min(900 - pos);
        let mut b = Batch::new();
        for i in 0..n {
            b.push(t0[pos + i], (pos + i) as u32, 0, true);
            b.push(t1[pos + i], (pos + i) as u32, 1, true);
        }
        m.forward(&b, &mut ring, &mut logits).unwrap();
        for i in 0..n {
            got0.extend_from_slice(&logits[(2 * i) * 512..(2 * i + 1) * 512]);
            got1.extend_from_slice(&logits[(2 * i + 1) * 512..(2 * i + 2) * 512]);
        }
        pos += n;
    }
    // Different batching (two slots per batch here, one above) takes different attention paths
    // (per token vs prompt tiles), which round differently: equal within BATCHING_TOL.
    assert!(max_abs_diff(&got0, &want0) <= BATCHING_TOL);
    assert!(max_abs_diff(&got1, &want1) <= BATCHING_TOL);
}

/// Logit difference allowed between two batchings of the same tokens (f32 rounding of the
/// tiled prompt attention vs the per-token one; 0 at `LUME_CPU=scalar`).
const BATCHING_TOL: f32 = 1e-4;

/// A windowed cache can go back as far as its rings remember (at least MAX_BATCH positions),
/// and then continues exactly like the plain cache; further back is a clear error.
#[test]
fn windowed_cache_truncation() {
    let m = tiny("gemma3");
    let toks = tokens(1000, 512, 3);
    let mut plain = m.new_cache(1, 1100).unwrap();
    let want = feed(&m, &mut plain, 0, &toks, &[MAX_BATCH]);
    let mut ring = m.new_cache_windowed(1, 1100, KvType::F32).unwrap();
    feed(&m, &mut ring, 0, &toks, &[MAX_BATCH]);

    let back = 1000 - MAX_BATCH;
    assert!(ring.can_truncate(0, back));
    assert!(!ring.can_truncate(0, back - 1));
    assert!(ring.can_truncate(0, 0));
    assert!(plain.can_truncate(0, 1));
    let e = ring.truncate(0, back - 1).unwrap_err().to_string();
    assert!(e.contains("sliding-window"), "{e}");
    assert_eq!(ring.len(0), 1000, "a refused truncation changes nothing");

    ring.truncate(0, back).unwrap();
    let again = feed(&m, &mut ring, 0, &toks[back..], &[100, 1, 411]);
    assert!(max_abs_diff(&again, &want[back * 512..]) <= BATCHING_TOL);

    // Cleared, it starts over like new.
    ring.truncate(0, 0).unwrap();
    let fresh = feed(&m, &mut ring, 0, &toks[..50], &[50]);
    assert_eq!(max_abs_diff(&fresh, &want[..50 * 512]), 0.0);
}

/// Without sliding layers a windowed cache is a plain one.
#[test]
fn windowed_cache_without_sliding_layers_is_plain() {
    let m = tiny("olmo2");
    let a = m.new_cache(1, 2000).unwrap();
    let b = m.new_cache_windowed(1, 2000, KvType::F32).unwrap();
    assert_eq!(a.kv_bytes(), b.kv_bytes());
    let g = tiny("gemma3");
    // 5 sliding layers of 519 rows, 1 global of 2000, 2 x 64 values per row, f16.
    let c = g.new_cache_windowed(1, 2000, KvType::F16).unwrap();
    assert_eq!(c.kv_bytes(), (5 * 519 + 2000) * 128 * 2);
}

/// Greedy decoding from a windowed f16 cache stays close to the f32 references.
#[test]
fn windowed_f16_cache_greedy_close_to_reference() {
    for arch in ["gemma2", "gemma3"] {
        let m = tiny(arch);
        let exp = common::expected(arch);
        for seq in exp["sequences"].as_array().unwrap() {
            let prompt = common::ids(&seq["token_ids"]);
            let want_ids = common::ids(&seq["greedy_16"]);
            let want = common::read_f32(
                &tiny_dir(arch).join(format!("greedy_logits_seq{}.f32.bin", prompt.len())),
            );
            let mut cache = m.new_cache_windowed(1, 1024, KvType::F16).unwrap();
            let (ids, rows) = common::greedy(&m, &mut cache, 0, &prompt, 16);
            let err = max_abs_diff(&rows, &want);
            println!(
                "{arch} seq{}: f16 windowed cache, greedy err {err:.2e}",
                prompt.len()
            );
            assert_eq!(ids, want_ids);
            assert!(err < 5e-2, "{arch}: {err}");
            assert_eq!(argmax(&rows[..512]), want_ids[0] as usize);
        }
    }
}

/// Rebuilds tiny `arch` with metadata and tensors edited (`None` drops) and loads it.
fn load_edited(
    arch: &str,
    edit_meta: impl Fn(&str, &Value) -> Option<Value>,
    drop_tensor: &str,
) -> Result<Model, String> {
    let f = GgufFile::open(tiny_dir(arch).join("model.f32.gguf")).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        if let Some(v) = edit_meta(k, v) {
            w.add(k.clone(), v);
        }
    }
    for t in &f.tensors {
        if t.name != drop_tensor {
            w.add_tensor(t.name.clone(), &t.dims, t.ty, f.tensor_data(t).to_vec())
                .unwrap();
        }
    }
    let file = GgufFile::from_bytes("edited.gguf", w.to_bytes()).unwrap();
    Model::from_gguf(file).map_err(|e| e.to_string())
}

fn set(key: &'static str, val: Value) -> impl Fn(&str, &Value) -> Option<Value> {
    move |k, v| Some(if k == key { val.clone() } else { v.clone() })
}

#[test]
fn load_errors_name_the_key_or_tensor() {
    let keep = |_: &str, v: &Value| Some(v.clone());
    assert!(load_edited("gemma3", keep, "").is_ok());
    for (arch, tensor) in [
        ("gemma3", "blk.2.attn_q_norm.weight"),
        ("gemma3", "blk.5.post_ffw_norm.weight"),
        ("gemma2", "blk.1.post_attention_norm.weight"),
        ("gemma2", "blk.0.ffn_norm.weight"),
        ("olmo2", "blk.1.attn_k_norm.weight"),
        ("olmo2", "output_norm.weight"),
    ] {
        let e = load_edited(arch, keep, tensor).unwrap_err();
        assert!(e.contains(tensor), "{arch} without {tensor}: {e}");
    }
    for (arch, key, val) in [
        ("gemma3", "gemma3.attention.sliding_window", Value::U32(0)),
        ("gemma3", "gemma3.rope.freq_base_swa", Value::F32(-1.0)),
        ("gemma3", "gemma3.rope.freq_base_swa", Value::F32(f32::NAN)),
        ("gemma2", "gemma2.attn_logit_softcapping", Value::F32(0.0)),
        (
            "gemma2",
            "gemma2.final_logit_softcapping",
            Value::F32(f32::INFINITY),
        ),
        (
            "gemma2",
            "gemma2.attention.sliding_window",
            Value::String("8".into()),
        ),
    ] {
        let e = load_edited(arch, set(key, val.clone()), "").unwrap_err();
        assert!(e.contains(key), "{key} = {val:?}: {e}");
    }
    // The sliding window is required for gemma2/gemma3.
    let key = "gemma3.attention.sliding_window";
    let e = load_edited("gemma3", |k, v| (k != key).then(|| v.clone()), "").unwrap_err();
    assert!(e.contains(key), "{e}");
}

/// A huge declared window is clamped to the context; the cache stays plain-sized at most.
#[test]
fn huge_window_is_harmless() {
    let m = load_edited(
        "gemma3",
        set("gemma3.attention.sliding_window", Value::U32(u32::MAX)),
        "",
    )
    .unwrap();
    let a = m.new_cache(1, 300).unwrap();
    let b = m.new_cache_windowed(1, 300, KvType::F32).unwrap();
    assert_eq!(a.kv_bytes(), b.kv_bytes());
}

/// Linear RoPE scaling (larger gemma3 models) changes only the global layers: factor 1 is the
/// unscaled model, factor 8 differs; an unknown scaling type is refused.
#[test]
fn gemma3_linear_rope_scaling() {
    let toks = tokens(40, 512, 9);
    let logits = |m: &Model| common::prompt_logits(m, &toks);
    let base = logits(&tiny("gemma3"));
    let edited = |ty: &str, f: f32| {
        let f0 = GgufFile::open(tiny_dir("gemma3").join("model.f32.gguf")).unwrap();
        let mut w = GgufWriter::new();
        for (k, v) in &f0.metadata {
            w.add(k.clone(), v.clone());
        }
        w.add("gemma3.rope.scaling.type", Value::String(ty.into()));
        w.add("gemma3.rope.scaling.factor", Value::F32(f));
        for t in &f0.tensors {
            w.add_tensor(t.name.clone(), &t.dims, t.ty, f0.tensor_data(t).to_vec())
                .unwrap();
        }
        Model::from_gguf(GgufFile::from_bytes("scaled.gguf", w.to_bytes()).unwrap())
    };
    assert_eq!(
        max_abs_diff(&logits(&edited("linear", 1.0).unwrap()), &base),
        0.0
    );
    let d = max_abs_diff(&logits(&edited("linear", 8.0).unwrap()), &base);
    assert!(d > 1e-2, "scaling had no effect ({d})");
    let e = edited("yarn", 8.0).unwrap_err().to_string();
    assert!(e.contains("gemma3.rope.scaling.type"), "{e}");
    let e = edited("linear", 0.0).unwrap_err().to_string();
    assert!(e.contains("gemma3.rope.scaling.factor"), "{e}");
}
