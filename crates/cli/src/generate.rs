//! `lume run`, and the model, sampling and loading flags it shares with `lume chat`.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::{ChatMessage, Engine, EngineOptions, GenerateParams, GenerateStats, SamplerConfig};
use serde::Serialize;

use crate::constrain::ConstraintArgs;
use crate::template::TemplateArgs;
use crate::ModelArg;

/// Sampling flags shared by `run` and `chat`.
#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    /// Keep the K most likely tokens (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty for tokens seen in the last --repeat-last-n tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Subtracted per previous occurrence of a token (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Subtracted once for a token that occurred (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Random seed (default: from OS entropy and the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Model and machine flags shared by `run` and `chat`.
#[derive(Args, Clone, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Context size in tokens (default: the model's, capped at 4096).
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx: Option<usize>,
    /// KV cache element type: f16 (half the memory, as llama.cpp's default), f32 (exact), or
    /// the 32-value blocks q8_0 (8.5 bits a value) and q4_0 (4.5 bits), like llama.cpp's
    /// `-ctk`/`-ctv` (head sizes must be multiples of 32). q8_0 holds the reference accuracy
    /// on smollm2 but not on qwen2.5; q4_0 on neither (docs/PERFORMANCE.md).
    #[arg(long = "kv-type", value_enum, default_value_t = KvTypeArg::F16)]
    pub kv_type: KvTypeArg,
}

/// `--kv-type` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvTypeArg {
    F16,
    F32,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
}

impl From<KvTypeArg> for engine::KvType {
    fn from(k: KvTypeArg) -> Self {
        match k {
            KvTypeArg::F16 => engine::KvType::F16,
            KvTypeArg::F32 => engine::KvType::F32,
            KvTypeArg::Q8_0 => engine::KvType::Q8_0,
            KvTypeArg::Q4_0 => engine::KvType::Q4_0,
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// The prompt (read from stdin when absent and --prompt-ids is not given; one trailing
    /// newline of stdin is dropped).
    pub prompt: Option<String>,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 256)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop when the output contains this text (not printed); repeatable.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Treat PROMPT as a user message: render the chat template, answer as the assistant.
    #[arg(long)]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub template: TemplateArgs,
    /// Evaluate these token ids (comma-separated) instead of a text prompt.
    #[arg(long, value_name = "1,2,3", conflicts_with_all = ["prompt", "chat"])]
    pub prompt_ids: Option<String>,
    /// Include the prompt in the output (with --logprobs: score every prompt position).
    #[arg(long)]
    pub echo: bool,
    /// Report the N most likely tokens at every position (in the --json output).
    #[arg(long, value_name = "N", requires = "json")]
    pub logprobs: Option<usize>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub constraint: ConstraintArgs,
}

impl SamplingArgs {
    pub fn config(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed: self.seed,
        }
    }
}

pub fn load_engine(
    path: &Path,
    threads: Option<usize>,
    ctx: Option<usize>,
    kv_type: KvTypeArg,
) -> Result<Engine> {
    let opts = EngineOptions {
        threads: threads.unwrap_or(0),
        n_ctx: ctx.unwrap_or(0),
        kv_type: kv_type.into(),
        ..EngineOptions::default()
    };
    // Engine errors name the file already.
    Ok(Engine::load(path, opts)?)
}

/// `1,2, 3` → ids.
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<u32>()
                .with_context(|| format!("--prompt-ids: '{t}' is not a token id"))
        })
        .collect()
}

/// Per position: the top-N `(id, logprob)` pairs, or null where nothing precedes.
pub type TopLogprobs = Vec<Option<Vec<(u32, f32)>>>;

/// The `--json` output of `lume run`.
#[derive(Serialize, Debug, Default)]
pub struct RunJson {
    /// With a text prompt: the generated text (with --echo, the prompt text before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub ids: Vec<u32>,
    /// Entry i: the N most likely tokens for position i given the ids before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<TopLogprobs>,
    /// Why generation stopped (text prompts only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
}

fn stop_name(s: &GenerateStats) -> String {
    use engine::StopReason::*;
    match s.stop {
        Eog => "eog",
        StopString => "stop_string",
        MaxTokens => "limit",
        Callback => "callback",
        ContextFull => "context_full",
        GrammarEnd => "grammar_end",
    }
    .to_string()
}

fn params(a: &RunArgs, eng: &Engine) -> Result<GenerateParams> {
    Ok(GenerateParams {
        max_tokens: a.max_tokens,
        sampler: a.sampling.config(),
        stop: a.stop.clone(),
        logprobs: a.logprobs.unwrap_or(0),
        constraint: a.constraint.compile(eng)?,
    })
}

fn print_stats(s: &GenerateStats) {
    eprintln!(
        "prompt: {} tokens ({} evaluated) in {:.0} ms, {:.1} tokens/s | generation: {} tokens in {:.0} ms, {:.1} tokens/s",
        s.n_prompt,
        s.n_prompt_evaluated,
        s.prompt_ms,
        s.prompt_tps(),
        s.n_gen,
        s.gen_ms,
        s.gen_tps()
    );
}

/// Most `--logprobs` entries per position.
const MAX_LOGPROBS: usize = 100;

fn check_logprobs(a: &RunArgs) -> Result<()> {
    if a.logprobs.is_some_and(|n| n > MAX_LOGPROBS) {
        bail!("--logprobs: at most {MAX_LOGPROBS} tokens per position");
    }
    Ok(())
}

