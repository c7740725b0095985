//! Hostile and broken GGUF files: each test builds a valid file with `GgufWriter`, corrupts it,
//! and checks the reader answers with an error (never a panic) that names the file and the key
//! or tensor at fault.

use gguf::{GgmlType, GgufFile, GgufWriter, Value, ValueType};

const NAME: &str = "bad.gguf";

/// A small valid file: four metadata keys, two F32 tensors of 32 bytes each (so the file
/// ends exactly where the last tensor's data ends: no trailing padding).
fn base_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()))
        .add("k.str", Value::String("hello".into()))
        .add(
            "k.arr",
            Value::Array(
                ValueType::U32,
                vec![Value::U32(1), Value::U32(2), Value::U32(3)],
            ),
        )
        .add("k.bool", Value::Bool(true));
    w.add_f32("t.a", &[4, 2], &[1., 2., 3., 4., 5., 6., 7., 8.])
        .unwrap();
    w.add_f32("t.b", &[8], &[0.5; 8]).unwrap();
    w
}

fn base() -> Vec<u8> {
    let b = base_writer().to_bytes();
    GgufFile::from_bytes(NAME, b.clone()).expect("the base file is valid");
    b
}

/// Position of the first occurrence of `needle` (which the test knows is there, once).
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in file", String::from_utf8_lossy(needle)))
}

