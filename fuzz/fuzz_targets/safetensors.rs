//! Fuzz target: the safetensors header parser and the tensor reads after it.
//!
//! The input is taken as a whole safetensors image (8-byte length, JSON header, data). Any
//! `Err` is fine; a panic, an abort, running out of memory or time is a bug. When it opens,
//! every tensor is read as f32, so every accepted byte range must really be inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hf::parse_header(std::path::Path::new("fuzz.safetensors"), data);
    let Ok(st) = hf::SafeTensors::from_bytes("fuzz.safetensors", data.to_vec(), &["skip"]) else {
        return;
    };
    let mut buf = Vec::new();
    for t in st.tensors() {
        // Cap what one tensor may make us allocate: its bytes are in the input anyway.
        buf.resize(t.n_elements() as usize, 0.0);
        st.read_f32_into(t, &mut buf);
        std::hint::black_box(buf.iter().sum::<f32>());
    }
});
