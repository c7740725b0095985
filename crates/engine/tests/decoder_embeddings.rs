//! Embeddings from decoder models held to llama.cpp's `llama-embedding` (vectors and token ids
//! in `testdata/embeddings/llama_cpp/`, commands and the bound in its README): for the three
//! catalogue LLMs and both `--pooling mean` and `--pooling last`, lume's token ids equal
//! llama.cpp's and each L2-normalised vector is within the model's bound (cosine and largest
//! component difference, [`MODELS`]) of llama.cpp's; a wrong pooling, or a missing BOS for
//! the model that has one (gemma3), falls far outside.

use std::path::{Path, PathBuf};

use engine::embeddings::EmbeddingModel;
use model::embed::{l2_normalize, Pooling};

/// A catalogue model, its file's stem, and its bound (README): the lowest cosine similarity
/// accepted between lume's and llama.cpp's L2-normalised vectors, and the largest difference
/// in any of their components.
struct Bound {
    name: &'static str,
    file: &'static str,
    min_cos: f64,
    max_abs: f64,
}

const MODELS: [Bound; 3] = [
    Bound {
        name: "smollm2-135m",
        file: "SmolLM2-135M-Instruct.Q4_1",
        min_cos: 0.998,
        max_abs: 0.03,
    },
    // The most sensitive of the three to the kernels' rounding (as in testdata/greedy).
    Bound {
        name: "gemma3-270m",
        file: "gemma-3-270m-q4_k_m",
        min_cos: 0.99,
        max_abs: 0.06,
    },
    Bound {
        name: "qwen2.5-coder-0.5b",
        file: "qwen2.5-coder-0.5b-instruct-q4_k_m",
        min_cos: 0.998,
        max_abs: 0.03,
    },
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/embeddings/llama_cpp")
}

fn json(name: &str) -> serde_json::Value {
    let p = dir().join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn vectors(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let mut r: Vec<f32> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            l2_normalize(&mut r);
            r
        })
        .collect()
}

/// (cosine, max abs difference) of two unit vectors.
fn compare(a: &[f32], b: &[f32]) -> (f64, f64) {
    let cos = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max);
    (cos, max)
}

/// lume's unit vectors of `seqs`.
fn lume(m: &EmbeddingModel, seqs: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let mut out = Vec::new();
    m.embed(&refs, &mut out).unwrap();
    out.chunks_exact(m.dim()).map(|v| v.to_vec()).collect()
}

#[test]
fn decoder_embeddings_match_llama_cpp() {
    let toks = json("tokens.json");
    let sentences: Vec<&str> = toks["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for b in &MODELS {
        let (name, file) = (b.name, b.file);
        let path = hub::require(name).unwrap_or_else(|e| panic!("{e}"));
        let mut m = EmbeddingModel::load(&path).unwrap();
        m.embedder.normalize = true;
        let want_ids: Vec<Vec<u32>> = toks["tokens"][format!("{file}.gguf")]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s.as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect();
        let ids: Vec<Vec<u32>> = sentences.iter().map(|s| m.encode(s)).collect();
        assert_eq!(ids, want_ids, "{name}: token ids differ from llama.cpp's");
        for (pooling, other) in [
            (Pooling::Mean, Pooling::Last),
            (Pooling::Last, Pooling::Mean),
        ] {
            let want = vectors(&json(&format!("{file}.{}.json", pooling.name()))["embeddings"]);
            m.embedder.pooling = pooling;
            let got = lume(&m, &ids);
            let (mut min_cos, mut max_abs) = (1.0f64, 0.0f64);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let (c, a) = compare(g, w);
                min_cos = min_cos.min(c);
                max_abs = max_abs.max(a);
                assert!(
                    c >= b.min_cos && a <= b.max_abs,
                    "{name} {} sentence {i}: cosine {c:.6}, max abs {a:.5}",
                    pooling.name()
                );
            }
            // Bugs: the other pooling; the BOS dropped (gemma3, the one that has one).
            m.embedder.pooling = other;
            let wrong = lume(&m, &ids);
            m.embedder.pooling = pooling;
            let cut: Vec<Vec<u32>> = ids.iter().map(|s| s[1..].to_vec()).collect();
            let no_first = lume(&m, &cut);
            let worst = |vs: &[Vec<f32>]| {
                vs.iter()
                    .zip(&want)
                    .map(|(g, w)| compare(g, w).0)
                    .fold(-1.0, f64::max)
            };
            let (wp, nf) = (worst(&wrong), worst(&no_first));
            eprintln!(
                "{name} {}: min cos {min_cos:.6}, max abs {max_abs:.5}; \
                 bugs (best cos): wrong pooling {wp:.4}, first token dropped {nf:.4}",
                pooling.name()
            );
            // (checked below)
            assert!(
                wp < b.min_cos,
                "{name}: the wrong pooling is within the bound"
            );
            if ids[0][0] == 2 && name == "gemma3-270m" {
                assert!(
                    nf < b.min_cos,
                    "{name}: dropping the BOS is within the bound"
                );
            }
        }
    }
}
