//! `lume inspect`: metadata and tensor table of a GGUF file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use gguf::GgufFile;

/// Array elements shown before "…".
const ARRAY_ITEMS: usize = 8;

pub fn run(path: &Path, out: &mut impl Write) -> Result<()> {
    // The error already names the file.
    let f = GgufFile::open(path)?;
    writeln!(out, "file: {} ({} bytes)", path.display(), f.file_size())?;
    writeln!(
        out,
        "GGUF v{}, {} metadata keys, {} tensors, alignment {}, tensor data at offset {}",
        f.version,
        f.metadata.len(),
        f.tensors.len(),
        f.alignment,
        f.data_offset
    )?;
    // The kernels a run of this file would use here (`LUME_CPU` lowers the level).
    writeln!(
        out,
        "cpu: {}",
        kernels::cpu::describe(kernels::default_threads())
    )?;

    writeln!(out, "\nmetadata:")?;
    let kw = f.metadata.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &f.metadata {
        writeln!(
            out,
            "  {k:kw$}  {:6}  {}",
            v.value_type().name(),
            v.display_short(ARRAY_ITEMS)
        )?;
    }

    writeln!(out, "\ntensors:")?;
    let nw = f
        .tensors
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "  {:nw$}  {:7}  {:22}  {:>12}",
        "name", "type", "shape", "bytes"
    )?;
    let mut by_type: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    let (mut params, mut bytes) = (0u64, 0u64);
    for t in &f.tensors {
        let shape = format!("{:?}", t.dims);
        writeln!(
            out,
            "  {:nw$}  {:7}  {:22}  {:>12}",
            t.name,
            t.ty.name(),
            shape,
            t.size
        )?;
        let e = by_type.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.size;
        params += t.n_elements();
        bytes += t.size;
    }
    writeln!(
        out,
        "\ntotals: {} tensors, {} parameters ({:.1} M), {} bytes of tensor data ({:.1} MiB)",
        f.tensors.len(),
        params,
        params as f64 / 1e6,
        bytes,
        bytes as f64 / (1 << 20) as f64
    )?;
    for (ty, (n, p, b)) in &by_type {
        writeln!(
            out,
            "  {ty:7} {n:5} tensors  {p:>12} parameters  {b:>12} bytes"
        )?;
    }
    Ok(())
}
