//! Unit tests: safetensors images (valid and malformed) and JSON configs built in the test.

use std::path::Path;

use crate::{parse_header, Dtype, HfError, JsonFile, PoolingMode, SafeTensors, SentenceConfig};

/// A safetensors image from a header JSON text and a data section.
fn image(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

/// A valid file: `a` F32 [2, 2], `b` F16 [3], `c` BF16 [1], `pos` I64 [2].
fn valid() -> Vec<u8> {
    let mut data = Vec::new();
    for x in [1.0f32, -2.0, 0.5, 3.25] {
        data.extend_from_slice(&x.to_le_bytes());
    }
    for x in [1.5f32, -0.25, 2.0] {
        data.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
    }
    data.extend_from_slice(&half::bf16::from_f32(-7.5).to_le_bytes());
    for x in [0i64, 1] {
        data.extend_from_slice(&x.to_le_bytes());
    }
    let h = r#"{"__metadata__":{"format":"pt"},
        "a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},
        "b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},
        "c":{"dtype":"BF16","shape":[1],"data_offsets":[22,24]},
        "pos":{"dtype":"I64","shape":[2],"data_offsets":[24,40]}}"#;
    image(h, &data)
}

fn open(bytes: Vec<u8>) -> crate::Result<SafeTensors> {
    SafeTensors::from_bytes("t.safetensors", bytes, &["pos"])
}

fn err_text(bytes: Vec<u8>) -> String {
    let e = open(bytes).expect_err("should be refused");
    e.to_string()
}

#[test]
fn reads_f32_f16_bf16_and_skips_named_ints() {
    let st = open(valid()).unwrap();
    assert_eq!(st.tensors().len(), 3);
    assert_eq!(st.f32("a").unwrap(), [1.0, -2.0, 0.5, 3.25]);
    assert_eq!(st.f32("b").unwrap(), [1.5, -0.25, 2.0]);
    assert_eq!(st.f32("c").unwrap(), [-7.5]);
    assert_eq!(st.require("b").unwrap().dtype, Dtype::F16);
    assert_eq!(st.metadata(), [("format".to_string(), "pt".to_string())]);
    assert!(st.get("pos").is_none());
    let e = st.require("zzz").unwrap_err().to_string();
    assert!(
        e.contains("t.safetensors") && e.contains("'zzz' is missing"),
        "{e}"
    );
}

