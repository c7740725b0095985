//! Writing GGUF (version 3): used by tests to build synthetic models and by `lume quantize`.

use std::io::Write;
use std::path::Path;

use crate::error::{GgufError, Result};
use crate::types::GgmlType;
use crate::value::Value;
use crate::{DEFAULT_ALIGNMENT, MAGIC, MAX_ALIGNMENT};

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then writes a GGUF v3 file.
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
    alignment: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Adds (or replaces) a metadata value. `general.alignment` also sets the data alignment
    /// when it is one a reader accepts (a u32 power of two up to [`MAX_ALIGNMENT`]); any other
    /// value is written as given, for tests of readers, but the data keeps the default
    /// alignment: no reader takes such a file, and a value like 2^31 would pad it to gigabytes.
    pub fn add(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        let key = key.into();
        if key == "general.alignment" {
            self.alignment = match value {
                Value::U32(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => a as u64,
                _ => DEFAULT_ALIGNMENT,
            };
        }
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Adds a tensor. `dims` is in GGUF order (innermost first); `data` must hold exactly the
    /// bytes that shape and type need.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self> {
        let name = name.into();
        let expected = dims
            .first()
            .and_then(|&d0| ty.row_bytes(d0))
            .and_then(|r| dims[1..].iter().try_fold(r, |acc, &d| acc.checked_mul(d)));
        if expected != Some(data.len() as u64) {
            return Err(GgufError::Tensor {
                path: "<writer>".into(),
                tensor: name,
                msg: format!(
                    "{} bytes given, shape {dims:?} of {ty} needs {expected:?}",
                    data.len()
                ),
            });
        }
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(self)
    }

    /// Adds an F32 tensor.
    pub fn add_f32(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        values: &[f32],
    ) -> Result<&mut Self> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_tensor(name, dims, GgmlType::F32, data)
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut out, v);
        }
        let align = self.alignment;
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len() as u64).div_ceil(align) * align;
        }
        pad_to(&mut out, align);
        let start = out.len() as u64;
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize((start + off) as usize, 0);
            out.extend_from_slice(&t.data);
        }
        pad_to(&mut out, align);
        out
    }

    /// Writes the file to `path`.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut f = std::fs::File::create(path).map_err(io)?;
        f.write_all(&self.to_bytes()).map_err(io)?;
        Ok(())
    }
}

fn pad_to(out: &mut Vec<u8>, align: u64) {
    let len = (out.len() as u64).div_ceil(align) * align;
    out.resize(len as usize, 0);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(ty, items) => {
            out.extend_from_slice(&(*ty as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                put_value(out, it);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GgufFile, ValueType};

    #[test]
    fn round_trip() {
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("llama".into()))
            .add("a.u8", Value::U8(7))
            .add("a.i64", Value::I64(-5))
            .add(
                "a.nested",
                Value::Array(
                    ValueType::Array,
                    vec![Value::Array(
                        ValueType::U32,
                        vec![Value::U32(1), Value::U32(2)],
                    )],
                ),
            );
        w.add_f32("t0", &[4, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
            .unwrap();
        w.add_tensor("t1", &[32], GgmlType::Q8_0, vec![0u8; 34])
            .unwrap();
        let f = GgufFile::from_bytes("mem.gguf", w.to_bytes()).unwrap();
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(f.get_u32("a.u8").unwrap(), 7);
        assert!(f.get_u32("a.i64").is_err());
        assert_eq!(f.tensors.len(), 2);
        let t0 = f.tensor_info("t0").unwrap();
        assert_eq!(t0.n_rows(), 2);
        assert_eq!(t0.n_cols(), 4);
        let d = f.tensor_data(t0);
        assert_eq!(f32::from_le_bytes(d[4..8].try_into().unwrap()), 2.0);
        assert_eq!(f.tensor_info("t1").unwrap().offset % 32, 0);
    }
}
