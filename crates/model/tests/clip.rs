//! The CLIP text encoders of testdata/encoders/clip/ (tiny random weights, a diffusion
//! pipeline's layout) against transformers' outputs: every element of every output within
//! the fixture's 1e-4, for all 13 prompts one at a time and in one batch; plus clear errors
//! for broken folders.

use std::path::{Path, PathBuf};

use model::clip::{ClipTextEncoder, ClipTextOutput};
use serde_json::Value;

const CLIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/encoders/clip");
/// The fixture README's tolerance (max abs diff, every element).
const TOL: f32 = 1e-4;

fn expected() -> Value {
    let text = std::fs::read_to_string(format!("{CLIP}/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn bin(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(format!("{CLIP}/{name}.f32.bin")).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The 77 ids of every prompt, from `expected.json`'s `key` (`input_ids` or `input_ids_pad0`).
fn prompts(key: &str) -> Vec<Vec<u32>> {
    expected()["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn max_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Compares every output with the `prefix` (`te1`, `te2`) reference files; returns the
/// (name, max error) of each.
fn check(prefix: &str, out: &ClipTextOutput) -> Vec<(String, f32)> {
    let mut r = vec![
        (
            "last_hidden_state",
            max_diff(
                &out.last_hidden_state,
                &bin(&format!("{prefix}_last_hidden_state")),
            ),
        ),
        (
            "penultimate_hidden_state",
            max_diff(
                &out.penultimate_hidden_state,
                &bin(&format!("{prefix}_penultimate_hidden_state")),
            ),
        ),
        (
            "pooled_output",
            max_diff(&out.pooled_output, &bin(&format!("{prefix}_pooled_output"))),
        ),
    ];
    if prefix == "te1" {
        r.push((
            "penultimate_final_ln",
            max_diff(&out.penultimate_final_ln, &bin("te1_penultimate_final_ln")),
        ));
    } else {
        r.push((
            "text_embeds",
            max_diff(
                out.text_embeds.as_ref().expect("text_encoder_2 projects"),
                &bin("te2_text_embeds"),
            ),
        ));
    }
    r.into_iter().map(|(n, e)| (n.to_string(), e)).collect()
}

fn run(folder: &str, prefix: &str, ids_key: &str) {
    let enc = ClipTextEncoder::load_hf(Path::new(CLIP).join(folder)).unwrap();
    let ids = prompts(ids_key);
    let want_eos: Vec<usize> = expected()["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["eos_index"].as_u64().unwrap() as usize)
        .collect();

    // All 13 prompts in one call.
    let batch = enc.encode(&ids).unwrap();
    assert_eq!((batch.n_seq, batch.n_tok, batch.n_embd), (13, 77, 64));
    assert_eq!(batch.eos_index, want_eos);
    for (name, err) in check(prefix, &batch) {
        eprintln!("{folder} batch of 13: {name} max abs error {err:.2e}");
        assert!(err <= TOL, "{folder} {name}: {err} > {TOL}");
    }

    // One prompt at a time, stacked: the same within the tolerance (and the same bits as the
    // batch where the kernels do not depend on the batch size).
    let mut one = ClipTextOutput {
        n_seq: 13,
        ..ClipTextOutput::default()
    };
    let mut embeds = Vec::new();
    for p in &ids {
        let o = enc.encode(&[p]).unwrap();
        one.last_hidden_state.extend(&o.last_hidden_state);
        one.penultimate_hidden_state
            .extend(&o.penultimate_hidden_state);
        one.penultimate_final_ln.extend(&o.penultimate_final_ln);
        one.pooled_output.extend(&o.pooled_output);
        if let Some(t) = &o.text_embeds {
            embeds.extend(t);
        }
    }
    one.text_embeds = batch.text_embeds.as_ref().map(|_| embeds);
    for (name, err) in check(prefix, &one) {
        eprintln!("{folder} one at a time: {name} max abs error {err:.2e}");
        assert!(err <= TOL, "{folder} one at a time {name}: {err} > {TOL}");
    }
    let vs = max_diff(&one.last_hidden_state, &batch.last_hidden_state);
    eprintln!("{folder}: one at a time vs batch, last_hidden_state max diff {vs:.2e}");
    assert!(vs <= 1e-5);
}

#[test]
fn text_encoder_quick_gelu_f32() {
    run("text_encoder", "te1", "input_ids");
}

#[test]
fn text_encoder_2_gelu_f16_with_projection() {
    run("text_encoder_2", "te2", "input_ids_pad0");
    let enc = ClipTextEncoder::load_hf(Path::new(CLIP).join("text_encoder_2")).unwrap();
    assert_eq!(enc.n_proj(), 32);
}

#[test]
fn bad_prompts_are_errors() {
    let enc = ClipTextEncoder::load_hf(Path::new(CLIP).join("text_encoder")).unwrap();
    let e = enc.encode(&[vec![49406u32; 78]]).unwrap_err().to_string();
    assert!(e.contains("78 tokens") && e.contains("77 positions"), "{e}");
    let e = enc
        .encode(&[vec![49406u32, 49407], vec![49406u32]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("one length"), "{e}");
    let e = enc
        .encode(&[vec![49406u32, 60000]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("60000"), "{e}");
    let out = enc.encode::<Vec<u32>>(&[]).unwrap();
    assert_eq!(out.n_seq, 0);
}

/// A scratch copy of `text_encoder/` with `edit` applied.
fn scratch(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lume-clip-te-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(Path::new(CLIP).join("text_encoder").join(f), dir.join(f)).unwrap();
    }
    edit(&dir);
    dir
}

fn load_err(name: &str, edit: impl FnOnce(&Path)) -> String {
    let dir = scratch(name, edit);
    let e = ClipTextEncoder::load_hf(&dir).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    e
}

fn edit_config(d: &Path, f: impl FnOnce(&mut Value)) {
    let p = d.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

#[test]
fn broken_folders_are_clear_errors() {
    let e = load_err("act", |d| {
        edit_config(d, |v| v["hidden_act"] = "relu6".into())
    });
    assert!(
        e.contains("config.json") && e.contains("hidden_act") && e.contains("relu6"),
        "{e}"
    );

    let e = load_err("width", |d| {
        edit_config(d, |v| v["hidden_size"] = 96.into())
    });
    assert!(
        e.contains("model.safetensors") && e.contains("token_embedding") && e.contains("96"),
        "{e}"
    );

    let e = load_err("layers", |d| {
        edit_config(d, |v| v["num_hidden_layers"] = 4.into())
    });
    assert!(
        e.contains("text_model.encoder.layers.3") && e.contains("missing"),
        "{e}"
    );

    let e = load_err("type", |d| {
        edit_config(d, |v| v["model_type"] = "bert".into())
    });
    assert!(e.contains("model_type") && e.contains("bert"), "{e}");

    let e = load_err("noweights", |d| {
        std::fs::remove_file(d.join("model.safetensors")).unwrap()
    });
    assert!(e.contains("model.safetensors"), "{e}");

    let e = load_err("truncated", |d| {
        let p = d.join("model.safetensors");
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    });
    assert!(e.contains("model.safetensors"), "{e}");
}
