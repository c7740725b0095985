//! safetensors: an 8-byte little-endian header length `n`, `n` bytes of JSON, then the data.
//!
//! The JSON maps each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets
//! into the data section) and may hold a `__metadata__` object of strings. [`parse_header`]
//! checks everything before any tensor is touched: the length against the file, the JSON, every
//! dtype and shape, every byte range (inside the data, sized as dtype x shape, no two
//! overlapping). [`SafeTensors`] then serves the tensors from a memory map (or an owned buffer),
//! converting F16 / BF16 to f32 on demand.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value;

use crate::error::{HfError, Result};

/// Largest header accepted (the reference implementation's limit too).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;
/// No tensor may have more elements than this (far above any model, far below overflow).
const MAX_ELEMENTS: u64 = 1 << 50;

/// The dtypes of the safetensors format that have a whole number of bytes per element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
    F8E4M3,
    F8E5M2,
}

impl Dtype {
    /// The dtype written as `name` in a header, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Dtype> {
        Some(match name {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "F64" => Dtype::F64,
            "I64" => Dtype::I64,
            "I32" => Dtype::I32,
            "I16" => Dtype::I16,
            "I8" => Dtype::I8,
            "U64" => Dtype::U64,
            "U32" => Dtype::U32,
            "U16" => Dtype::U16,
            "U8" => Dtype::U8,
            "BOOL" => Dtype::Bool,
            "F8_E4M3" => Dtype::F8E4M3,
            "F8_E5M2" => Dtype::F8E5M2,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::I16 => "I16",
            Dtype::I8 => "I8",
            Dtype::U64 => "U64",
            Dtype::U32 => "U32",
            Dtype::U16 => "U16",
            Dtype::U8 => "U8",
            Dtype::Bool => "BOOL",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E5M2 => "F8_E5M2",
        }
    }

    pub fn size(self) -> u64 {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool | Dtype::F8E4M3 | Dtype::F8E5M2 => 1,
        }
    }

    /// Whether lume computes with this dtype (F32, F16, BF16).
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::BF16)
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of the header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: Dtype,
    /// Row-major shape, outermost first (a Linear weight is `[out, in]`).
    pub shape: Vec<u64>,
    /// Byte range in the data section (after the header).
    pub begin: u64,
    pub end: u64,
}

impl TensorEntry {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// A parsed, validated header.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Header {
    /// Tensors in data order (by `begin`).
    pub tensors: Vec<TensorEntry>,
    /// `__metadata__`, sorted by key.
    pub metadata: Vec<(String, String)>,
    /// Absolute file offset of the data section (8 + header length).
    pub data_start: u64,
}

/// Parses and checks the header of the safetensors image `bytes`; `path` names it in errors.
/// Every dtype is accepted here if the format knows it; [`SafeTensors`] then refuses the ones
/// lume cannot compute with.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let bad = |msg: String| HfError::BadHeader {
        path: path.to_path_buf(),
        msg,
    };
    let len = bytes.len() as u64;
    let Some(head) = bytes.get(..8) else {
        return Err(bad(format!(
            "{len} bytes, shorter than the 8-byte header length"
        )));
    };
    let n = u64::from_le_bytes(head.try_into().expect("8 bytes"));
    if n > len - 8 {
        return Err(bad(format!(
            "header length {n} runs past the end of the file ({len} bytes)"
        )));
    }
    if n > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "header length {n} is over the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    let data_start = 8 + n;
    let data_len = len - data_start;
    let json = &bytes[8..data_start as usize];
    let bad_json = |msg: String| HfError::BadJson {
        path: path.to_path_buf(),
        msg,
    };
    let value: Value =
        serde_json::from_slice(json).map_err(|e| bad_json(format!("header: {e}")))?;
    let Value::Object(map) = value else {
        return Err(bad_json("header is not a JSON object".into()));
    };

    let mut header = Header {
        data_start,
        ..Header::default()
    };
    for (name, entry) in &map {
        if name == "__metadata__" {
            let Value::Object(meta) = entry else {
                return Err(bad_json("__metadata__ is not an object".into()));
            };
            for (k, v) in meta {
                let Some(v) = v.as_str() else {
                    return Err(bad_json(format!("__metadata__ '{k}' is not a string")));
                };
                header.metadata.push((k.clone(), v.to_string()));
            }
            continue;
        }
        header
            .tensors
            .push(parse_entry(path, name, entry, data_len)?);
    }

    // No two byte ranges may share a byte (empty tensors take no bytes).
    header.tensors.sort_by_key(|t| (t.begin, t.end));
    let mut last: Option<&TensorEntry> = None;
    for t in &header.tensors {
        if t.begin == t.end {
            continue;
        }
        if let Some(p) = last {
            if t.begin < p.end {
                return Err(HfError::Overlap {
                    path: path.to_path_buf(),
                    a: p.name.clone(),
                    b: t.name.clone(),
                    a_range: (p.begin, p.end),
                    b_range: (t.begin, t.end),
                });
            }
        }
        last = Some(t);
    }
    Ok(header)
}

