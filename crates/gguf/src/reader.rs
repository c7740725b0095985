//! Reading GGUF: header, metadata, tensor infos, then memory-mapped tensor data.
//!
//! Every count, length and offset read from the file is checked against the bytes that remain
//! before anything is allocated from it, so a hostile file cannot make us allocate more than a
//! small multiple of its own size.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{GgufError, Result};
use crate::types::GgmlType;
use crate::value::{Value, ValueType};
use crate::{DEFAULT_ALIGNMENT, MAGIC, MAX_ALIGNMENT, MAX_DIMS};

/// Arrays nested deeper than this are rejected.
const MAX_ARRAY_DEPTH: usize = 8;
/// All metadata arrays together may hold at most this many elements. Each element becomes a
/// 32-byte [`Value`], so this caps what a hostile file can make us allocate (512 MiB) however
/// big it is; real models need a few million at most (vocabulary, scores, types, merges).
const MAX_ARRAY_ELEMENTS: u64 = 1 << 24;
/// No tensor may have more elements than this (2^50: far above any model, far below overflow).
const MAX_TENSOR_ELEMENTS: u64 = 1 << 50;

/// Describes one tensor: its name, shape (GGUF order: `dims[0]` is the innermost, contiguous
/// dimension), type, and where its bytes are.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Shape, innermost first: a weight matrix of `rows` rows of `cols` values is `[cols, rows]`.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Total number of values.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Length of the innermost dimension (values per row).
    pub fn n_cols(&self) -> usize {
        self.dims.first().copied().unwrap_or(1) as usize
    }

    /// Number of rows: the product of every dimension but the innermost.
    pub fn n_rows(&self) -> usize {
        self.dims.iter().skip(1).product::<u64>() as usize
    }
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

