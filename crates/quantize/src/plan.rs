//! The plan: for every tensor of the input, in the order it will be written, the type it gets
//! and its size before and after. Made from metadata alone (nothing is read or computed from
//! tensor data), so `--dry-run` prints it for any file type, even one lume cannot write yet.

use std::path::Path;

use gguf::{GgmlType, GgufFile, Value};

use crate::error::{QuantizeError, Result};
use crate::ftype::FileType;
use crate::rules::{self, Counters, ModelFacts, Overrides, RuleError, Tensor};

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct Options {
    pub ftype: FileType,
    pub overrides: Overrides,
    /// `--leave-output-tensor`: output.weight keeps its type.
    pub keep_output: bool,
    /// `--allow-requantize`: quantized inputs may be dequantized and quantized again.
    pub allow_requantize: bool,
}

impl Options {
    pub fn new(ftype: FileType) -> Options {
        Options {
            ftype,
            overrides: Overrides::default(),
            keep_output: false,
            allow_requantize: false,
        }
    }
}

/// One tensor of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorPlan {
    pub name: String,
    /// GGUF order (innermost first).
    pub dims: Vec<u64>,
    pub from: GgmlType,
    pub to: GgmlType,
    pub from_bytes: u64,
    pub to_bytes: u64,
    /// The chosen type needs an importance matrix.
    pub requires_imatrix: bool,
}

impl TensorPlan {
    /// Values per row.
    pub fn n_cols(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Rows (every dimension but the first, multiplied).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// The whole plan.
#[derive(Clone, Debug)]
pub struct Plan {
    pub ftype: FileType,
    pub facts: ModelFacts,
    /// In output order (llama.cpp's: see [`rules::tensor_order`]).
    pub tensors: Vec<TensorPlan>,
    /// Tensors whose rows the mix's type could not hold.
    pub n_fallback: usize,
}

impl Plan {
    pub fn bytes_in(&self) -> u64 {
        self.tensors.iter().map(|t| t.from_bytes).sum()
    }

    pub fn bytes_out(&self) -> u64 {
        self.tensors.iter().map(|t| t.to_bytes).sum()
    }

    pub fn n_elements(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_elements()).sum()
    }

    /// Bits per weight of the output's tensor data.
    pub fn bpw_out(&self) -> f64 {
        self.bytes_out() as f64 * 8.0 / self.n_elements().max(1) as f64
    }

    /// Tensors that would be dequantized from a quantized type and quantized again.
    pub fn requantized(&self) -> impl Iterator<Item = &TensorPlan> {
        self.tensors
            .iter()
            .filter(|t| t.from != t.to && !is_float(t.from))
    }

    /// Whether lume can carry the plan out; the first tensor that stops it otherwise.
    pub fn check(&self, path: &Path, opts: &Options) -> Result<()> {
        for t in &self.tensors {
            if t.from == t.to {
                continue;
            }
            if !is_float(t.from) && !opts.allow_requantize {
                return Err(QuantizeError::Requantize {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    from: t.from,
                });
            }
            if t.requires_imatrix {
                return Err(QuantizeError::NeedsImatrix {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    ty: t.to,
                });
            }
            if !kernels::can_quantize(t.to) {
                return Err(QuantizeError::NoQuantizer {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    ty: t.to,
                });
            }
            if !kernels::supports(t.from) {
                return Err(QuantizeError::Tensor {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    msg: format!("lume cannot read type {} to requantize it", t.from),
                });
            }
        }
        Ok(())
    }
}

fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// A u32 hyperparameter, or the first element when it is a per-layer array.
fn hparam(file: &GgufFile, key: &str) -> Option<u32> {
    match file.get(key)? {
        Value::Array(_, items) => items.first().and_then(value_u32),
        v => value_u32(v),
    }
}

fn value_u32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|x| u32::try_from(x).ok())
}

/// The facts the rules read off `file`'s metadata and tensor list.
pub fn model_facts(file: &GgufFile, has_imatrix: bool) -> Result<ModelFacts> {
    let path = file.path().to_path_buf();
    let arch = file.architecture()?.to_string();
    let n_layer =
        hparam(file, &format!("{arch}.block_count")).ok_or_else(|| QuantizeError::Metadata {
            path: path.clone(),
            msg: format!("'{arch}.block_count' is missing or not a count"),
        })?;
    if n_layer == 0 || n_layer > 512 {
        return Err(QuantizeError::Metadata {
            path,
            msg: format!("'{arch}.block_count' is {n_layer}: expected 1 to 512"),
        });
    }
    let n_head = hparam(file, &format!("{arch}.attention.head_count")).unwrap_or(0);
    let n_head_kv = hparam(file, &format!("{arch}.attention.head_count_kv")).unwrap_or(n_head);
    let n_expert = hparam(file, &format!("{arch}.expert_count")).unwrap_or(0);
    Ok(ModelFacts {
        n_gqa: n_head.checked_div(n_head_kv).unwrap_or(0),
        is_70b: rules::is_70b(&arch, n_layer, n_head, n_head_kv),
        tied_embeddings: file.tensor_info("output.weight").is_none(),
        arch,
        n_layer,
        n_expert,
        has_imatrix,
    })
}

/// Chooses every tensor's type (see [`rules::choose`]).
pub fn plan(file: &GgufFile, opts: &Options) -> Result<Plan> {
    let path = file.path().to_path_buf();
    let facts = model_facts(file, false)?;
    let mut order: Vec<&gguf::TensorInfo> = file.tensors.iter().collect();
    order.sort_by(|a, b| rules::tensor_order(&a.name, &b.name));
    let mut counters = Counters::new(order.iter().map(|t| t.name.as_str()), facts.n_layer);
    let mut tensors = Vec::with_capacity(order.len());
    for info in order {
        let t = Tensor {
            name: &info.name,
            dims: &info.dims,
            ty: info.ty,
        };
        let to = rules::choose(
            &mut counters,
            &facts,
            &opts.overrides,
            opts.ftype,
            opts.keep_output,
            &t,
        )
        .map_err(|e| match e {
            RuleError::Layer { tensor, n_layer } => QuantizeError::Tensor {
                path: path.clone(),
                tensor,
                msg: format!(
                    "an expert model's tensor needs a layer number blk.N with N < {n_layer}"
                ),
            },
        })?;
        let to_bytes = to
            .tensor_bytes(&info.dims)
            .ok_or_else(|| QuantizeError::Tensor {
                path: path.clone(),
                tensor: info.name.clone(),
                msg: format!("rows of {} values cannot be stored as {to}", info.dims[0]),
            })?;
        tensors.push(TensorPlan {
            name: info.name.clone(),
            dims: info.dims.clone(),
            from: info.ty,
            to,
            from_bytes: info.size,
            to_bytes,
            requires_imatrix: to != info.ty && rules::requires_imatrix(&info.name, to, opts.ftype),
        });
    }
    Ok(Plan {
        ftype: opts.ftype,
        facts,
        tensors,
        n_fallback: counters.n_fallback,
    })
}