fn parse_entry(path: &Path, name: &str, entry: &Value, data_len: u64) -> Result<TensorEntry> {
    let err = |msg: String| HfError::Tensor {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        msg,
    };
    let Value::Object(obj) = entry else {
        return Err(err("header entry is not a JSON object".into()));
    };
    let dtype_name = obj
        .get("dtype")
        .ok_or_else(|| err("no \"dtype\"".into()))?
        .as_str()
        .ok_or_else(|| err("\"dtype\" is not a string".into()))?;
    let dtype = Dtype::from_name(dtype_name).ok_or_else(|| HfError::UnknownDtype {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        dtype: dtype_name.to_string(),
    })?;
    let shape_v = obj
        .get("shape")
        .ok_or_else(|| err("no \"shape\"".into()))?
        .as_array()
        .ok_or_else(|| err("\"shape\" is not an array".into()))?;
    let mut shape = Vec::with_capacity(shape_v.len().min(16));
    let mut n_elements: u64 = 1;
    for d in shape_v {
        let d = d
            .as_u64()
            .ok_or_else(|| err(format!("shape entry {d} is not a non-negative integer")))?;
        n_elements = n_elements
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| err(format!("shape {shape_v:?} has too many elements")))?;
        shape.push(d);
    }
    let offsets = obj
        .get("data_offsets")
        .ok_or_else(|| err("no \"data_offsets\"".into()))?
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| err("\"data_offsets\" is not an array of two offsets".into()))?;
    let (Some(begin), Some(end)) = (offsets[0].as_u64(), offsets[1].as_u64()) else {
        return Err(err(format!(
            "data_offsets {offsets:?} are not non-negative integers"
        )));
    };
    if begin > end {
        return Err(err(format!(
            "data_offsets [{begin}, {end}] end before they begin"
        )));
    }
    if end > data_len {
        return Err(err(format!(
            "data_offsets [{begin}, {end}] run past the end of the data ({data_len} bytes)"
        )));
    }
    let want = n_elements * dtype.size();
    if end - begin != want {
        return Err(err(format!(
            "data_offsets [{begin}, {end}] hold {} bytes, but {dtype} x {shape:?} needs {want}",
            end - begin
        )));
    }
    Ok(TensorEntry {
        name: name.to_string(),
        dtype,
        shape,
        begin,
        end,
    })
}

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// An open safetensors file whose tensors are all F32, F16 or BF16 (others refused at open,
/// except those the caller names to skip).
pub struct SafeTensors {
    path: PathBuf,
    storage: Storage,
    header: Header,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for SafeTensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafeTensors")
            .field("path", &self.path)
            .field("n_tensors", &self.header.tensors.len())
            .finish()
    }
}

