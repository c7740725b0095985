//! `lume quantize IN OUT TYPE`: requantize a GGUF file with llama-quantize's per-tensor type
//! choice (the `quantize` crate), streaming, rows in parallel, with a progress bar.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use gguf::{GgmlType, GgufFile};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quantize::{FileType, Options, Overrides};

#[derive(Args, Clone, Debug)]
pub struct QuantizeArgs {
    /// The input: a GGUF file or a catalogue name.
    #[arg(required_unless_present = "list")]
    pub input: Option<String>,
    /// The output GGUF file (omit with --dry-run).
    #[arg(required_unless_present_any = ["dry_run", "list"])]
    pub output: Option<PathBuf>,
    /// The file type: Q4_K_M, Q8_0, IQ4_XS, F16, ... (`lume quantize --list`).
    #[arg(required_unless_present_any = ["list", "dry_run"])]
    pub r#type: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Quantize tensors that are already quantized (dequantized first; quality drops).
    #[arg(long)]
    pub allow_requantize: bool,
    /// Keep output.weight as it is.
    #[arg(long)]
    pub leave_output_tensor: bool,
    /// Every quantizable tensor in the type's base type: no mix (fallbacks still apply).
    #[arg(long)]
    pub pure: bool,
    /// Type of output.weight (e.g. Q8_0).
    #[arg(long, value_name = "TYPE")]
    pub output_tensor_type: Option<String>,
    /// Type of token_embd.weight.
    #[arg(long, value_name = "TYPE")]
    pub token_embedding_type: Option<String>,
    /// PATTERN=TYPE: tensors whose name matches the regular expression get TYPE (repeatable;
    /// the first match wins).
    #[arg(long = "tensor-type", value_name = "PATTERN=TYPE")]
    pub tensor_type: Vec<String>,
    /// Print the plan (every tensor's type and size) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// List the file types.
    #[arg(long)]
    pub list: bool,
}

fn tensor_type(what: &str, name: &str) -> Result<GgmlType> {
    GgmlType::from_name(&name.to_ascii_uppercase())
        .or_else(|| GgmlType::from_name(name))
        .with_context(|| {
            format!("{what}: '{name}' is not a ggml tensor type (e.g. Q8_0, Q6_K, F16)")
        })
}

pub fn run(a: &QuantizeArgs) -> Result<()> {
    if a.list {
        for ft in FileType::all() {
            println!(
                "{:>3}  {:<10} tensors mostly {}",
                ft.id(),
                ft.name(),
                ft.default_type()
            );
        }
        return Ok(());
    }
    let type_name = a.r#type.as_deref().unwrap_or_default();
    // With --dry-run the type may stand where the output would.
    let (output, type_name) = match (&a.output, a.dry_run, a.r#type.is_none()) {
        (Some(o), true, true) => (None, o.to_string_lossy().into_owned()),
        (o, _, _) => (o.clone(), type_name.to_string()),
    };
    let Some(ftype) = FileType::from_name(&type_name) else {
        bail!("'{type_name}' is not a file type lume knows (see `lume quantize --list`)");
    };
    let name = a.input.as_deref().context("the input file is missing")?;
    let input = if std::path::Path::new(name).exists() {
        PathBuf::from(name)
    } else {
        hub::ensure(name).with_context(|| format!("model '{name}'"))?
    };
    let file = GgufFile::open(&input)?;
    let mut overrides = Overrides {
        pure: a.pure,
        ..Overrides::default()
    };
    if let Some(t) = &a.output_tensor_type {
        overrides.output = Some(tensor_type("--output-tensor-type", t)?);
    }
    if let Some(t) = &a.token_embedding_type {
        overrides.token_embd = Some(tensor_type("--token-embedding-type", t)?);
    }
    for spec in &a.tensor_type {
        let Some((pat, ty)) = spec.rsplit_once('=') else {
            bail!("--tensor-type '{spec}': expected PATTERN=TYPE");
        };
        let re = regex::Regex::new(pat).with_context(|| format!("--tensor-type '{spec}'"))?;
        overrides
            .patterns
            .push((re, tensor_type("--tensor-type", ty)?));
    }
    let opts = Options {
        ftype,
        overrides,
        keep_output: a.leave_output_tensor,
        allow_requantize: a.allow_requantize,
    };
    let plan = quantize::plan(&file, &opts)?;
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    if a.dry_run {
        for (i, t) in plan.tensors.iter().enumerate() {
            println!(
                "[{:>4}/{:>4}] {:<40} {:>6} -> {:<6} {:>9.3} MiB -> {:>9.3} MiB",
                i + 1,
                plan.tensors.len(),
                t.name,
                t.from.name(),
                t.to.name(),
                mib(t.from_bytes),
                mib(t.to_bytes)
            );
        }
        println!(
            "{}: {:.2} MiB -> {:.2} MiB ({:.2} bits per weight), {} tensor(s) fell back to another type",
            ftype,
            mib(plan.bytes_in()),
            mib(plan.bytes_out()),
            plan.bpw_out(),
            plan.n_fallback
        );
        if let Err(e) = plan.check(&input, &opts) {
            eprintln!("lume quantize: note: writing it would fail: {e}");
        }
        return Ok(());
    }
    let output = output.context("the output file is missing")?;
    let n_requant = plan.requantized().count();
    if n_requant > 0 && a.allow_requantize {
        eprintln!(
            "lume quantize: warning: {n_requant} tensor(s) of {} are already quantized: \
             requantizing them loses quality (quantize from F32, F16 or BF16 when you can)",
            input.display()
        );
    }
    if plan.n_fallback > 0 {
        eprintln!(
            "lume quantize: {} of {} tensor(s) have rows the mix's type cannot hold and use a fallback type",
            plan.n_fallback,
            plan.tensors.len()
        );
    }
    let pb = ProgressBar::with_draw_target(Some(plan.bytes_in()), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {percent:>3}% {bytes}/{total_bytes} {msg}")
            .expect("a valid template"),
    );
    let summary = quantize::quantize_file(&file, &plan, &opts, &output, a.threads, &mut |p| {
        pb.set_position(p.bytes_done);
        pb.set_message(format!("[{}/{}] {}", p.tensor + 1, p.n_tensors, p.name));
    })?;
    pb.finish_and_clear();
    eprintln!(
        "lume quantize: {} -> {} as {ftype}: {:.2} MiB -> {:.2} MiB ({:.2} bits per weight), \
         {} tensor(s) quantized, {} copied, in {:.1} s",
        input.display(),
        output.display(),
        mib(summary.bytes_in),
        mib(summary.bytes_out),
        summary.bytes_out as f64 * 8.0 / summary.n_elements.max(1) as f64,
        summary.n_quantized,
        summary.n_copied,
        summary.seconds
    );
    Ok(())
}
