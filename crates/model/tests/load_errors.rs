//! Loading malformed models: every failure is an error naming the key or tensor at fault.

mod common;

use common::tiny_dir;
use gguf::{GgmlType, GgufFile, GgufWriter, Value};
use model::Model;

/// Rebuilds the tiny llama with `edit_meta` applied to the metadata and `edit_tensor` to each
/// tensor (returning `None` drops it), and tries to load it.
fn load_edited(
    edit_meta: impl Fn(&str, &Value) -> Option<Value>,
    edit_tensor: impl Fn(&str, &[u64], GgmlType, &[u8]) -> Option<(Vec<u64>, GgmlType, Vec<u8>)>,
) -> Result<Model, String> {
    let f = GgufFile::open(tiny_dir("llama").join("model.f32.gguf")).unwrap();
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
    let file = GgufFile::from_bytes("edited.gguf", w.to_bytes()).unwrap();
    Model::from_gguf(file).map_err(|e| e.to_string())
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

#[test]
fn unedited_copy_loads() {
    let m = load_edited(keep_meta, keep_tensor).unwrap();
    assert_eq!(m.info().arch, "llama");
    assert_eq!(
        (m.info().n_layer, m.info().n_embd, m.info().vocab),
        (2, 64, 512)
    );
}

#[test]
fn missing_tensor_is_named() {
    let e = load_edited(keep_meta, |n, d, ty, b| {
        (n != "blk.1.ffn_up.weight").then(|| (d.to_vec(), ty, b.to_vec()))
    })
    .unwrap_err();
    assert!(e.contains("blk.1.ffn_up.weight"), "{e}");
}

#[test]
fn wrong_shape_is_named() {
    let e = load_edited(keep_meta, |n, d, ty, b| {
        if n == "blk.0.attn_q.weight" {
            // [64, 64] → [32, 128]: same bytes, wrong shape.
            Some((vec![32, 128], ty, b.to_vec()))
        } else {
            Some((d.to_vec(), ty, b.to_vec()))
        }
    })
    .unwrap_err();
    assert!(
        e.contains("blk.0.attn_q.weight") && e.contains("shape"),
        "{e}"
    );
}

#[test]
fn unsupported_weight_type_is_named() {
    assert!(!kernels::supports(GgmlType::I32));
    let e = load_edited(keep_meta, |n, d, ty, b| {
        let ty = if n == "blk.0.ffn_down.weight" {
            GgmlType::I32
        } else {
            ty
        };
        Some((d.to_vec(), ty, b.to_vec()))
    })
    .unwrap_err();
    assert!(
        e.contains("blk.0.ffn_down.weight") && e.contains("I32"),
        "{e}"
    );
}

#[test]
fn missing_key_is_named() {
    let e = load_edited(
        |k, v| (k != "llama.embedding_length").then(|| v.clone()),
        keep_tensor,
    )
    .unwrap_err();
    assert!(e.contains("llama.embedding_length"), "{e}");
}

#[test]
fn absurd_hparams_are_rejected_without_allocating() {
    for (key, val) in [
        ("llama.block_count", Value::U32(4_000_000_000)),
        ("llama.attention.head_count_kv", Value::U32(3)),
        ("llama.embedding_length", Value::U32(0)),
        ("llama.rope.dimension_count", Value::U32(17)),
        ("llama.rope.freq_base", Value::F32(f32::NAN)),
        ("llama.attention.head_count", Value::String("four".into())),
    ] {
        let e = load_edited(
            |k, v| Some(if k == key { val.clone() } else { v.clone() }),
            keep_tensor,
        )
        .unwrap_err();
        assert!(e.contains(key), "{key}: {e}");
    }
}

#[test]
fn vocab_mismatch_between_embedding_and_output_is_named() {
    let f = GgufFile::open(tiny_dir("llama").join("model.f32.gguf")).unwrap();
    let t = f.tensor_info("token_embd.weight").unwrap();
    assert_eq!(t.dims, [64, 512]);
    let e = load_edited(keep_meta, |n, d, ty, b| {
        if n == "token_embd.weight" {
            Some((vec![64, 511], ty, b[..64 * 511 * 4].to_vec()))
        } else {
            Some((d.to_vec(), ty, b.to_vec()))
        }
    })
    .unwrap_err();
    // 511 rows: the untied output.weight (512 rows) no longer matches the vocabulary.
    assert!(e.contains("output.weight"), "{e}");
}