#[test]
fn refuses_unskipped_int_tensor() {
    let e = SafeTensors::from_bytes("t.safetensors", valid(), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'pos'") && e.contains("I64"), "{e}");
}

#[test]
fn shape_check_names_tensor_and_reason() {
    let st = open(valid()).unwrap();
    st.require_shape("a", &[2, 2], "hidden_size 2").unwrap();
    let e = st
        .require_shape("a", &[4, 2], "config.json hidden_size 4")
        .unwrap_err();
    assert!(matches!(e, HfError::ShapeMismatch { .. }));
    let e = e.to_string();
    assert!(e.contains("'a'") && e.contains("hidden_size 4"), "{e}");
}

#[test]
fn too_short_and_length_past_end() {
    assert!(err_text(vec![1, 2, 3]).contains("shorter than the 8-byte"));
    let mut v = valid();
    v[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err_text(v);
    assert!(
        e.contains("t.safetensors") && e.contains("past the end"),
        "{e}"
    );
    let mut v = valid();
    v[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err_text(v).contains("past the end"));
}

#[test]
fn bad_json() {
    let e = err_text(image("{\"a\":", &[]));
    assert!(e.contains("bad JSON"), "{e}");
    let e = err_text(image("[1,2]", &[]));
    assert!(e.contains("not a JSON object"), "{e}");
    let e = err_text(image(r#"{"__metadata__":{"x":1}}"#, &[]));
    assert!(e.contains("__metadata__"), "{e}");
    let e = err_text(image(r#"{"a":7}"#, &[]));
    assert!(e.contains("'a'"), "{e}");
    let e = err_text(image(
        r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#,
        &[],
    ));
    assert!(e.contains("'a'") && e.contains("shape"), "{e}");
    let e = err_text(image(r#"{"a":{"dtype":"F32","shape":[1]}}"#, &[0; 4]));
    assert!(e.contains("data_offsets"), "{e}");
}

#[test]
fn offsets_past_end_reversed_or_wrong_size() {
    let e = err_text(image(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 4],
    ));
    assert!(
        e.contains("'a'") && e.contains("past the end of the data"),
        "{e}"
    );
    let e = err_text(image(
        r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#,
        &[0; 4],
    ));
    assert!(e.contains("end before they begin"), "{e}");
    let e = err_text(image(
        r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        &[0; 8],
    ));
    assert!(e.contains("needs 12"), "{e}");
    let e = err_text(image(
        r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
        &[0; 8],
    ));
    assert!(e.contains("too many elements"), "{e}");
}

#[test]
fn overlapping_tensors() {
    let e = open(image(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
            "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        &[0; 12],
    ))
    .unwrap_err();
    assert!(matches!(e, HfError::Overlap { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("'a'") && e.contains("'b'") && e.contains("overlap"),
        "{e}"
    );
    // Empty tensors take no bytes and overlap nothing.
    open(image(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
            "e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#,
        &[0; 8],
    ))
    .unwrap();
}

#[test]
fn unknown_dtype() {
    let e = open(image(
        r#"{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}}"#,
        &[0; 1],
    ))
    .unwrap_err();
    assert!(matches!(e, HfError::UnknownDtype { .. }));
    assert!(e.to_string().contains("'w'") && e.to_string().contains("Q4"));
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error_not_a_panic() {
    let v = valid();
    for n in 0..v.len() {
        let _ = parse_header(Path::new("t"), &v[..n]);
        let _ = open(v[..n].to_vec());
    }
    // Flipping any byte of the header is never a panic either.
    for i in 0..v.len().min(400) {
        let mut w = v.clone();
        w[i] ^= 0x5a;
        if let Ok(st) = open(w) {
            for t in st.tensors() {
                let mut d = vec![0.0; t.n_elements() as usize];
                st.read_f32_into(t, &mut d);
            }
        }
    }
}

#[test]
fn opens_a_file_from_disk() {
    let dir = std::env::temp_dir().join(format!("hf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("m.safetensors");
    std::fs::write(&p, valid()).unwrap();
    let st = SafeTensors::open(&p, &["pos"]).unwrap();
    assert_eq!(st.f32("c").unwrap(), [-7.5]);
    let e = SafeTensors::open(dir.join("none.safetensors"), &[]).unwrap_err();
    assert!(e.to_string().contains("none.safetensors"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_lookups_name_file_and_key() {
    let j = JsonFile::from_bytes(
        "config.json",
        br#"{"hidden_size":384,"layer_norm_eps":1e-12,"hidden_act":"gelu","x":null,"neg":-1}"#,
    )
    .unwrap();
    assert_eq!(j.usize("hidden_size").unwrap(), 384);
    assert_eq!(j.f64("layer_norm_eps").unwrap(), 1e-12);
    assert_eq!(j.str("hidden_act").unwrap(), "gelu");
    assert_eq!(j.opt_usize("x").unwrap(), None);
    let e = j.usize("neg").unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("'neg'"), "{e}");
    let e = j.usize("num_hidden_layers").unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("'num_hidden_layers' is missing"));
    let e = JsonFile::from_bytes("config.json", b"{oops").unwrap_err();
    assert!(e.to_string().contains("config.json: bad JSON"));
}

#[test]
fn sentence_transformers_files() {
    let dir = std::env::temp_dir().join(format!("hf-st-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    assert_eq!(SentenceConfig::read(&dir).unwrap(), None);
    std::fs::write(
        dir.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 256, "do_lower_case": false}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension":384,"pooling_mode_cls_token":false,
            "pooling_mode_mean_tokens":true,"pooling_mode_max_tokens":false}"#,
    )
    .unwrap();
    let c = SentenceConfig::read(&dir).unwrap().unwrap();
    assert_eq!(c.max_seq_length, Some(256));
    assert_eq!(c.pooling, Some(PoolingMode::Mean));
    assert!(c.normalize);
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":true}"#,
    )
    .unwrap();
    let e = SentenceConfig::read(&dir).unwrap_err().to_string();
    assert!(e.contains("1_Pooling") && e.contains("exactly one"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