/// An open GGUF file: metadata and tensor infos parsed, tensor data memory-mapped.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    /// Alignment of tensor data (from `general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute file offset where tensor data starts.
    pub data_offset: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and memory-maps `path`, parsing and validating everything but the tensor values.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the file is opened read-only; like every mmap-based loader we assume nobody
        // truncates or rewrites the model file while it is mapped.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Storage::Mapped(mmap))
    }

    /// Parses a GGUF image held in memory; `name` stands in for the file name in errors.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse(name.into(), Storage::Owned(bytes))
    }

    fn parse(path: PathBuf, storage: Storage) -> Result<GgufFile> {
        let mut c = Cursor {
            buf: &storage,
            pos: 0,
            path: &path,
            elements_left: MAX_ARRAY_ELEMENTS,
        };
        let magic = c.bytes(4, || "magic".into())?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic {
                path: path.clone(),
                magic: magic.to_vec(),
            });
        }
        let version = c.u32(|| "version".into())?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion {
                path: path.clone(),
                version,
            });
        }
        let n_tensors = c.u64(|| "tensor count".into())?;
        let n_kv = c.u64(|| "metadata count".into())?;
        // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info
        // at least 8 + 4 + 8 + 4 + 8.
        c.check_count(n_kv, 13, "metadata count")?;
        c.check_count(n_tensors, 32, "tensor count")?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut key_index = HashMap::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key = c.string(|| format!("metadata key #{i}"))?;
            let ty_id = c.u32(|| format!("type of metadata key '{key}'"))?;
            let ty = ValueType::from_id(ty_id).ok_or_else(|| {
                c.invalid(
                    format!("metadata key '{key}'"),
                    format!("unknown value type {ty_id}"),
                )
            })?;
            let value = c.value(ty, &key, 0)?;
            if key_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(c.invalid(format!("metadata key '{key}'"), "appears twice".into()));
            }
            metadata.push((key, value));
        }

        let alignment = match key_index.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => match &metadata[i].1 {
                Value::U32(a) if a.is_power_of_two() && *a <= MAX_ALIGNMENT => *a as u64,
                other => {
                    return Err(c.invalid(
                        "metadata key 'general.alignment'".into(),
                        format!(
                            "must be a u32 power of two up to {MAX_ALIGNMENT}, found {}",
                            other.display_short(4)
                        ),
                    ))
                }
            },
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = c.string(|| format!("name of tensor #{i}"))?;
            let terr = |msg: String| GgufError::Tensor {
                path: path.clone(),
                tensor: name.clone(),
                msg,
            };
            let n_dims = c.u32(|| format!("dimension count of tensor '{name}'"))? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(terr(format!(
                    "has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for d in 0..n_dims {
                dims.push(c.u64(|| format!("dimension {d} of tensor '{name}'"))?);
            }
            let ty_id = c.u32(|| format!("type of tensor '{name}'"))?;
            let offset = c.u64(|| format!("offset of tensor '{name}'"))?;
            let ty = GgmlType::from_id(ty_id)
                .ok_or_else(|| terr(format!("unknown tensor type id {ty_id}")))?;
            if dims.contains(&0) {
                return Err(terr(format!("has a zero dimension {dims:?}")));
            }
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
                .ok_or_else(|| terr(format!("absurd dimensions {dims:?}")))?;
            let row = ty.row_bytes(dims[0]).ok_or_else(|| {
                terr(format!(
                    "row length {} is not a multiple of the {} block size {}",
                    dims[0],
                    ty,
                    ty.block_size()
                ))
            })?;
            let size = row
                .checked_mul(n_elements / dims[0])
                .ok_or_else(|| terr(format!("absurd dimensions {dims:?}")))?;
            if offset % alignment != 0 {
                return Err(terr(format!(
                    "data offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(terr("appears twice".into()));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                size,
            });
        }

        let data_offset = c.pos.div_ceil(alignment) * alignment;
        let file_len = storage.len() as u64;
        for t in &tensors {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.size));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(GgufError::Tensor {
                        path: path.clone(),
                        tensor: t.name.clone(),
                        msg: format!(
                            "data (offset {} + {} bytes after the data start {data_offset}) runs past the end of the file ({file_len} bytes)",
                            t.offset, t.size
                        ),
                    })
                }
            }
        }
        let mut order: Vec<&TensorInfo> = tensors.iter().collect();
        order.sort_by_key(|t| t.offset);
        for w in order.windows(2) {
            if w[0].offset + w[0].size > w[1].offset {
                return Err(GgufError::Tensor {
                    path: path.clone(),
                    tensor: w[1].name.clone(),
                    msg: format!(
                        "data at offset {} overlaps tensor '{}' (offset {}, {} bytes)",
                        w[1].offset, w[0].name, w[0].offset, w[0].size
                    ),
                });
            }
        }

        Ok(GgufFile {
            path,
            storage,
            version,
            metadata,
            key_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the whole file in bytes.
    pub fn file_size(&self) -> u64 {
        self.storage.len() as u64
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    fn wrong(&self, key: &str, expected: &str, v: &Value) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_string(),
            expected: expected.to_string(),
            found: v.value_type(),
        }
    }

    /// A non-negative integer of any integer type.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| self.wrong(key, "a non-negative integer", v))
    }

    /// A non-negative integer that fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.require(key)?;
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| self.wrong(key, "an integer in u32 range", v))
    }

    /// A float (f32 or f64; integers are accepted too).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| self.wrong(key, "a number", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| self.wrong(key, "bool", v))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong(key, "string", v))
    }

    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| self.wrong(key, "array", v))
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong(key, "array of string", v))?;
        items
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| self.wrong(key, "array of string", x))
            })
            .collect()
    }

    /// An array of numbers, as f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong(key, "array of number", v))?;
        items
            .iter()
            .map(|x| {
                x.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| self.wrong(key, "array of number", x))
            })
            .collect()
    }

    /// An array of integers, as i64.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong(key, "array of integer", v))?;
        items
            .iter()
            .map(|x| {
                x.as_i64()
                    .ok_or_else(|| self.wrong(key, "array of integer", x))
            })
            .collect()
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// The tensor info named `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor info named `name`, or an error naming the file and tensor.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })
    }

    /// The bytes of a tensor, straight from the mapping (never copied). `t` must come from
    /// this file (its bounds were checked when the file was opened); a `TensorInfo` made up
    /// or taken from another file that does not fit is a programming error and panics.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let span = self
            .data_offset
            .checked_add(t.offset)
            .and_then(|s| Some((s, s.checked_add(t.size)?)))
            .and_then(|(s, e)| self.storage.get(s as usize..e as usize));
        span.unwrap_or_else(|| {
            panic!(
                "{}: tensor_data: tensor '{}' does not belong to this file",
                self.path.display(),
                t.name
            )
        })
    }
}

