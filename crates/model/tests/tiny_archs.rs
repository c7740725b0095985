//! Every architecture of the registry against its tiny reference models (`testdata/tiny/`).
//!
//! Each fixture folder names its GGUF architecture in `expected.json`. A folder whose
//! architecture is registered must pass (prompt logits at every position and every greedy step's
//! logits within 1e-3, identical greedy ids; an encoder: hidden states and mean-pooled vector
//! within 1e-3); one whose architecture is not registered must fail
//! to load with the "unsupported architecture" error. Every registered architecture must have at
//! least one fixture folder. Nothing is skipped silently: the outcome of every folder is printed.

mod common;

use std::path::Path;

use common::*;
use model::{arch::ARCHITECTURES, Model};

const TOL: f32 = 1e-3;

/// `general.architecture` of a fixture folder.
fn gguf_arch(folder: &str) -> String {
    expected(folder)["gguf_metadata"]["general.architecture"]
        .as_str()
        .unwrap_or_else(|| panic!("{folder}: expected.json has no general.architecture"))
        .to_string()
}

/// The fixture folders (those with an `expected.json`), sorted.
fn folders() -> Vec<String> {
    let root = tiny_dir("");
    let mut v: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn read(dir: &Path, name: &str) -> Result<Vec<f32>, String> {
    let p = dir.join(name);
    if !p.is_file() {
        return Err(format!("missing reference file {name}"));
    }
    Ok(read_f32(&p))
}

/// Checks `model.f32.gguf` of `folder` against its references; returns a summary line.
pub fn check_folder(folder: &str) -> Result<String, String> {
    let dir = tiny_dir(folder);
    let m = Model::load(dir.join("model.f32.gguf")).map_err(|e| format!("load: {e}"))?;
    let exp = expected(folder);
    if !m.info().lm_head {
        return check_encoder(&m, &dir, &exp);
    }
    let vocab = m.info().vocab;
    let mut summary = Vec::new();
    for seq in exp["sequences"].as_array().unwrap() {
        let tokens = ids(&seq["token_ids"]);
        let n = tokens.len();
        let tag = format!("seq{n}");

        // Prompt: one pass, logits at every position.
        let want = read(&dir, &format!("logits_{tag}.f32.bin"))?;
        let got = prompt_logits(&m, &tokens);
        if got.len() != want.len() {
            return Err(format!(
                "{tag}: {} logits, expected {}",
                got.len(),
                want.len()
            ));
        }
        let err_prompt = max_abs_diff(&got, &want);
        if err_prompt > TOL {
            return Err(format!("{tag}: prompt logits off by {err_prompt:.3e}"));
        }
        for i in 0..n {
            let (a, b) = (
                argmax(&got[i * vocab..(i + 1) * vocab]),
                argmax(&want[i * vocab..(i + 1) * vocab]),
            );
            if a != b {
                return Err(format!("{tag}: argmax {a} != {b} at position {i}"));
            }
        }

        // Greedy decode through the KV cache.
        let want_ids = ids(&seq["greedy_16"]);
        let want_rows = read(&dir, &format!("greedy_logits_{tag}.f32.bin"))?;
        let mut cache = m.new_cache(1, 256).map_err(|e| e.to_string())?;
        let (got_ids, got_rows) = greedy(&m, &mut cache, 0, &tokens, 16);
        let err_greedy = max_abs_diff(&got_rows, &want_rows);
        if got_ids != want_ids {
            return Err(format!(
                "{tag}: greedy ids {got_ids:?} != {want_ids:?} (logits err {err_greedy:.3e})"
            ));
        }
        if err_greedy > TOL {
            return Err(format!("{tag}: greedy step logits off by {err_greedy:.3e}"));
        }
        if cache.len(0) != n + 15 {
            return Err(format!("{tag}: cache holds {} positions", cache.len(0)));
        }
        summary.push(format!(
            "{tag} prompt err {err_prompt:.2e}, greedy err {err_greedy:.2e}"
        ));
    }
    Ok(summary.join("; "))
}

/// An encoder (bert) against its references: the last hidden state of every position
/// (`hidden_seqNN.f32.bin`) and its mean over the positions (`pooled_seqNN.f32.bin`).
fn check_encoder(m: &Model, dir: &Path, exp: &serde_json::Value) -> Result<String, String> {
    let mut summary = Vec::new();
    for seq in exp["sequences"].as_array().unwrap() {
        let tokens = ids(&seq["token_ids"]);
        let tag = format!("seq{}", tokens.len());
        let want = read(dir, &format!("hidden_{tag}.f32.bin"))?;
        let mut cache = m.new_cache(1, tokens.len()).map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        m.forward_hidden(
            &model::Batch::from_tokens(&tokens, 0, 0, false),
            &mut cache,
            &mut got,
        )
        .map_err(|e| e.to_string())?;
        if got.len() != want.len() {
            return Err(format!(
                "{tag}: {} hidden values, expected {}",
                got.len(),
                want.len()
            ));
        }
        let err = max_abs_diff(&got, &want);
        let d = m.info().n_embd;
        let mut pooled = vec![0.0; d];
        model::embed::pool(&got, d, model::embed::Pooling::Mean, &mut pooled);
        let perr = max_abs_diff(&pooled, &read(dir, &format!("pooled_{tag}.f32.bin"))?);
        if err > TOL || perr > TOL {
            return Err(format!(
                "{tag}: hidden off by {err:.3e}, pooled by {perr:.3e}"
            ));
        }
        summary.push(format!("{tag} hidden err {err:.2e}, pooled err {perr:.2e}"));
    }
    Ok(summary.join("; "))
}

#[test]
fn every_registered_architecture_passes_its_tiny_references() {
    let registered: Vec<&str> = ARCHITECTURES.iter().map(|(n, _)| *n).collect();
    let mut failures = Vec::new();
    let mut covered = Vec::new();
    for folder in folders() {
        let arch = gguf_arch(&folder);
        if registered.contains(&arch.as_str()) {
            covered.push(arch.clone());
            match check_folder(&folder) {
                Ok(s) => println!("{folder:>11} ({arch}): ok: {s}"),
                Err(e) => {
                    println!("{folder:>11} ({arch}): FAILED: {e}");
                    failures.push(format!("{folder} ({arch}): {e}"));
                }
            }
        } else {
            // Not supported (yet): loading must say so clearly.
            let path = tiny_dir(&folder).join("model.f32.gguf");
            match Model::load(&path) {
                Err(model::ModelError::UnsupportedArch { .. }) => {
                    println!("{folder:>11} ({arch}): not registered; load error checked")
                }
                other => failures.push(format!(
                    "{folder} ({arch}): not registered, yet load gave {:?}",
                    other.map(|m| m.info().clone())
                )),
            }
        }
    }
    for arch in &registered {
        if !covered.iter().any(|c| c == arch) {
            failures.push(format!(
                "registered architecture '{arch}' has no fixture folder in testdata/tiny"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every registered decoder also decodes through an f16 KV cache (within the README's 5e-2 for
/// f16 caches, same greedy ids) and through a windowed cache (identical to the plain one).
#[test]
fn every_registered_architecture_decodes_with_f16_and_windowed_caches() {
    let registered: Vec<&str> = ARCHITECTURES.iter().map(|(n, _)| *n).collect();
    let mut failures = Vec::new();
    for folder in folders() {
        let arch = gguf_arch(&folder);
        let dir = tiny_dir(&folder);
        if !registered.contains(&arch.as_str()) || !dir.join("logits_seq40.f32.bin").is_file() {
            continue; // not a registered decoder: the test above covers it
        }
        let m = Model::load(dir.join("model.f32.gguf")).unwrap();
        let exp = expected(&folder);
        let seq = &exp["sequences"][1];
        let tokens = ids(&seq["token_ids"]);
        let want_ids = ids(&seq["greedy_16"]);
        let want_rows = read_f32(&dir.join("greedy_logits_seq40.f32.bin"));
        let mut f16 = m.new_cache_typed(1, 256, model::KvType::F16).unwrap();
        let (ids16, rows16) = greedy(&m, &mut f16, 0, &tokens, 16);
        let e16 = max_abs_diff(&rows16, &want_rows);
        let mut plain = m.new_cache(1, 256).unwrap();
        let (idsp, rowsp) = greedy(&m, &mut plain, 0, &tokens, 16);
        let mut ring = m.new_cache_windowed(1, 256, model::KvType::F32).unwrap();
        let (idsr, rowsr) = greedy(&m, &mut ring, 0, &tokens, 16);
        let ering = max_abs_diff(&rowsr, &rowsp);
        println!("{folder:>11} ({arch}): f16 cache err {e16:.2e}, windowed vs plain {ering:.2e}");
        if ids16 != want_ids || e16 > 5e-2 {
            failures.push(format!("{folder}: f16 cache ids {ids16:?}, err {e16}"));
        }
        if idsr != idsp || ering > 1e-6 {
            failures.push(format!("{folder}: windowed cache differs by {ering}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
