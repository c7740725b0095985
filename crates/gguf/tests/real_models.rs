//! Opens the three real models of the catalogue (from the local cache, via `hub::require`) and
//! checks their structure: architecture, tensors, and that each tensor's bytes are exactly
//! what its type and shape need, inside the file, aligned, and not overlapping.

use gguf::GgufFile;

fn check(model: &str, arch: &str, some_tensor: &str) {
    let path = hub::require(model).unwrap_or_else(|e| panic!("{e}"));
    let t0 = std::time::Instant::now();
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{model}: parsed in {:?}", t0.elapsed());
    assert_eq!(f.architecture().unwrap(), arch);
    assert!(!f.tensors.is_empty());
    assert!(f.get_str_array("tokenizer.ggml.tokens").unwrap().len() > 1000);
    f.require_tensor(some_tensor).unwrap();
    let mut spans = Vec::new();
    for t in &f.tensors {
        assert!((1..=4).contains(&t.dims.len()), "{}", t.name);
        let bs = t.ty.block_size() as u64;
        assert_eq!(t.dims[0] % bs, 0, "{}", t.name);
        let rows: u64 = t.dims[1..].iter().product();
        let want = t.dims[0] / bs * t.ty.type_size() as u64 * rows;
        assert_eq!(t.size, want, "{}", t.name);
        let data = f.tensor_data(t);
        assert_eq!(data.len() as u64, want, "{}", t.name);
        assert_eq!(t.offset % f.alignment, 0, "{}", t.name);
        let start = f.data_offset + t.offset;
        assert!(start + t.size <= f.file_size(), "{}", t.name);
        spans.push((start, start + t.size));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap");
    }
}

#[test]
fn smollm2_135m() {
    check("smollm2-135m", "llama", "token_embd.weight");
}

#[test]
fn gemma3_270m() {
    check("gemma3-270m", "gemma3", "token_embd.weight");
}

#[test]
fn qwen25_coder_05b() {
    check("qwen2.5-coder-0.5b", "qwen2", "token_embd.weight");
}
