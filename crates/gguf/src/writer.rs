//! Writing GGUF (version 3): used by tests to build synthetic models and by `lume quantize`.

use std::io::Write;
use std::path::{Path, PathBuf};

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

/// A tensor to come in a [`TensorStream`]: name, shape (GGUF order), type and byte size.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub size: u64,
}

/// Data offsets (from the start of the data section) of `tensors` laid out in order.
fn offsets(tensors: &[TensorSpec], align: u64) -> Vec<u64> {
    let mut offset = 0u64;
    tensors
        .iter()
        .map(|t| {
            let here = offset;
            offset = (offset + t.size).div_ceil(align) * align;
            here
        })
        .collect()
}

/// The data section of a file started by [`GgufWriter::stream`]: each tensor's bytes, in the
/// order given there, in as many [`write`](Self::write) calls as the caller likes, each tensor
/// closed by [`end_tensor`](Self::end_tensor) (which checks its size and pads).
pub struct TensorStream<W: Write> {
    out: W,
    path: PathBuf,
    tensors: Vec<TensorSpec>,
    alignment: u64,
    /// Index of the tensor being written.
    current: usize,
    /// Bytes of it written so far.
    written: u64,
}

impl<W: Write> TensorStream<W> {
    fn io(&self, source: std::io::Error) -> GgufError {
        GgufError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn bad(&self, msg: String) -> GgufError {
        match self.tensors.get(self.current) {
            Some(t) => GgufError::Tensor {
                path: self.path.clone(),
                tensor: t.name.clone(),
                msg,
            },
            None => GgufError::Invalid {
                path: self.path.clone(),
                what: "tensor data".into(),
                msg,
            },
        }
    }

    /// The tensor whose bytes come next, if any remains.
    pub fn next_tensor(&self) -> Option<&TensorSpec> {
        self.tensors.get(self.current)
    }

    /// Appends bytes of the current tensor.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(t) = self.tensors.get(self.current) else {
            return Err(self.bad("every planned tensor is already written".into()));
        };
        if self.written + bytes.len() as u64 > t.size {
            let msg = format!(
                "{} bytes written, more than the {} planned",
                self.written + bytes.len() as u64,
                t.size
            );
            return Err(self.bad(msg));
        }
        self.out.write_all(bytes).map_err(|e| self.io(e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Closes the current tensor: it must have exactly its planned size; pads to the alignment.
    pub fn end_tensor(&mut self) -> Result<()> {
        let Some(t) = self.tensors.get(self.current) else {
            return Err(self.bad("every planned tensor is already written".into()));
        };
        if self.written != t.size {
            let msg = format!("{} bytes written, {} planned", self.written, t.size);
            return Err(self.bad(msg));
        }
        let pad = (t.size.div_ceil(self.alignment) * self.alignment - t.size) as usize;
        self.out
            .write_all(&[0u8; MAX_ALIGNMENT as usize][..pad])
            .map_err(|e| self.io(e))?;
        self.current += 1;
        self.written = 0;
        Ok(())
    }

    /// Ends the file: every planned tensor must have been written. Returns the sink, flushed.
    pub fn finish(mut self) -> Result<W> {
        if self.current != self.tensors.len() {
            let msg = format!(
                "the file ends after {} of {} tensors",
                self.current,
                self.tensors.len()
            );
            return Err(self.bad(msg));
        }
        self.out.flush().map_err(|e| self.io(e))?;
        Ok(self.out)
    }
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
        let expected = ty.tensor_bytes(dims);
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
        let specs: Vec<TensorSpec> = self
            .tensors
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ty,
                size: t.data.len() as u64,
            })
            .collect();
        let mut out = self.header(&specs);
        let start = out.len() as u64;
        for (t, off) in self.tensors.iter().zip(offsets(&specs, self.alignment)) {
            out.resize((start + off) as usize, 0);
            out.extend_from_slice(&t.data);
        }
        pad_to(&mut out, self.alignment);
        out
    }

    /// Header, metadata and the infos of `tensors`, padded to the data alignment: everything
    /// before the first tensor's bytes. Tensors added with [`add_tensor`](Self::add_tensor)
    /// are not included (see [`stream`](Self::stream)).
    fn header(&self, tensors: &[TensorSpec]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut out, v);
        }
        for (t, offset) in tensors.iter().zip(offsets(tensors, self.alignment)) {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        pad_to(&mut out, self.alignment);
        out
    }

    /// Starts a file whose tensors are written one after another, without holding them in
    /// memory: writes the metadata added so far and the infos of `tensors` (whose sizes must
    /// match their shapes and types) to `out`, and returns a [`TensorStream`] that takes the
    /// tensors' bytes in the same order. `path` only names the file in errors.
    pub fn stream<W: Write>(
        &self,
        tensors: Vec<TensorSpec>,
        mut out: W,
        path: impl Into<PathBuf>,
    ) -> Result<TensorStream<W>> {
        let path = path.into();
        for t in &tensors {
            let expected = t.ty.tensor_bytes(&t.dims);
            if expected != Some(t.size) {
                return Err(GgufError::Tensor {
                    path,
                    tensor: t.name.clone(),
                    msg: format!(
                        "{} bytes planned, shape {:?} of {} needs {expected:?}",
                        t.size, t.dims, t.ty
                    ),
                });
            }
        }
        let header = self.header(&tensors);
        out.write_all(&header).map_err(|source| GgufError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(TensorStream {
            out,
            path,
            tensors,
            alignment: self.alignment,
            current: 0,
            written: 0,
        })
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

    #[test]
    fn stream_matches_to_bytes_and_checks_sizes() {
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("llama".into()));
        let t0: Vec<u8> = (0..32).collect();
        let t1 = vec![7u8; 34];
        w.add_tensor("t0", &[8], GgmlType::F32, t0.clone()).unwrap();
        w.add_tensor("t1", &[32], GgmlType::Q8_0, t1.clone())
            .unwrap();
        let whole = w.to_bytes();

        let mut meta = GgufWriter::new();
        meta.add("general.architecture", Value::String("llama".into()));
        let spec = |name: &str, dims: &[u64], ty, size| TensorSpec {
            name: name.into(),
            dims: dims.to_vec(),
            ty,
            size,
        };
        let specs = vec![
            spec("t0", &[8], GgmlType::F32, 32),
            spec("t1", &[32], GgmlType::Q8_0, 34),
        ];
        let mut s = meta.stream(specs.clone(), Vec::new(), "mem.gguf").unwrap();
        s.write(&t0[..10]).unwrap();
        s.write(&t0[10..]).unwrap();
        s.end_tensor().unwrap();
        assert_eq!(s.next_tensor().unwrap().name, "t1");
        s.write(&t1).unwrap();
        let err = s.write(&[0]).unwrap_err().to_string();
        assert!(
            err.contains("'t1'") && err.contains("more than the 34 planned"),
            "{err}"
        );
        s.end_tensor().unwrap();
        assert_eq!(s.finish().unwrap(), whole);

        // A short tensor, a missing one, a size that does not fit the shape.
        let mut s = meta.stream(specs.clone(), Vec::new(), "mem.gguf").unwrap();
        s.write(&t0[..4]).unwrap();
        let err = s.end_tensor().unwrap_err().to_string();
        assert!(err.contains("4 bytes written, 32 planned"), "{err}");
        let s = meta.stream(specs, Vec::new(), "mem.gguf").unwrap();
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("after 0 of 2 tensors"), "{err}");
        let bad = vec![spec("t1", &[32], GgmlType::Q8_0, 33)];
        let err = meta
            .stream(bad, Vec::new(), "x.gguf")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("x.gguf") && err.contains("'t1'"), "{err}");
    }
}