/// Offset just after the string `s` (a key or tensor name) in the file.
fn after(b: &[u8], s: &str) -> usize {
    find(b, s.as_bytes()) + s.len()
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Tensor-info field offsets for tensor `name` (n_dims, dims[], type, offset).
struct InfoAt {
    n_dims: usize,
    dim0: usize,
    ty: usize,
    offset: usize,
}

fn info_at(b: &[u8], name: &str) -> InfoAt {
    let n_dims = after(b, name);
    let nd = u32::from_le_bytes(b[n_dims..n_dims + 4].try_into().unwrap()) as usize;
    let dim0 = n_dims + 4;
    let ty = dim0 + 8 * nd;
    InfoAt {
        n_dims,
        dim0,
        ty,
        offset: ty + 4,
    }
}

/// Parses `b`, which must fail; the message must name the file and contain every `needle`.
#[track_caller]
fn expect_err(b: Vec<u8>, needles: &[&str]) -> String {
    let msg = match GgufFile::from_bytes(NAME, b) {
        Ok(_) => panic!("corrupt file was accepted (wanted an error with {needles:?})"),
        Err(e) => e.to_string(),
    };
    if std::env::var_os("GGUF_SHOW_ERRORS").is_some() {
        eprintln!("{msg}");
    }
    assert!(msg.contains(NAME), "error does not name the file: {msg}");
    assert!(!msg.contains('\n'), "error is not one line: {msg}");
    for n in needles {
        assert!(msg.contains(n), "error lacks {n:?}: {msg}");
    }
    msg
}

#[test]
fn every_truncation_is_an_error() {
    let full = base();
    let f = GgufFile::from_bytes(NAME, full.clone()).unwrap();
    let tb = f.tensor_info("t.b").unwrap();
    let tb_start = (f.data_offset + tb.offset) as usize;
    assert_eq!(
        tb_start + 32,
        full.len(),
        "base file has no trailing padding"
    );
    for len in 0..full.len() {
        let msg = expect_err(full[..len].to_vec(), &[]);
        if len >= tb_start {
            assert!(msg.contains("'t.b'"), "prefix {len}: {msg}");
        }
    }
}

#[test]
fn wrong_magic() {
    let mut b = base();
    b[..4].copy_from_slice(b"GGML");
    expect_err(b, &["not a GGUF file"]);
    expect_err(b"GGU".to_vec(), &["magic"]);
    expect_err(Vec::new(), &["magic"]);
    expect_err(vec![0u8; 64], &["not a GGUF file"]);
}

#[test]
fn unknown_versions() {
    for v in [0u32, 1, 4, 99, u32::MAX] {
        let mut b = base();
        put_u32(&mut b, 4, v);
        expect_err(b, &[&format!("version {v}")]);
    }
    // Version 2 has the same layout as 3 and is read.
    let mut b = base();
    put_u32(&mut b, 4, 2);
    assert_eq!(GgufFile::from_bytes(NAME, b).unwrap().version, 2);
}

#[test]
fn unknown_tensor_type_id() {
    for id in [4u32, 5, 31, 36, 1000, u32::MAX] {
        let mut b = base();
        let at = info_at(&b, "t.a").ty;
        put_u32(&mut b, at, id);
        expect_err(b, &["'t.a'", &format!("unknown tensor type id {id}")]);
    }
}

#[test]
fn tensor_data_past_the_end() {
    for off in [64u64, 1 << 40, u64::MAX - 31] {
        let mut b = base();
        let at = info_at(&b, "t.b").offset;
        put_u64(&mut b, at, off);
        expect_err(b, &["'t.b'", "past the end"]);
    }
    // Bigger shape than the data that is there.
    let mut b = base();
    let at = info_at(&b, "t.b").dim0;
    put_u64(&mut b, at, 16);
    expect_err(b, &["'t.b'", "past the end"]);
}

#[test]
fn overlapping_tensors() {
    let mut b = base();
    let at = info_at(&b, "t.b").offset;
    put_u64(&mut b, at, 0);
    expect_err(b, &["'t.b'", "overlaps", "'t.a'"]);
}

#[test]
fn misaligned_tensor_offset() {
    for off in [1u64, 16, 33] {
        let mut b = base();
        let at = info_at(&b, "t.b").offset;
        put_u64(&mut b, at, off);
        expect_err(b, &["'t.b'", "alignment"]);
    }
}

#[test]
fn bad_alignment() {
    for v in [
        Value::U32(0),
        Value::U32(3),
        Value::U32(1 << 20),
        Value::U64(32),
        Value::String("32".into()),
    ] {
        let mut w = base_writer();
        w.add("general.alignment", v.clone());
        expect_err(w.to_bytes(), &["'general.alignment'"]);
    }
    // A legal custom alignment is honoured.
    let mut w = base_writer();
    w.add("general.alignment", Value::U32(64));
    let f = GgufFile::from_bytes(NAME, w.to_bytes()).unwrap();
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    assert_eq!(f.tensor_info("t.b").unwrap().offset, 64);
}

/// The writer writes an illegal alignment as given (so the reader's check can be tested) but
/// does not pad the data to it: 2^31 once made a 2 GiB file (found by the `load` fuzz target).
#[test]
fn illegal_alignment_is_written_but_not_padded_to() {
    let small = base().len();
    for a in [1u32 << 31, u32::MAX, 1 << 17, 3, 0] {
        let mut w = base_writer();
        w.add("general.alignment", Value::U32(a));
        let b = w.to_bytes();
        assert!(b.len() < small + 64, "alignment {a}: {} bytes", b.len());
        expect_err(b, &["'general.alignment'", "power of two up to 65536"]);
    }
}

#[test]
fn string_length_larger_than_file() {
    let base = base();
    let len_at = find(&base, b"hello") - 8;
    for len in [base.len() as u64, u64::MAX, 1 << 40] {
        let mut b = base.clone();
        put_u64(&mut b, len_at, len);
        expect_err(b, &["'k.str'", "string length"]);
    }
    // A key's own length.
    let mut b = base.clone();
    let key_len_at = find(&base, b"k.str") - 8;
    put_u64(&mut b, key_len_at, u64::MAX);
    expect_err(b, &["metadata key #1", "string length"]);
    // A tensor name's length.
    let mut b = base.clone();
    let name_len_at = find(&base, b"t.b") - 8;
    put_u64(&mut b, name_len_at, u64::MAX - 3);
    expect_err(b, &["tensor #1", "string length"]);
}

#[test]
fn array_length_larger_than_file() {
    let base = base();
    // key, value type (u32 9), element type (u32 4), length (u64).
    let len_at = after(&base, "k.arr") + 8;
    assert_eq!(
        u64::from_le_bytes(base[len_at..len_at + 8].try_into().unwrap()),
        3
    );
    let left = (base.len() - len_at - 8) as u64;
    for n in [u64::MAX, u64::MAX / 4 + 1, left / 4 + 1, 1 << 40] {
        let mut b = base.clone();
        put_u64(&mut b, len_at, n);
        expect_err(b, &["'k.arr'", "array length"]);
    }
    // Just within what the file allows, but then the following bytes are garbage: still an
    // error, and no panic.
    let mut b = base.clone();
    put_u64(&mut b, len_at, left / 4);
    expect_err(b, &[]);
}

fn nested(depth: usize) -> Value {
    let mut v = Value::Array(ValueType::U8, vec![Value::U8(1)]);
    for _ in 1..depth {
        v = Value::Array(ValueType::Array, vec![v]);
    }
    v
}

#[test]
fn arrays_nested_too_deep() {
    let mut w = base_writer();
    w.add("k.deep", nested(8));
    let f = GgufFile::from_bytes(NAME, w.to_bytes()).expect("8 levels are allowed");
    assert_eq!(f.get("k.deep"), Some(&nested(8)));
    for depth in [9, 100, 5000] {
        let mut w = base_writer();
        w.add("k.deep", nested(depth));
        expect_err(w.to_bytes(), &["'k.deep'", "nested"]);
    }
    // Hand-written: arrays of arrays announcing one element each, 100k deep, in a tiny file
    // (each level is 12 bytes: the reader must stop on depth, not recurse to a stack overflow).
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&4u64.to_le_bytes());
    b.extend_from_slice(b"deep");
    b.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..100_000 {
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
    }
    expect_err(b, &["'deep'", "nested"]);
}

