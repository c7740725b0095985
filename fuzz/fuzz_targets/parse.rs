//! Fuzz target: any byte string given to the GGUF parser must give Ok or Err, never a panic,
//! and on Ok every tensor's data and every metadata value must be readable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = gguf::GgufFile::from_bytes("fuzz.gguf", data.to_vec()) else {
        return;
    };
    let mut acc = 0u64;
    for (key, value) in &f.metadata {
        // Every getter on every key: wrong types must be errors, not panics.
        let _ = f.get_u32(key);
        let _ = f.get_u64(key);
        let _ = f.get_f32(key);
        let _ = f.get_bool(key);
        let _ = f.get_str(key);
        let _ = f.get_str_array(key);
        let _ = f.get_f32_array(key);
        let _ = f.get_i64_array(key);
        acc = acc.wrapping_add(value.display_short(4).len() as u64);
    }
    let _ = f.architecture();
    for t in &f.tensors {
        let info = f.require_tensor(&t.name).expect("listed tensor is found by name");
        let bytes = f.tensor_data(info);
        assert_eq!(bytes.len() as u64, t.size);
        let row = t.ty.row_bytes(t.dims[0]).expect("validated row");
        assert_eq!(row * t.n_rows() as u64, t.size);
        acc = acc.wrapping_add(bytes.iter().map(|&b| b as u64).sum::<u64>());
        acc = acc.wrapping_add(t.n_elements() ^ t.n_cols() as u64);
    }
    std::hint::black_box(acc);
});