impl SafeTensors {
    /// Memory-maps and checks `path`. Tensors named in `skip` (exact names) are left out when
    /// their dtype is not a float one (e.g. BERT's I64 `embeddings.position_ids`); any other
    /// non-float tensor is an error.
    pub fn open(path: impl AsRef<Path>, skip: &[&str]) -> Result<SafeTensors> {
        let path = path.as_ref().to_path_buf();
        let io = |source| HfError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the file is opened read-only; like every mmap-based loader we assume nobody
        // truncates or rewrites the model file while it is mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::build(path, Storage::Mapped(mmap), skip)
    }

    /// The same from an image in memory; `name` stands in for the file name in errors.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>, skip: &[&str]) -> Result<Self> {
        Self::build(name.into(), Storage::Owned(bytes), skip)
    }

    fn build(path: PathBuf, storage: Storage, skip: &[&str]) -> Result<SafeTensors> {
        let mut header = parse_header(&path, &storage)?;
        let mut refused = None;
        header.tensors.retain(|t| {
            if t.dtype.is_float() {
                return true;
            }
            if !skip.contains(&t.name.as_str()) && refused.is_none() {
                refused = Some((t.name.clone(), t.dtype));
            }
            false
        });
        if let Some((tensor, dtype)) = refused {
            return Err(HfError::UnsupportedDtype {
                path,
                tensor,
                dtype: dtype.name().into(),
            });
        }
        let index = header
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(SafeTensors {
            path,
            storage,
            header,
            index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensors in data order.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.header.tensors
    }

    pub fn metadata(&self) -> &[(String, String)] {
        &self.header.metadata
    }

    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.index.get(name).map(|&i| &self.header.tensors[i])
    }

    /// The tensor `name`, or an error naming the file and tensor.
    pub fn require(&self, name: &str) -> Result<&TensorEntry> {
        self.get(name).ok_or_else(|| HfError::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
        })
    }

    /// The tensor `name`, checked to have shape `expected`; `why` says where the expectation
    /// comes from (e.g. "config.json hidden_size 384").
    pub fn require_shape(&self, name: &str, expected: &[u64], why: &str) -> Result<&TensorEntry> {
        let t = self.require(name)?;
        if t.shape != expected {
            return Err(HfError::ShapeMismatch {
                path: self.path.clone(),
                tensor: name.to_string(),
                found: t.shape.clone(),
                expected: expected.to_vec(),
                why: why.to_string(),
            });
        }
        Ok(t)
    }

    /// The raw little-endian bytes of `t` (an entry of this file).
    pub fn bytes(&self, t: &TensorEntry) -> &[u8] {
        let start = (self.header.data_start + t.begin) as usize;
        let end = (self.header.data_start + t.end) as usize;
        &self.storage[start..end]
    }

    /// `t`'s values as f32 (F16 and BF16 widened exactly), written into `dst`
    /// (`[n_elements]`, exactly).
    pub fn read_f32_into(&self, t: &TensorEntry, dst: &mut [f32]) {
        let b = self.bytes(t);
        assert_eq!(
            dst.len() as u64,
            t.n_elements(),
            "read_f32_into: wrong length"
        );
        match t.dtype {
            Dtype::F32 => {
                for (d, c) in dst.iter_mut().zip(b.chunks_exact(4)) {
                    *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            Dtype::F16 => {
                for (d, c) in dst.iter_mut().zip(b.chunks_exact(2)) {
                    *d = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            Dtype::BF16 => {
                for (d, c) in dst.iter_mut().zip(b.chunks_exact(2)) {
                    *d = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            other => unreachable!("non-float dtype {other} was refused at open"),
        }
    }

    /// The tensor `name` as f32 values.
    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.require(name)?;
        let mut v = vec![0.0; t.n_elements() as usize];
        self.read_f32_into(t, &mut v);
        Ok(v)
    }
}