#[test]
fn absurd_dims() {
    // Product overflows u64.
    let mut b = base();
    let at = info_at(&b, "t.a").dim0;
    put_u64(&mut b, at, 1 << 32);
    put_u64(&mut b, at + 8, 1 << 32);
    expect_err(b, &["'t.a'", "absurd dimensions"]);
    // Product fits in u64 but is absurd.
    let mut b = base();
    put_u64(&mut b, at, 1 << 30);
    put_u64(&mut b, at + 8, 1 << 30);
    expect_err(b, &["'t.a'", "absurd dimensions"]);
    // Row bytes overflow for a single huge row.
    let mut b = base();
    put_u64(&mut b, at, u64::MAX);
    expect_err(b, &["'t.a'"]);
    // Too many and too few dimensions.
    for nd in [0u32, 5, 1000, u32::MAX] {
        let mut b = base();
        let at = info_at(&b, "t.a").n_dims;
        put_u32(&mut b, at, nd);
        expect_err(b, &["'t.a'", &format!("has {nd} dimensions")]);
    }
    // A zero dimension.
    let mut b = base();
    put_u64(&mut b, at + 8, 0);
    expect_err(b, &["'t.a'", "zero dimension"]);
    // Row length (4) not a multiple of the Q8_0 block size (32).
    let mut b = base();
    let ty = info_at(&b, "t.a").ty;
    put_u32(&mut b, ty, GgmlType::Q8_0.id());
    expect_err(b, &["'t.a'", "not a multiple", "Q8_0"]);
}

#[test]
fn absurd_counts() {
    for n in [u64::MAX, u64::MAX / 13 + 1, 1 << 40] {
        let mut b = base();
        put_u64(&mut b, 8, n);
        expect_err(b, &["tensor count"]);
        let mut b = base();
        put_u64(&mut b, 16, n);
        expect_err(b, &["metadata count"]);
    }
    // One more key or tensor than there is: runs into the next section and fails.
    let mut b = base();
    put_u64(&mut b, 16, 5);
    expect_err(b, &[]);
    let mut b = base();
    put_u64(&mut b, 8, 3);
    expect_err(b, &[]);
}

#[test]
fn duplicate_key() {
    let mut b = base();
    let at = find(&b, b"k.str");
    b[at..at + 5].copy_from_slice(b"k.arr");
    // k.str is now a second "k.arr" (written before the real one).
    expect_err(b, &["'k.arr'", "appears twice"]);
}

#[test]
fn duplicate_tensor_name() {
    let mut b = base();
    let at = find(&b, b"t.b");
    b[at..at + 3].copy_from_slice(b"t.a");
    expect_err(b, &["'t.a'", "appears twice"]);
}

#[test]
fn unknown_value_type() {
    for id in [13u32, 100, u32::MAX] {
        let mut b = base();
        let at = after(&b, "k.bool");
        put_u32(&mut b, at, id);
        expect_err(b, &["'k.bool'", &format!("unknown value type {id}")]);
        // An array element type.
        let mut b = base();
        let at = after(&b, "k.arr") + 4;
        put_u32(&mut b, at, id);
        expect_err(b, &["'k.arr'", &format!("unknown array element type {id}")]);
    }
}

#[test]
fn bad_bool_byte() {
    for byte in [2u8, 0x80, 0xff] {
        let mut b = base();
        let at = after(&b, "k.bool") + 4;
        assert_eq!(b[at], 1);
        b[at] = byte;
        expect_err(b, &["'k.bool'", &format!("bool byte is {byte}")]);
    }
}

#[test]
fn invalid_utf8_in_strings_is_not_fatal() {
    let mut b = base();
    let at = find(&b, b"hello");
    b[at] = 0xff;
    let f = GgufFile::from_bytes(NAME, b).unwrap();
    assert_eq!(f.get_str("k.str").unwrap(), "\u{fffd}ello");
}

