//! Carrying a plan out: one tensor after another from the memory-mapped input to the output
//! file, so memory holds the input's pages in use and one slab of output rows, never two
//! models. Rows of a slab are shared among threads: each dequantizes its rows one at a time
//! (into a row buffer of its own) and quantizes them into its part of the slab.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gguf::{GgmlType, GgufFile, GgufWriter, TensorSpec, Value};

use crate::error::{QuantizeError, Result};
use crate::plan::{Options, Plan, TensorPlan};

/// Values per slab (64 MiB of f32 at most in flight per slab, whatever the thread count).
const SLAB_VALUES: u64 = 16 << 20;

/// The value written as `general.quantization_version` (ggml's GGML_QNT_VERSION).
pub const QUANTIZATION_VERSION: u32 = 2;

/// Metadata keys of split files, dropped: the output is one file.
const SPLIT_KEYS: &[&str] = &["split.no", "split.count", "split.tensors.count"];

/// Where the work stands, reported after every slab.
pub struct Progress<'a> {
    /// Index of the tensor being written (0-based) and how many there are.
    pub tensor: usize,
    pub n_tensors: usize,
    pub name: &'a str,
    /// Input bytes done so far, of all tensors together, and their total.
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Summary {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub n_elements: u64,
    pub seconds: f64,
    pub n_quantized: usize,
    pub n_copied: usize,
}

/// The output's metadata: the input's, split keys dropped, then the quantization version and
/// the file type (last, in that order, where llama-quantize puts them).
pub fn output_metadata(file: &GgufFile, plan: &Plan) -> GgufWriter {
    let mut w = GgufWriter::new();
    for (k, v) in &file.metadata {
        // The two keys set below move to the end, as llama.cpp's gguf_set_val does.
        if !SPLIT_KEYS.contains(&k.as_str())
            && k != "general.quantization_version"
            && k != "general.file_type"
        {
            w.add(k.clone(), v.clone());
        }
    }
    w.add(
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    );
    w.add("general.file_type", Value::U32(plan.ftype.id()));
    w
}

