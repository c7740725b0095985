//! `lume embed` end to end: all-MiniLM-L6-v2 (`lume pull minilm-l6`) against the reference
//! embeddings of `testdata/encoders/minilm/expected.json` (within its 1e-5), JSON and
//! `--format lines`, texts as arguments and as stdin lines; the tiny bert GGUF; bad input.

mod common;

use std::path::Path;

use common::*;

/// (text, embedding) of fixture sentences by index.
fn fixture(indices: &[usize]) -> Vec<(String, Vec<f32>)> {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/encoders/minilm/expected.json");
    let j: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap();
    indices
        .iter()
        .map(|&i| {
            let s = &j["sentences"][i];
            let v = s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (s["text"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn embed_json_matches_the_minilm_fixture() {
    let dir = real_model("minilm-l6");
    // fox_a, accents, emoji, long_truncated (456 pieces: cut at sentence_bert_config.json's
    // max_seq_length 256, not tokenizer.json's 128), single_word
    let fx = fixture(&[0, 10, 15, 16, 23]);
    let mut args = vec!["embed", "-m", dir.to_str().unwrap()];
    args.extend(fx.iter().map(|(t, _)| t.as_str()));
    let out = lume(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["dim"], 384);
    assert_eq!(j["pooling"], "mean");
    assert_eq!(j["normalized"], true);
    let data = j["data"].as_array().unwrap();
    assert_eq!(data.len(), fx.len());
    for (i, (item, (text, want))) in data.iter().zip(&fx).enumerate() {
        assert_eq!(item["index"], i);
        if text.starts_with("It is a truth") {
            assert_eq!(item["n_tokens"], 256);
        }
        let got: Vec<f32> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let err = max_diff(&got, want);
        assert!(err < 1e-5, "{text:?}: differs by {err}");
    }
}

#[test]
fn embed_lines_from_stdin() {
    real_model("minilm-l6");
    let fx = fixture(&[4, 7]);
    let input = format!("{}\n{}\n", fx[0].0, fx[1].0);
    let out = lume_with_stdin(
        &["embed", "-m", "minilm-l6", "--format", "lines"],
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for (line, (t, want)) in lines.iter().zip(&fx) {
        let got: Vec<f32> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        let err = max_diff(&got, want);
        assert!(err < 1e-5, "{t:?}: differs by {err}");
    }
}

#[test]
fn embed_tiny_bert_gguf_and_normalize() {
    let m = testdata("tiny/bert/model.f32.gguf");
    let m = m.to_str().unwrap();
    let out = lume(&["embed", "-m", m, "--format", "lines", "It is a truth"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<f32> = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(v.len(), 64);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() > 1e-2,
        "not normalised without --normalize: {norm}"
    );
    let out = lume(&["embed", "-m", m, "--normalize", "It is a truth"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["normalized"], true);
    let norm: f64 = j["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
}

#[test]
fn embed_bad_model_is_one_line_error() {
    let out = lume(&["embed", "-m", "/no/such/folder", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error:") && err.contains("/no/such/folder"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