#[test]
fn typed_getters_name_missing_key_and_wrong_type() {
    let mut w = base_writer();
    w.add("k.neg", Value::I32(-1))
        .add("k.big", Value::U64(1 << 40))
        .add("k.f", Value::F32(0.5))
        .add(
            "k.strs",
            Value::Array(ValueType::String, vec![Value::String("x".into())]),
        );
    let f = GgufFile::from_bytes(NAME, w.to_bytes()).unwrap();
    let check = |r: Result<String, gguf::GgufError>, needles: &[&str]| {
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains(NAME), "{msg}");
        for n in needles {
            assert!(msg.contains(n), "lacks {n:?}: {msg}");
        }
    };
    check(
        f.get_u32("no.such").map(|x| x.to_string()),
        &["'no.such'", "missing"],
    );
    check(
        f.get_f32("no.such").map(|x| x.to_string()),
        &["'no.such'", "missing"],
    );
    check(
        f.get_str("no.such").map(|x| x.to_string()),
        &["'no.such'", "missing"],
    );
    check(
        f.get_str("k.arr").map(|x| x.to_string()),
        &["'k.arr'", "array", "string"],
    );
    check(
        f.get_u32("k.str").map(|x| x.to_string()),
        &["'k.str'", "string"],
    );
    check(
        f.get_u32("k.neg").map(|x| x.to_string()),
        &["'k.neg'", "i32"],
    );
    check(
        f.get_u32("k.big").map(|x| x.to_string()),
        &["'k.big'", "u64"],
    );
    check(f.get_u64("k.f").map(|x| x.to_string()), &["'k.f'", "f32"]);
    check(
        f.get_bool("k.str").map(|x| x.to_string()),
        &["'k.str'", "bool", "string"],
    );
    check(
        f.get_f32("k.bool").map(|x| x.to_string()),
        &["'k.bool'", "bool"],
    );
    check(
        f.get_str_array("k.arr").map(|x| x.join(",")),
        &["'k.arr'", "u32"],
    );
    check(f.get_str_array("k.str").map(|x| x.join(",")), &["'k.str'"]);
    check(
        f.get_f32_array("k.strs").map(|x| format!("{x:?}")),
        &["'k.strs'", "string"],
    );
    check(
        f.get_i64_array("k.strs").map(|x| format!("{x:?}")),
        &["'k.strs'", "string"],
    );
    check(
        f.get_array("k.bool").map(|x| format!("{x:?}")),
        &["'k.bool'", "array"],
    );
    check(
        f.require_tensor("no.tensor").map(|t| t.name.clone()),
        &["'no.tensor'", "missing"],
    );
    // And the right types work, with widening where it is lossless.
    assert_eq!(f.get_u64("k.big").unwrap(), 1 << 40);
    assert_eq!(f.get_f32("k.neg").unwrap(), -1.0);
    assert_eq!(f.get_i64_array("k.arr").unwrap(), vec![1, 2, 3]);
    assert_eq!(f.get_f32_array("k.arr").unwrap(), vec![1.0, 2.0, 3.0]);
    assert_eq!(f.get_str_array("k.strs").unwrap(), vec!["x"]);
    assert!(f.get_bool("k.bool").unwrap());
}

#[test]
fn writer_rejects_data_of_the_wrong_size() {
    let mut w = GgufWriter::new();
    for (dims, len) in [
        (&[4u64, 2][..], 31usize),
        (&[][..], 0),
        (&[u64::MAX, u64::MAX][..], 0),
        (&[1 << 63, 4][..], 0),
    ] {
        let e = w
            .add_tensor("w.bad", dims, GgmlType::F32, vec![0; len])
            .err()
            .expect("wrong size must be rejected");
        assert!(e.to_string().contains("'w.bad'"), "{e}");
    }
    let e = w
        .add_tensor("w.q", &[31], GgmlType::Q4_0, vec![0; 18])
        .err()
        .unwrap();
    assert!(e.to_string().contains("'w.q'"), "{e}");
}

#[test]
fn too_many_array_elements_in_all() {
    // 2^24 u8 elements fit in the file but would be 2^24 32-byte values in memory: the reader
    // caps the total number of array elements (2^24) before allocating. Two arrays of 2^23
    // reach the limit together; one more element is refused.
    let half = 1usize << 23;
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&3u64.to_le_bytes());
    for (key, n) in [("a.one", half), ("a.two", half), ("a.three", 1)] {
        b.extend_from_slice(&(key.len() as u64).to_le_bytes());
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(n as u64).to_le_bytes());
        b.resize(b.len() + n, 7);
    }
    expect_err(b, &["'a.three'", "limit"]);
}
