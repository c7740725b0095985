//! Beyond the reference logits of `tiny_archs.rs` for phi3, gpt2, starcoder2, qwen3moe and
//! mixtral: quantized fused/stacked tensors (row views at the right byte offsets), several
//! sequences in one batch through the MoE gather/scatter, learned-position limits, and load
//! errors naming the key or tensor at fault.

mod common;

use common::*;
use gguf::{GgmlType, GgufFile, GgufWriter, Value};
use model::{Batch, Model, ModelError};

/// Rebuilds the tiny model of `folder`, editing metadata (`None` drops a key) and tensors
/// (`None` drops a tensor).
fn rebuild(
    folder: &str,
    edit_meta: impl Fn(&str, &Value) -> Option<Value>,
    edit_tensor: impl Fn(&str, &[u64], GgmlType, &[u8]) -> Option<(Vec<u64>, GgmlType, Vec<u8>)>,
) -> Result<Model, ModelError> {
    let f = GgufFile::open(tiny_dir(folder).join("model.f32.gguf")).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        if let Some(v) = edit_meta(k, v) {
            w.add(k.clone(), v);
        }
    }
    for t in &f.tensors {
        if let Some((dims, ty, data)) = edit_tensor(&t.name, &t.dims, t.ty, f.tensor_data(t)) {
            w.add_tensor(t.name.clone(), &dims, ty, data).unwrap();
        }
    }
    Model::from_gguf(GgufFile::from_bytes(format!("{folder}-edited.gguf"), w.to_bytes()).unwrap())
}

fn keep_meta(_: &str, v: &Value) -> Option<Value> {
    Some(v.clone())
}

fn keep_tensor(
    _: &str,
    d: &[u64],
    ty: GgmlType,
    b: &[u8],
) -> Option<(Vec<u64>, GgmlType, Vec<u8>)> {
    Some((d.to_vec(), ty, b.to_vec()))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Quantizes every row of an F32 tensor's bytes to `ty`.
fn quantize_rows(ty: GgmlType, cols: usize, data: &[u8]) -> Vec<u8> {
    let row_bytes = ty.row_bytes(cols as u64).unwrap() as usize;
    let mut q = vec![0u8; row_bytes];
    let mut out = Vec::new();
    for row in f32s(data).chunks_exact(cols) {
        kernels::quantize_row(ty, row, &mut q).unwrap();
        out.extend_from_slice(&q);
    }
    out
}

fn seqs(folder: &str) -> (Vec<u32>, Vec<u32>) {
    let exp = expected(folder);
    let s = exp["sequences"].as_array().unwrap();
    (ids(&s[0]["token_ids"]), ids(&s[1]["token_ids"]))
}

/// phi3 with its fused tensors quantized, against the same model with each fused tensor split
/// into separate tensors of the same quantized rows (`attn_q/k/v`, `ffn_gate` + `ffn_up`): the
/// row views must read exactly those bytes, so the logits agree to the last bits.
#[test]
fn quantized_fused_tensors_equal_their_split_form() {
    let f = GgufFile::open(tiny_dir("phi3").join("model.f32.gguf")).unwrap();
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_1] {
        let (mut fused, mut split) = (GgufWriter::new(), GgufWriter::new());
        for (k, v) in &f.metadata {
            fused.add(k.clone(), v.clone());
            split.add(k.clone(), v.clone());
        }
        for t in &f.tensors {
            let data = f.tensor_data(t);
            let name = t.name.as_str();
            let parts: &[(&str, usize)] = if name.ends_with("attn_qkv.weight") {
                &[("attn_q", 64), ("attn_k", 64), ("attn_v", 64)]
            } else if name.ends_with("ffn_up.weight") {
                &[("ffn_gate", 128), ("ffn_up", 128)]
            } else {
                fused
                    .add_tensor(name, &t.dims, t.ty, data.to_vec())
                    .unwrap();
                split
                    .add_tensor(name, &t.dims, t.ty, data.to_vec())
                    .unwrap();
                continue;
            };
            let cols = t.dims[0] as usize;
            let q = quantize_rows(ty, cols, data);
            fused.add_tensor(name, &t.dims, ty, q.clone()).unwrap();
            let row_bytes = ty.row_bytes(cols as u64).unwrap() as usize;
            let blk = name.rsplit_once('.').unwrap().0.rsplit_once('.').unwrap().0; // "blk.N"
            let mut start = 0;
            for &(part, rows) in parts {
                let bytes = q[start * row_bytes..(start + rows) * row_bytes].to_vec();
                let dims = [cols as u64, rows as u64];
                split
                    .add_tensor(format!("{blk}.{part}.weight"), &dims, ty, bytes)
                    .unwrap();
                start += rows;
            }
        }
        let load = |w: &GgufWriter, n: &str| {
            Model::from_gguf(GgufFile::from_bytes(n, w.to_bytes()).unwrap()).unwrap()
        };
        let (mf, ms) = (load(&fused, "fused.gguf"), load(&split, "split.gguf"));
        let (_, b) = seqs("phi3");
        let err = max_abs_diff(&prompt_logits(&mf, &b), &prompt_logits(&ms, &b));
        println!("phi3 {ty}: fused vs split logits differ by {err:.3e}");
        assert!(err < 1e-5, "phi3 {ty}: fused vs split differ by {err}");
    }
}

