//! The output-shape flags of `run` and `chat`, as llama.cpp names them (`-j/--json-schema`,
//! `--json-schema-file`, `--grammar`, `--grammar-file` for GBNF) plus `--regex` and
//! `--lark-file`. At most one may be given.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use engine::{Constraint, Engine, Spec};

#[derive(Args, Clone, Debug, Default)]
#[group(id = "constraint", multiple = false)]
pub struct ConstraintArgs {
    /// The output must be JSON fitting this JSON schema ('{}' for any JSON value).
    #[arg(short = 'j', long, value_name = "SCHEMA")]
    pub json_schema: Option<String>,
    /// --json-schema, read from a file.
    #[arg(long, value_name = "FILE")]
    pub json_schema_file: Option<PathBuf>,
    /// The output must fit this GBNF grammar (llama.cpp's format; start rule `root`).
    #[arg(long, value_name = "GBNF")]
    pub grammar: Option<String>,
    /// --grammar, read from a file (e.g. llama.cpp's grammars/json.gbnf).
    #[arg(long, value_name = "FILE")]
    pub grammar_file: Option<PathBuf>,
    /// The whole output must match this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub regex: Option<String>,
    /// The output must fit this Lark grammar (llguidance's syntax; start rule `start`).
    #[arg(long, value_name = "FILE")]
    pub lark_file: Option<PathBuf>,
}

fn read(path: &PathBuf, flag: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {}", path.display()))
}

impl ConstraintArgs {
    /// The spec the flags give (none when no flag is set), with the flag's name on errors.
    pub fn spec(&self) -> Result<Option<(Spec, &'static str)>> {
        let schema = |text: &str, flag: &'static str| -> Result<(Spec, &'static str)> {
            let v: serde_json::Value = serde_json::from_str(text)
                .with_context(|| format!("{flag}: the schema is not valid JSON"))?;
            Ok((Spec::JsonSchema(v), flag))
        };
        Ok(Some(if let Some(s) = &self.json_schema {
            schema(s, "--json-schema")?
        } else if let Some(p) = &self.json_schema_file {
            schema(&read(p, "--json-schema-file")?, "--json-schema-file")?
        } else if let Some(g) = &self.grammar {
            (Spec::Gbnf(g.clone()), "--grammar")
        } else if let Some(p) = &self.grammar_file {
            (Spec::Gbnf(read(p, "--grammar-file")?), "--grammar-file")
        } else if let Some(r) = &self.regex {
            (Spec::Regex(r.clone()), "--regex")
        } else if let Some(p) = &self.lark_file {
            (Spec::Lark(read(p, "--lark-file")?), "--lark-file")
        } else {
            return Ok(None);
        }))
    }

    /// Compiles the flags' spec for `eng` (errors name the flag and the keyword or rule).
    pub fn compile(&self, eng: &Engine) -> Result<Option<Constraint>> {
        let Some((spec, flag)) = self.spec()? else {
            return Ok(None);
        };
        let t0 = std::time::Instant::now();
        let c = eng.compile(&spec).with_context(|| flag.to_string())?;
        let total = t0.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "constraint: {} compiled in {:.1} ms ({:.1} ms with the vocabulary's token trie, built on first use)",
            spec.kind(),
            c.compile_ms(),
            total
        );
        Ok(Some(c))
    }
}
