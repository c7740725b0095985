//! Every tensor's type, for every file type lume knows, on the three catalogue models and the
//! twelve tiny reference models, is the one `llama-quantize --dry-run` chooses
//! (testdata/quantize/llama_quantize_types.json; scripts/gen_llama_quantize_types.py made it,
//! testdata/README.md has the command). Metadata only: no tensor is quantized here.

use std::path::PathBuf;

use gguf::GgufFile;
use quantize::{plan, FileType, Options};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_path(key: &str) -> PathBuf {
    match key.strip_prefix("tiny/") {
        Some(arch) => root()
            .join("testdata/tiny")
            .join(arch)
            .join("model.f32.gguf"),
        None => hub::require(key).unwrap_or_else(|e| panic!("{e}")),
    }
}

#[test]
fn plans_match_llama_quantize_tensor_by_tensor() {
    let text = std::fs::read_to_string(root().join("testdata/quantize/llama_quantize_types.json"))
        .expect("testdata/quantize/llama_quantize_types.json");
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let models = reference["models"].as_object().unwrap();
    assert_eq!(models.len(), 15, "3 catalogue models and 12 tiny ones");
    let (mut n_plans, mut n_tensors) = (0, 0);
    for (key, m) in models {
        let file = GgufFile::open(model_path(key)).unwrap();
        let names: Vec<&str> = m["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let plans = m["plans"].as_object().unwrap();
        assert_eq!(
            plans.len(),
            FileType::all().count(),
            "{key}: every file type"
        );
        for (ft_name, expected) in plans {
            let ft = FileType::from_name(ft_name).unwrap();
            let p = plan(&file, &Options::new(ft)).unwrap();
            let got_names: Vec<&str> = p.tensors.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(got_names, names, "{key} {ft}: tensor order");
            let want: Vec<&str> = expected["types"].as_str().unwrap().split(' ').collect();
            for (t, w) in p.tensors.iter().zip(&want) {
                assert!(
                    t.to.name().eq_ignore_ascii_case(w),
                    "{key} {ft}: {} is {} in lume, {w} in llama-quantize",
                    t.name,
                    t.to
                );
            }
            assert_eq!(
                p.n_fallback as u64,
                expected["fallbacks"].as_u64().unwrap(),
                "{key} {ft}: fallbacks"
            );
            n_plans += 1;
            n_tensors += want.len();
        }
    }
    eprintln!("{n_plans} plans, {n_tensors} tensor types, all as llama-quantize chooses");
}