/// Expert `e`, row `r` of a quantized 3-D stack is the row `e * rows + r` of its bytes; the
/// parts of a fused tensor likewise.
#[test]
fn stacked_and_fused_views_read_the_right_rows() {
    let (cols, rows, n) = (64usize, 5usize, 3usize);
    let vals: Vec<f32> = (0..cols * rows * n)
        .map(|i| ((i * 7919) % 211) as f32 / 50.0 - 2.0)
        .collect();
    for ty in [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::F16] {
        let q = quantize_rows(ty, cols, &bytes(&vals));
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("test".into()));
        let stack_dims = [cols as u64, rows as u64, n as u64];
        w.add_tensor("stack", &stack_dims, ty, q.clone()).unwrap();
        let fused_dims = [cols as u64, (rows * n) as u64];
        w.add_tensor("fused.weight", &fused_dims, ty, q.clone())
            .unwrap();
        let f = GgufFile::from_bytes("stack.gguf", w.to_bytes()).unwrap();
        let ld = model::weights::Loader::new(&f);
        let experts = ld.matrix_stack("stack", n, rows, cols).unwrap();
        let row_bytes = ty.row_bytes(cols as u64).unwrap() as usize;
        for (e, m) in experts.iter().enumerate() {
            assert_eq!((m.rows, m.cols), (rows, cols));
            for r in 0..rows {
                let want = &q[(e * rows + r) * row_bytes..][..row_bytes];
                assert_eq!(m.q(&f).row(r), want, "{ty} expert {e} row {r}");
            }
        }
        // Wrong shapes are errors naming the tensor.
        let e = ld.matrix_stack("stack", n + 1, rows, cols).unwrap_err();
        assert!(e.to_string().contains("stack"), "{e}");
        // A fused tensor split into parts of 4, 6 and 5 rows.
        let parts = ld.linear_split("fused", &[4, 6, 5], cols).unwrap();
        let mut start = 0;
        for p in &parts {
            for r in 0..p.rows() {
                let want = &q[(start + r) * row_bytes..][..row_bytes];
                assert_eq!(p.w.q(&f).row(r), want, "{ty} part row {r}");
            }
            start += p.rows();
        }
        assert!(ld.linear_split("fused", &[4, 6, 6], cols).is_err());
    }
}

/// Two prompts in one batch (different slots) give the logits of separate runs: the MoE
/// gathers each expert's tokens across sequences; gpt2 adds per-token learned positions.
#[test]
fn two_sequences_in_one_batch_match_separate_runs() {
    for folder in ["qwen3moe", "mixtral", "gpt2", "starcoder2", "phi3"] {
        let m = Model::load(tiny_dir(folder).join("model.f32.gguf")).unwrap();
        let vocab = m.info().vocab;
        let (a, b) = seqs(folder);
        let (ra, rb) = (prompt_logits(&m, &a), prompt_logits(&m, &b));
        let mut cache = m.new_cache(2, 64).unwrap();
        let mut batch = Batch::new();
        batch.push_seq(&b, 0, 1, true);
        batch.push_seq(&a, 0, 0, true);
        let mut logits = Vec::new();
        m.forward(&batch, &mut cache, &mut logits).unwrap();
        let eb = max_abs_diff(&logits[..b.len() * vocab], &rb);
        let ea = max_abs_diff(&logits[b.len() * vocab..], &ra);
        println!("{folder}: batched vs separate {ea:.3e} / {eb:.3e}");
        assert!(ea < 1e-5 && eb < 1e-5, "{folder}: {ea} {eb}");

        // One decode step for both slots in one batch.
        let (ta, tb) = (
            argmax(&ra[ra.len() - vocab..]),
            argmax(&rb[rb.len() - vocab..]),
        );
        batch.clear();
        batch.push(ta as u32, a.len() as u32, 0, true);
        batch.push(tb as u32, b.len() as u32, 1, true);
        m.forward(&batch, &mut cache, &mut logits).unwrap();
        let mut solo = m.new_cache(1, 64).unwrap();
        let (_, rows_a) = greedy(&m, &mut solo, 0, &a, 2);
        let err = max_abs_diff(&logits[..vocab], &rows_a[vocab..]);
        assert!(err < 1e-5, "{folder}: batched decode step differs by {err}");
    }
}