/// Scores and/or generates from explicit ids, for machines (`--prompt-ids`).
fn run_ids(eng: &mut Engine, ids: &[u32], a: &RunArgs) -> Result<RunJson> {
    let n_lp = a.logprobs.unwrap_or(0);
    let mut out = RunJson::default();
    let mut tops: TopLogprobs = Vec::new();
    if a.echo {
        out.ids.extend_from_slice(ids);
        if n_lp > 0 {
            let rows = eng.score(ids, n_lp)?;
            tops.push(None);
            // Row i predicts position i + 1; the last row belongs to the first generated token,
            // which the generation below reports itself.
            tops.extend(rows.into_iter().take(ids.len().saturating_sub(1)).map(Some));
        }
    }
    if a.max_tokens > 0 {
        let p = params(a, eng)?;
        eng.generate(ids, &p, |ev| {
            out.ids.push(ev.id);
            if n_lp > 0 {
                tops.push(Some(ev.top_logprobs.to_vec()));
            }
            true
        })?;
    }
    if n_lp > 0 {
        out.top_logprobs = Some(tops);
    }
    Ok(out)
}

fn read_prompt(a: &RunArgs) -> Result<String> {
    if let Some(p) = &a.prompt {
        return Ok(p.clone());
    }
    let mut s = String::new();
    if std::io::stdin().is_terminal() {
        bail!("no prompt: give one as an argument (lume run \"...\") or on stdin");
    }
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the prompt from stdin")?;
    // `echo "..." | lume run` adds a newline the user did not mean as part of the prompt.
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(s)
}

pub fn run(a: &RunArgs) -> Result<()> {
    check_logprobs(a)?;
    if a.template.any() && !a.chat {
        bail!("--chat-template, --chat-template-file and --chat-template-kwargs need --chat");
    }
    let path = a.load.model.path()?;
    if let Some(ids) = &a.prompt_ids {
        let ids = parse_ids(ids)?;
        if ids.is_empty() {
            bail!("--prompt-ids: no ids given");
        }
        let mut eng = load_engine(&path, a.load.threads, a.load.ctx, a.load.kv_type)?;
        let out = run_ids(&mut eng, &ids, a)?;
        let mut stdout = std::io::stdout().lock();
        if a.json {
            serde_json::to_writer(&mut stdout, &out)?;
            writeln!(stdout)?;
        } else {
            let text = eng.detokenize(&out.ids);
            writeln!(stdout, "{}", String::from_utf8_lossy(&text))?;
        }
        return Ok(());
    }

    let prompt = read_prompt(a)?;
    let text = if a.chat {
        // Checked before the weights are loaded: a base model fails fast.
        let tmpl = a.template.template(&gguf::GgufFile::open(&path)?)?;
        let mut msgs = Vec::new();
        if let Some(sys) = &a.system {
            msgs.push(ChatMessage::new("system", sys.as_str()));
        }
        msgs.push(ChatMessage::new("user", prompt.as_str()));
        tmpl.render(&msgs, true)?
    } else {
        prompt.clone()
    };
    let mut eng = load_engine(&path, a.load.threads, a.load.ctx, a.load.kv_type)?;
    let mut stdout = std::io::stdout().lock();
    let ids = eng.tokenize(&text, true, true);
    if ids.is_empty() {
        bail!("the prompt is empty");
    }
    let p = params(a, &eng)?;
    let n_lp = a.logprobs.unwrap_or(0);

    if a.json {
        let mut out = RunJson::default();
        let mut gen_text = String::new();
        let mut tops: TopLogprobs = Vec::new();
        if a.echo {
            out.ids.extend_from_slice(&ids);
            gen_text.push_str(&text);
            if n_lp > 0 {
                let rows = eng.score(&ids, n_lp)?;
                tops.push(None);
                tops.extend(rows.into_iter().take(ids.len() - 1).map(Some));
            }
        }
        let stats = eng.generate(&ids, &p, |ev| {
            out.ids.push(ev.id);
            gen_text.push_str(ev.text);
            if n_lp > 0 {
                tops.push(Some(ev.top_logprobs.to_vec()));
            }
            true
        })?;
        out.text = Some(gen_text);
        out.stop = Some(stop_name(&stats));
        if n_lp > 0 {
            out.top_logprobs = Some(tops);
        }
        serde_json::to_writer(&mut stdout, &out)?;
        writeln!(stdout)?;
        print_stats(&stats);
        return Ok(());
    }

    if a.echo {
        write!(stdout, "{text}")?;
        stdout.flush()?;
    }
    let mut io_err = None;
    let stats = eng.generate(&ids, &p, |ev| {
        let r = stdout
            .write_all(ev.text.as_bytes())
            .and_then(|_| stdout.flush());
        match r {
            Ok(()) => true,
            Err(e) => {
                io_err = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = io_err {
        return Err(e.into());
    }
    writeln!(stdout)?;
    print_stats(&stats);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ids_accepts_spaces_and_rejects_junk() {
        assert_eq!(parse_ids("1, 2,3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_ids("").unwrap(), Vec::<u32>::new());
        assert!(parse_ids("1,x").is_err());
        assert!(parse_ids("-1").is_err());
    }

    #[test]
    fn json_shape() {
        let j = RunJson {
            text: None,
            ids: vec![1, 2],
            top_logprobs: Some(vec![None, Some(vec![(5, -0.5)])]),
            stop: None,
        };
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            r#"{"ids":[1,2],"top_logprobs":[null,[[5,-0.5]]]}"#
        );
    }
}
