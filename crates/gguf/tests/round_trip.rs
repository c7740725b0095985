//! Writer → reader round trips: every value type, nested arrays, every tensor type.

use gguf::{GgmlType, GgufFile, GgufWriter, Value, ValueType};

fn reread(w: &GgufWriter) -> GgufFile {
    GgufFile::from_bytes("rt.gguf", w.to_bytes()).expect("writer output parses")
}

fn every_scalar() -> Vec<(&'static str, Value)> {
    vec![
        ("u8.min", Value::U8(0)),
        ("u8.max", Value::U8(u8::MAX)),
        ("i8.min", Value::I8(i8::MIN)),
        ("i8.max", Value::I8(i8::MAX)),
        ("u16", Value::U16(u16::MAX)),
        ("i16", Value::I16(i16::MIN)),
        ("u32", Value::U32(u32::MAX)),
        ("i32", Value::I32(i32::MIN)),
        ("f32", Value::F32(-1.5e-7)),
        ("f32.inf", Value::F32(f32::INFINITY)),
        ("bool.t", Value::Bool(true)),
        ("bool.f", Value::Bool(false)),
        ("str", Value::String("héllo ▁wörld 🦙".into())),
        ("str.empty", Value::String(String::new())),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f64", Value::F64(std::f64::consts::PI)),
    ]
}

#[test]
fn every_value_type_round_trips() {
    let mut w = GgufWriter::new();
    let values = every_scalar();
    for (k, v) in &values {
        w.add(*k, v.clone());
    }
    // An array of each scalar type, and an empty one.
    for (k, v) in &values {
        let ty = v.value_type();
        w.add(
            format!("arr.{k}"),
            Value::Array(ty, vec![v.clone(), v.clone()]),
        );
    }
    w.add("arr.empty", Value::Array(ValueType::U32, vec![]));
    let f = reread(&w);
    assert_eq!(f.version, 3);
    for (k, v) in &values {
        assert_eq!(f.get(k), Some(v), "{k}");
        let arr = f.get(&format!("arr.{k}")).unwrap();
        assert_eq!(
            arr,
            &Value::Array(v.value_type(), vec![v.clone(), v.clone()])
        );
    }
    assert_eq!(f.get_array("arr.empty").unwrap().len(), 0);
    // File order is kept.
    let keys: Vec<&str> = f.metadata.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys[0], "u8.min");
    assert_eq!(keys.last(), Some(&"arr.empty"));
    // NaN survives bit for bit.
    let mut w = GgufWriter::new();
    w.add("nan", Value::F32(f32::NAN))
        .add("nan64", Value::F64(-f64::NAN));
    let f = reread(&w);
    assert!(matches!(f.get("nan"), Some(Value::F32(x)) if x.to_bits() == f32::NAN.to_bits()));
    assert!(matches!(f.get("nan64"), Some(Value::F64(x)) if x.to_bits() == (-f64::NAN).to_bits()));
}

#[test]
fn nested_arrays_round_trip() {
    let strings = Value::Array(
        ValueType::String,
        vec![Value::String("a".into()), Value::String("".into())],
    );
    let ints = Value::Array(ValueType::I16, vec![Value::I16(-1), Value::I16(2)]);
    let empty = Value::Array(ValueType::F64, vec![]);
    let mixed_inner = Value::Array(ValueType::Array, vec![strings.clone(), ints.clone(), empty]);
    let deeper = Value::Array(
        ValueType::Array,
        vec![mixed_inner.clone(), mixed_inner.clone()],
    );
    let mut w = GgufWriter::new();
    w.add("n1", mixed_inner.clone()).add("n2", deeper.clone());
    let f = reread(&w);
    assert_eq!(f.get("n1"), Some(&mixed_inner));
    assert_eq!(f.get("n2"), Some(&deeper));
}

#[test]
fn replacing_a_key_keeps_one_entry() {
    let mut w = GgufWriter::new();
    w.add("k", Value::U32(1)).add("k", Value::U32(2));
    let f = reread(&w);
    assert_eq!(f.metadata.len(), 1);
    assert_eq!(f.get_u32("k").unwrap(), 2);
}

#[test]
fn every_tensor_type_round_trips() {
    let mut w = GgufWriter::new();
    let mut want = Vec::new();
    for (i, ty) in GgmlType::all().enumerate() {
        let dims = [ty.block_size() as u64 * 2, 3];
        let n = ty.row_bytes(dims[0]).unwrap() as usize * 3;
        let data: Vec<u8> = (0..n).map(|j| (j * 31 + i * 7) as u8).collect();
        let name = format!("t.{}", ty.name());
        w.add_tensor(name.clone(), &dims, ty, data.clone()).unwrap();
        want.push((name, ty, dims, data));
    }
    let f = reread(&w);
    assert_eq!(f.tensors.len(), want.len());
    for (name, ty, dims, data) in &want {
        let t = f.require_tensor(name).unwrap();
        assert_eq!(t.ty, *ty);
        assert_eq!(t.dims, dims.to_vec());
        assert_eq!(t.offset % f.alignment, 0);
        assert_eq!(t.n_cols(), dims[0] as usize);
        assert_eq!(t.n_rows(), 3);
        assert_eq!(f.tensor_data(t), &data[..], "{name}");
    }
}

#[test]
fn write_file_and_open_round_trip() {
    let dir = std::env::temp_dir().join(format!("gguf-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.gguf");
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("llama".into()))
        .add("general.alignment", Value::U32(8));
    w.add_f32("x", &[3], &[1.0, 2.0, 3.0]).unwrap();
    w.add_f32("y", &[1, 1, 1, 2], &[4.0, 5.0]).unwrap();
    w.write_file(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), path.as_path());
    assert_eq!(f.alignment, 8);
    assert_eq!(f.file_size(), std::fs::metadata(&path).unwrap().len());
    let y = f.require_tensor("y").unwrap();
    assert_eq!(y.n_rows(), 2);
    assert_eq!(y.n_elements(), 2);
    assert_eq!(&f.tensor_data(y)[4..8], &5.0f32.to_le_bytes());
    std::fs::remove_dir_all(&dir).unwrap();
    // A missing file is an I/O error that names it.
    let e = GgufFile::open(dir.join("nope.gguf"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.gguf"), "{e}");
}