/// Writes `plan` for `file` to `out` with `threads` threads (0: all cores). The file appears
/// under its name only when complete (it is written as `OUT.part` first).
pub fn quantize_file(
    file: &GgufFile,
    plan: &Plan,
    opts: &Options,
    out: &Path,
    threads: usize,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let input = file.path();
    plan.check(input, opts)?;
    if let (Ok(a), Ok(b)) = (input.canonicalize(), out.canonicalize()) {
        if a == b {
            return Err(QuantizeError::Io {
                path: out.to_path_buf(),
                source: std::io::Error::other("the output would overwrite the input"),
            });
        }
    }
    let threads = if threads == 0 {
        kernels::default_threads()
    } else {
        threads
    };
    let started = Instant::now();
    let part = PathBuf::from(format!("{}.part", out.display()));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| QuantizeError::Io { path, source }
    };
    let specs = plan
        .tensors
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty: t.to,
            size: t.to_bytes,
        })
        .collect();
    let sink = BufWriter::with_capacity(8 << 20, File::create(&part).map_err(io(&part))?);
    let result = (|| {
        let mut stream = output_metadata(file, plan).stream(specs, sink, &part)?;
        let bytes_total = plan.bytes_in();
        let report = |progress: &mut dyn FnMut(&Progress), tensor, name: &str, bytes_done| {
            progress(&Progress {
                tensor,
                n_tensors: plan.tensors.len(),
                name,
                bytes_done,
                bytes_total,
            })
        };
        let mut bytes_done = 0u64;
        let (mut n_quantized, mut n_copied) = (0, 0);
        let mut slab = Vec::new();
        for (i, t) in plan.tensors.iter().enumerate() {
            let info = file
                .tensor_info(&t.name)
                .ok_or_else(|| QuantizeError::Tensor {
                    path: input.to_path_buf(),
                    tensor: t.name.clone(),
                    msg: "in the plan but not in the file".into(),
                })?;
            let data = file.tensor_data(info);
            if t.from == t.to {
                stream.write(data)?;
                n_copied += 1;
                bytes_done += t.from_bytes;
            } else {
                let in_row = row_bytes(t.from, t.n_cols());
                let out_row = row_bytes(t.to, t.n_cols());
                let rows_per_slab = (SLAB_VALUES / t.n_cols()).max(1);
                let mut row = 0u64;
                while row < t.n_rows() {
                    let rows = rows_per_slab.min(t.n_rows() - row);
                    let src = &data[(row * in_row) as usize..((row + rows) * in_row) as usize];
                    slab.resize((rows * out_row) as usize, 0u8);
                    quantize_slab(input, t, row, src, &mut slab, threads)?;
                    stream.write(&slab)?;
                    row += rows;
                    bytes_done += rows * in_row;
                    report(progress, i, &t.name, bytes_done);
                }
                n_quantized += 1;
            }
            stream.end_tensor()?;
            report(progress, i, &t.name, bytes_done);
        }
        let sink = stream.finish()?;
        sink.into_inner()
            .map_err(|e| io(&part)(e.into_error()))?
            .sync_all()
            .map_err(io(&part))?;
        Ok((n_quantized, n_copied))
    })();
    match result {
        Ok((n_quantized, n_copied)) => {
            std::fs::rename(&part, out).map_err(io(out))?;
            Ok(Summary {
                bytes_in: plan.bytes_in(),
                bytes_out: plan.bytes_out(),
                n_elements: plan.n_elements(),
                seconds: started.elapsed().as_secs_f64(),
                n_quantized,
                n_copied,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

/// Bytes of one row of `n` values of `ty` (the plan has checked that it divides).
fn row_bytes(ty: GgmlType, n: u64) -> u64 {
    ty.row_bytes(n).unwrap_or(0)
}

/// Quantizes the rows in `src` (rows `first_row..` of tensor `t`, in `t.from`) into `dst`
/// (the same rows in `t.to`), the rows split among `threads` threads.
fn quantize_slab(
    input: &Path,
    t: &TensorPlan,
    first_row: u64,
    src: &[u8],
    dst: &mut [u8],
    threads: usize,
) -> Result<()> {
    let n = t.n_cols() as usize;
    let in_row = row_bytes(t.from, t.n_cols()) as usize;
    let out_row = row_bytes(t.to, t.n_cols()) as usize;
    let rows = dst.len() / out_row;
    let per_thread = rows.div_ceil(threads.max(1)).max(1);
    let kernel = |tensor: &str, source| QuantizeError::Kernel {
        path: input.to_path_buf(),
        tensor: tensor.to_string(),
        source,
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = dst
            .chunks_mut(per_thread * out_row)
            .zip(src.chunks(per_thread * in_row))
            .enumerate()
            .map(|(k, (out, inp))| {
                s.spawn(move || -> Result<()> {
                    // [n] f32: one row at a time.
                    let mut values = vec![0f32; n];
                    for (r, (o, i)) in out
                        .chunks_exact_mut(out_row)
                        .zip(inp.chunks_exact(in_row))
                        .enumerate()
                    {
                        kernels::dequantize_row(t.from, i, &mut values)
                            .map_err(|e| kernel(&t.name, e))?;
                        if let Some(col) = values.iter().position(|v| !v.is_finite()) {
                            let row = first_row + (k * per_thread + r) as u64;
                            return Err(QuantizeError::Tensor {
                                path: input.to_path_buf(),
                                tensor: t.name.clone(),
                                msg: format!(
                                    "value {} at row {row}, column {col} is not finite",
                                    values[col]
                                ),
                            });
                        }
                        kernels::quantize_row(t.to, &values, o).map_err(|e| kernel(&t.name, e))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}