#[test]
fn gpt2_positions_beyond_the_learned_table_are_an_error() {
    let m = Model::load(tiny_dir("gpt2").join("model.f32.gguf")).unwrap();
    // The table has 256 positions; a cache may be made longer.
    let mut cache = m.new_cache(1, 300).unwrap();
    let mut logits = Vec::new();
    let toks = vec![1u32; 256];
    m.forward(
        &Batch::from_tokens(&toks, 0, 0, false),
        &mut cache,
        &mut logits,
    )
    .unwrap();
    assert_eq!(cache.len(0), 256);
    let e = m
        .forward(
            &Batch::from_tokens(&[1], 256, 0, true),
            &mut cache,
            &mut logits,
        )
        .unwrap_err();
    assert!(matches!(e, ModelError::BadBatch(_)), "{e}");
    assert!(e.to_string().contains("256"), "{e}");
    assert_eq!(cache.len(0), 256);
}

fn load_err(
    folder: &str,
    edit_meta: impl Fn(&str, &Value) -> Option<Value>,
    edit_tensor: impl Fn(&str, &[u64], GgmlType, &[u8]) -> Option<(Vec<u64>, GgmlType, Vec<u8>)>,
) -> String {
    match rebuild(folder, edit_meta, edit_tensor) {
        Ok(_) => panic!("{folder}: edited model loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_expert_metadata_is_named() {
    for (folder, arch) in [("qwen3moe", "qwen3moe"), ("mixtral", "llama")] {
        for (suffix, val) in [
            ("expert_used_count", Value::U32(5)),
            ("expert_used_count", Value::U32(0)),
            ("expert_count", Value::U32(1 << 30)),
        ] {
            let key = format!("{arch}.{suffix}");
            let e = load_err(
                folder,
                |k, v| Some(if k == key { val.clone() } else { v.clone() }),
                keep_tensor,
            );
            assert!(e.contains(&key), "{key}: {e}");
        }
    }
    // qwen3moe without experts at all.
    let e = load_err(
        "qwen3moe",
        |k, v| (k != "qwen3moe.expert_count").then(|| v.clone()),
        keep_tensor,
    );
    assert!(e.contains("qwen3moe.expert_count"), "{e}");
}

#[test]
fn bad_fused_and_stacked_tensors_are_named() {
    // A stack with 3 experts where the metadata says 4.
    let e = load_err("mixtral", keep_meta, |n, d, ty, b| {
        if n == "blk.1.ffn_up_exps.weight" {
            Some((vec![d[0], d[1], 3], ty, b[..b.len() / 4 * 3].to_vec()))
        } else {
            Some((d.to_vec(), ty, b.to_vec()))
        }
    });
    assert!(e.contains("blk.1.ffn_up_exps.weight"), "{e}");
    // A missing router.
    let e = load_err("qwen3moe", keep_meta, |n, d, ty, b| {
        (n != "blk.0.ffn_gate_inp.weight").then(|| (d.to_vec(), ty, b.to_vec()))
    });
    assert!(e.contains("blk.0.ffn_gate_inp.weight"), "{e}");
    // A fused qkv one row short.
    for folder in ["phi3", "gpt2"] {
        let e = load_err(folder, keep_meta, |n, d, ty, b| {
            if n == "blk.0.attn_qkv.weight" {
                Some((
                    vec![d[0], d[1] - 1],
                    ty,
                    b[..b.len() - 4 * d[0] as usize].to_vec(),
                ))
            } else {
                Some((d.to_vec(), ty, b.to_vec()))
            }
        });
        assert!(e.contains("blk.0.attn_qkv.weight"), "{folder}: {e}");
    }
    // gpt2 without its position table; starcoder2 without a LayerNorm bias.
    let e = load_err("gpt2", keep_meta, |n, d, ty, b| {
        (n != "position_embd.weight").then(|| (d.to_vec(), ty, b.to_vec()))
    });
    assert!(e.contains("position_embd.weight"), "{e}");
    let e = load_err("starcoder2", keep_meta, |n, d, ty, b| {
        (n != "blk.1.ffn_norm.bias").then(|| (d.to_vec(), ty, b.to_vec()))
    });
    assert!(e.contains("blk.1.ffn_norm.bias"), "{e}");
}

/// `phi3.attention.sliding_window` limits attention to the last `w` positions: with `w = 8`
/// the first 8 rows equal the full-attention reference and later rows move; a windowed cache
/// (ring buffers of `w + MAX_BATCH - 1` rows) decodes exactly like the full one.
#[test]
fn phi3_sliding_window() {
    let m = rebuild(
        "phi3",
        |k, v| {
            Some(if k == "phi3.attention.sliding_window" {
                Value::U32(8)
            } else {
                v.clone()
            })
        },
        keep_tensor,
    )
    .unwrap();
    let vocab = m.info().vocab;
    let (_, b) = seqs("phi3");
    let want = read_f32(&tiny_dir("phi3").join("logits_seq40.f32.bin"));
    let got = prompt_logits(&m, &b);
    let early = max_abs_diff(&got[..8 * vocab], &want[..8 * vocab]);
    let late = max_abs_diff(&got[8 * vocab..], &want[8 * vocab..]);
    println!("phi3 window 8: rows 0..8 vs full attention {early:.3e}, later rows {late:.3e}");
    assert!(early < 1e-3, "{early}");
    assert!(late > 0.1, "the window changed nothing: {late}");

    let mut full = m.new_cache(1, 256).unwrap();
    let mut ring = m.new_cache_windowed(1, 1024, model::KvType::F32).unwrap();
    let (ids_f, rows_f) = greedy(&m, &mut full, 0, &b, 16);
    let (ids_r, rows_r) = greedy(&m, &mut ring, 0, &b, 16);
    assert_eq!(ids_f, ids_r);
    let err = max_abs_diff(&rows_f, &rows_r);
    assert!(err < 1e-5, "windowed cache differs by {err}");
    // The cached decode agrees with the one-pass rows.
    assert!(max_abs_diff(&rows_f[..vocab], &got[39 * vocab..]) < 1e-5);
}

#[test]
fn phi3_longrope_is_refused_by_name() {
    let f = GgufFile::open(tiny_dir("phi3").join("model.f32.gguf")).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        w.add(k.clone(), v.clone());
    }
    for t in &f.tensors {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, f.tensor_data(t).to_vec())
            .unwrap();
    }
    w.add_tensor(
        "rope_factors_long.weight",
        &[8],
        GgmlType::F32,
        bytes(&[1.0; 8]),
    )
    .unwrap();
    let e = Model::from_gguf(GgufFile::from_bytes("longrope.gguf", w.to_bytes()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rope_factors_long.weight") && e.contains("LongRoPE"),
        "{e}"
    );
}

/// Older Mixtral files store one tensor per expert (`blk.N.ffn_gate.E.weight`…) instead of
/// the 3-D stacks: the same weights in that form give the same logits.
#[test]
fn mixtral_with_one_tensor_per_expert_matches_the_stacked_form() {
    let f = GgufFile::open(tiny_dir("mixtral").join("model.f32.gguf")).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        w.add(k.clone(), v.clone());
    }
    for t in &f.tensors {
        let data = f.tensor_data(t);
        match t.name.strip_suffix("_exps.weight") {
            Some(base) => {
                // [cols, rows, n_expert] -> n_expert tensors [cols, rows].
                let (cols, rows, n) = (t.dims[0], t.dims[1], t.dims[2] as usize);
                let each = data.len() / n;
                for e in 0..n {
                    let bytes = data[e * each..(e + 1) * each].to_vec();
                    w.add_tensor(format!("{base}.{e}.weight"), &[cols, rows], t.ty, bytes)
                        .unwrap();
                }
            }
            None => {
                w.add_tensor(t.name.clone(), &t.dims, t.ty, data.to_vec())
                    .unwrap();
            }
        }
    }
    let split =
        Model::from_gguf(GgufFile::from_bytes("split.gguf", w.to_bytes()).unwrap()).unwrap();
    let (a, b) = seqs("mixtral");
    for s in [a, b] {
        let want = read_f32(&tiny_dir("mixtral").join(format!("logits_seq{}.f32.bin", s.len())));
        let err = max_abs_diff(&prompt_logits(&split, &s), &want);
        println!("mixtral per-expert tensors, seq{}: {err:.3e}", s.len());
        assert!(err < 1e-3, "{err}");
    }
    // A missing expert is named.
    let mut w2 = GgufWriter::new();
    for (k, v) in &split.gguf().metadata {
        w2.add(k.clone(), v.clone());
    }
    for t in &split.gguf().tensors {
        if t.name != "blk.1.ffn_down.3.weight" {
            w2.add_tensor(
                t.name.clone(),
                &t.dims,
                t.ty,
                split.gguf().tensor_data(t).to_vec(),
            )
            .unwrap();
        }
    }
    let e = Model::from_gguf(GgufFile::from_bytes("missing.gguf", w2.to_bytes()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("blk.1.ffn_down.3.weight"), "{e}");
}