/// A bounds-checked reader over the file image.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: u64,
    path: &'a Path,
    /// Array elements the metadata may still hold (see [`MAX_ARRAY_ELEMENTS`]).
    elements_left: u64,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        self.buf.len() as u64 - self.pos
    }

    fn invalid(&self, what: String, msg: String) -> GgufError {
        GgufError::Invalid {
            path: self.path.to_path_buf(),
            what,
            msg,
        }
    }

    // `what` describes the field being read, for the error message; it is a closure so that
    // the description is only built when something is wrong (the happy path reads hundreds of
    // thousands of tokenizer strings).
    fn bytes(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                what: what(),
                needed: self.pos.saturating_add(n),
                len: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos as usize..(self.pos + n) as usize];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N]> {
        let b = self.bytes(N as u64, what)?;
        Ok(b.try_into().expect("length checked"))
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Rejects a count whose elements (each at least `min_size` bytes) cannot fit in the rest
    /// of the file.
    fn check_count(&self, n: u64, min_size: u64, what: &str) -> Result<()> {
        if n.checked_mul(min_size).is_none_or(|b| b > self.remaining()) {
            return Err(self.invalid(
                what.to_string(),
                format!(
                    "{n} entries cannot fit in the {} bytes left in the file",
                    self.remaining()
                ),
            ));
        }
        Ok(())
    }

    fn string(&mut self, what: impl Fn() -> String) -> Result<String> {
        let len = self.u64(|| format!("length of {}", what()))?;
        if len > self.remaining() {
            return Err(self.invalid(
                what(),
                format!(
                    "string length {len} is larger than the {} bytes left in the file",
                    self.remaining()
                ),
            ));
        }
        let b = self.bytes(len, &what)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value> {
        let what = || format!("value of metadata key '{key}'");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Bool => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(self.invalid(
                        format!("metadata key '{key}'"),
                        format!("bool byte is {b}, expected 0 or 1"),
                    ))
                }
            },
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.invalid(
                        format!("metadata key '{key}'"),
                        format!("arrays nested more than {MAX_ARRAY_DEPTH} deep"),
                    ));
                }
                let ety_id = self.u32(|| format!("array type of metadata key '{key}'"))?;
                let ety = ValueType::from_id(ety_id).ok_or_else(|| {
                    self.invalid(
                        format!("metadata key '{key}'"),
                        format!("unknown array element type {ety_id}"),
                    )
                })?;
                let n = self.u64(|| format!("array length of metadata key '{key}'"))?;
                if n.checked_mul(ety.min_encoded_size())
                    .is_none_or(|b| b > self.remaining())
                {
                    return Err(self.invalid(
                        format!("metadata key '{key}'"),
                        format!(
                            "array length {n} of {ety} cannot fit in the {} bytes left in the file",
                            self.remaining()
                        ),
                    ));
                }
                if n > self.elements_left {
                    return Err(self.invalid(
                        format!("metadata key '{key}'"),
                        format!(
                            "array length {n} is over the limit of {MAX_ARRAY_ELEMENTS} array elements in all metadata"
                        ),
                    ));
                }
                self.elements_left -= n;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(ety, key, depth + 1)?);
                }
                Value::Array(ety, items)
            }
        })
    }
}
