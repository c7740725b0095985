//! `lume chat`: a multi-turn chat, as a REPL.
//!
//! - On a terminal: line editing and a history kept across sessions (rustyline). The history
//!   file is `$LUME_HISTORY`, else `$XDG_STATE_HOME/lume/chat_history`, else
//!   `~/.local/state/lume/chat_history`; an empty `LUME_HISTORY` keeps none. Every line typed
//!   is added to it and the file is written after each line.
//! - Piped stdin: no prompt, no history; each line (or block) is a user message, the commands
//!   work too, stdout carries the replies only (everything else goes to stderr), and an error
//!   (a bad command, a bad `/load` file) ends the run with a non-zero status.
//! - Input ([`Composer`]): a line ending in `\` continues on the next line; `"""` opens a block
//!   that the next line ending in `"""` closes. A line starting with `/` is a command
//!   ([`HELP`]); a block never is.
//! - Ctrl-C during a reply stops it (a SIGINT handler sets [`STOP`], which the generation
//!   callback reads; the partial reply stays in the conversation as the assistant's); at the
//!   prompt it clears the line; Ctrl-D at an empty prompt leaves.
//! - `--verbose`: after each reply, one line of speed on stderr ([`speed_line`]).
//! - `/save FILE` writes the conversation, the system prompt and the settings as JSON
//!   ([`saved_json`]); `/load FILE` restores them ([`parse_saved`]), naming the file and the
//!   field on a bad file.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use engine::{ChatMessage, ChatTemplate, Engine, GenerateParams, GenerateStats, StopReason};
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use serde_json::{json, Map, Value};

use crate::constrain::ConstraintArgs;
use crate::generate::{load_engine, LoadArgs, SamplingArgs};
use crate::template::TemplateArgs;

#[derive(Args, Clone, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Most tokens per answer.
    #[arg(short = 'n', long, default_value_t = 1024)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// System message.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub template: TemplateArgs,
    #[command(flatten)]
    pub constraint: ConstraintArgs,
    /// After each reply, print the prompt and reply speed on stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// The REPL's help text (`/help`).
pub const HELP: &str = "\
Type a message and press Enter. A line ending in \\ continues on the next line;
\"\"\" starts a block of lines that a line ending in \"\"\" closes.
Commands:
  /set                 show the settings
  /set KEY VALUE       change one: temperature (or temp), top_k, top_p, min_p, seed (N or random),
                       max_tokens, repeat_penalty, repeat_last_n, frequency_penalty,
                       presence_penalty
  /system [TEXT]       set (replace) the system prompt; without TEXT, show it
  /show                show the settings, the system prompt and the message count
  /clear               start the conversation over (keeps the system prompt); also /reset
  /save FILE           write the conversation, system prompt and settings as JSON
  /load FILE           restore what /save wrote
  /help                this text
  /bye                 leave (also /exit, Ctrl-D)
Ctrl-C stops a reply (the part written stays in the conversation), or clears the line.";

/// Set by the Ctrl-C handler while a reply is being generated; the generation callback stops
/// when it sees it.
pub static STOP: AtomicBool = AtomicBool::new(false);
/// Whether a reply is being generated (Ctrl-C then stops it; otherwise it ends lume).
static GENERATING: AtomicBool = AtomicBool::new(false);

/// The exit status of a process ended by SIGINT, as shells report it.
const SIGINT_STATUS: i32 = 130;

fn install_ctrlc() -> Result<()> {
    ctrlc::set_handler(|| {
        if GENERATING.load(Ordering::SeqCst) {
            STOP.store(true, Ordering::SeqCst);
        } else {
            // Loading the model, or blocked reading piped stdin: Ctrl-C means leave. (On a
            // terminal rustyline reads keys in raw mode, where Ctrl-C is a key, not a signal.)
            std::process::exit(SIGINT_STATUS);
        }
    })
    .context("installing the Ctrl-C handler")
}

/// One complete input: a message for the model, or a command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Message(String),
    Command(String),
}

/// What is being continued.
#[derive(Debug, PartialEq, Eq)]
enum Pending {
    /// Lines that ended in `\` (the backslash dropped).
    Continued(Vec<String>),
    /// A `"""` block not closed yet.
    Block(Vec<String>),
}

/// Puts physical lines together into inputs: `\` continuation and `"""` blocks.
#[derive(Debug, Default)]
pub struct Composer {
    pending: Option<Pending>,
}

const FENCE: &str = "\"\"\"";

fn strip_backslash(line: &str) -> Option<&str> {
    line.strip_suffix('\\')
}

/// A finished non-block input: a command when it starts with `/`.
fn classify(text: String) -> Input {
    if text.trim_start().starts_with('/') {
        Input::Command(text.trim().to_string())
    } else {
        Input::Message(text)
    }
}

/// A block's text: its lines, without the blank lines around them.
fn block_text(lines: &[String]) -> String {
    lines.join("\n").trim_matches(['\n', '\r']).to_string()
}

impl Composer {
    /// Whether the next line continues an input (the prompt shows `...`).
    pub fn pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Drops what was being continued (Ctrl-C at the prompt).
    pub fn clear(&mut self) {
        self.pending = None;
    }

    /// At the end of the input: what a trailing `\` left pending (an open block is an error).
    pub fn finish(&mut self) -> Result<Option<Input>> {
        match self.pending.take() {
            None => Ok(None),
            Some(Pending::Continued(lines)) => Ok(Some(classify(lines.join("\n")))),
            Some(Pending::Block(_)) => bail!("the input ended inside a \"\"\" block"),
        }
    }

    /// Takes what one read gave: a line, or several (a paste into the terminal). Pasted lines
    /// are one input, unless they open a `"""` block or continue one.
    pub fn push_text(&mut self, text: &str) -> Vec<Input> {
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.contains('\n') {
            return self.push(text).into_iter().collect();
        }
        if self.pending.is_none() && !text.trim_start().starts_with(FENCE) {
            return vec![classify(text.replace("\r\n", "\n"))];
        }
        text.lines().filter_map(|l| self.push(l)).collect()
    }

    /// Takes one line (without its newline); returns an input when it completes one.
    pub fn push(&mut self, line: &str) -> Option<Input> {
        let line = line.trim_end_matches(['\n', '\r']);
        match self.pending.take() {
            Some(Pending::Block(mut lines)) => {
                if let Some(last) = line.trim_end().strip_suffix(FENCE) {
                    lines.push(last.to_string());
                    Some(Input::Message(block_text(&lines)))
                } else {
                    lines.push(line.to_string());
                    self.pending = Some(Pending::Block(lines));
                    None
                }
            }
            Some(Pending::Continued(mut lines)) => match strip_backslash(line) {
                Some(part) => {
                    lines.push(part.to_string());
                    self.pending = Some(Pending::Continued(lines));
                    None
                }
                None => {
                    lines.push(line.to_string());
                    Some(classify(lines.join("\n")))
                }
            },
            None => {
                if let Some(rest) = line.trim_start().strip_prefix(FENCE) {
                    // `"""one line"""` is a whole block.
                    if let Some(inner) = rest.trim_end().strip_suffix(FENCE) {
                        return Some(Input::Message(inner.trim().to_string()));
                    }
                    self.pending = Some(Pending::Block(vec![rest.to_string()]));
                    return None;
                }
                match strip_backslash(line) {
                    Some(part) => {
                        self.pending = Some(Pending::Continued(vec![part.to_string()]));
                        None
                    }
                    None => Some(classify(line.to_string())),
                }
            }
        }
    }
}

/// One line read, or what the user pressed instead.
enum Line {
    Text(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D, or the end of piped input.
    Eof,
}

/// Where the lines come from.
enum Source {
    Terminal {
        rl: Box<DefaultEditor>,
        history: Option<PathBuf>,
        /// The history file could not be written (said once).
        history_failed: bool,
    },
    Piped {
        stdin: std::io::StdinLock<'static>,
    },
}

/// The history file: `$LUME_HISTORY` (empty: none), else `$XDG_STATE_HOME/lume/chat_history`,
/// else `~/.local/state/lume/chat_history`.
pub fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LUME_HISTORY") {
        return (!p.is_empty()).then(|| PathBuf::from(p));
    }
    let state = match std::env::var_os("XDG_STATE_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(&std::env::var_os("HOME")?)
            .join(".local")
            .join("state"),
    };
    Some(state.join("lume").join("chat_history"))
}

impl Source {
    fn terminal() -> Result<Source> {
        let config = rustyline::Config::builder()
            .auto_add_history(false)
            .max_history_size(1000)
            .context("the history size")?
            .build();
        let mut rl = DefaultEditor::with_config(config).context("setting up the terminal")?;
        let history = history_path();
        if let Some(h) = &history {
            match rl.load_history(h) {
                Ok(()) => {}
                Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!("warning: history file {}: {e}", h.display()),
            }
        }
        Ok(Source::Terminal {
            rl: Box::new(rl),
            history,
            history_failed: false,
        })
    }

    fn read(&mut self, continuation: bool) -> Result<Line> {
        match self {
            Source::Terminal {
                rl,
                history,
                history_failed,
            } => {
                let prompt = if continuation { "... " } else { ">>> " };
                match rl.readline(prompt) {
                    Ok(line) => {
                        if !line.trim().is_empty() {
                            remember(rl, history.as_deref(), history_failed, &line);
                        }
                        Ok(Line::Text(line))
                    }
                    Err(ReadlineError::Interrupted) => Ok(Line::Interrupted),
                    Err(ReadlineError::Eof) => Ok(Line::Eof),
                    Err(e) => Err(e).context("reading the terminal"),
                }
            }
            Source::Piped { stdin } => {
                let mut line = String::new();
                if stdin.read_line(&mut line).context("reading stdin")? == 0 {
                    return Ok(Line::Eof);
                }
                Ok(Line::Text(line))
            }
        }
    }
}

/// Adds `line` to the history and appends it to the history file.
fn remember(rl: &mut DefaultEditor, file: Option<&Path>, failed: &mut bool, line: &str) {
    // Only a duplicate of the previous entry is refused, which is no error.
    let _ = rl.add_history_entry(line);
    let Some(file) = file else { return };
    let r = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(ReadlineError::Io)
            .and_then(|()| rl.append_history(file)),
        _ => rl.append_history(file),
    };
    if let Err(e) = r {
        if !*failed {
            eprintln!(
                "warning: cannot write the history file {}: {e}",
                file.display()
            );
            *failed = true;
        }
    }
}

/// The setting names `/set` takes (and `/save` writes), in display order.
const SETTINGS: [&str; 10] = [
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "max_tokens",
];

/// `temp` → `temperature`, `top-p` → `top_p`; None for an unknown name.
fn setting_name(key: &str) -> Option<&'static str> {
    let k = key.to_ascii_lowercase().replace('-', "_");
    let k = match k.as_str() {
        "temp" => "temperature",
        "n" | "num_predict" => "max_tokens",
        other => other,
    };
    SETTINGS.iter().copied().find(|s| *s == k)
}

/// `x` as JSON, written as the f32 prints (0.95, not 0.949999988079071).
fn f32_json(x: f32) -> Value {
    json!(x.to_string().parse::<f64>().unwrap_or(f64::from(x)))
}

/// A setting's value, as `/set` shows it and `/save` writes it.
fn setting_value(p: &GenerateParams, name: &str) -> Value {
    let s = &p.sampler;
    match name {
        "temperature" => f32_json(s.temperature),
        "top_k" => json!(s.top_k),
        "top_p" => f32_json(s.top_p),
        "min_p" => f32_json(s.min_p),
        "repeat_penalty" => f32_json(s.repeat_penalty),
        "repeat_last_n" => json!(s.repeat_last_n),
        "frequency_penalty" => f32_json(s.frequency_penalty),
        "presence_penalty" => f32_json(s.presence_penalty),
        "seed" => json!(s.seed),
        "max_tokens" => json!(p.max_tokens),
        _ => Value::Null,
    }
}

/// A typed setting value, parsed from `/set` text or read from a saved file.
enum SettingValue {
    Float(f32),
    Int(u64),
    /// `seed random` / `null`.
    Random,
}

fn is_float(name: &str) -> bool {
    matches!(
        name,
        "temperature"
            | "top_p"
            | "min_p"
            | "repeat_penalty"
            | "frequency_penalty"
            | "presence_penalty"
    )
}

/// Sets `name` (a name of [`SETTINGS`]) on `p`, checking the value; `p` is unchanged on error.
fn apply_setting(p: &mut GenerateParams, name: &str, v: SettingValue) -> Result<()> {
    let mut next = p.clone();
    let s = &mut next.sampler;
    let int = |v: u64| usize::try_from(v).map_err(|_| anyhow!("{name}: {v} is too large"));
    match (name, v) {
        ("seed", SettingValue::Random) => s.seed = None,
        ("seed", SettingValue::Int(n)) => s.seed = Some(n),
        ("max_tokens", SettingValue::Int(0)) => bail!("max_tokens: must be at least 1"),
        ("max_tokens", SettingValue::Int(n)) => next.max_tokens = int(n)?,
        ("top_k", SettingValue::Int(n)) => s.top_k = int(n)?,
        ("repeat_last_n", SettingValue::Int(n)) => s.repeat_last_n = int(n)?,
        (f, SettingValue::Float(x)) if is_float(f) => {
            let slot = match f {
                "temperature" => &mut s.temperature,
                "top_p" => &mut s.top_p,
                "min_p" => &mut s.min_p,
                "repeat_penalty" => &mut s.repeat_penalty,
                "frequency_penalty" => &mut s.frequency_penalty,
                _ => &mut s.presence_penalty,
            };
            *slot = x;
        }
        (f, SettingValue::Int(n)) if is_float(f) => {
            return apply_setting(p, name, SettingValue::Float(n as f32));
        }
        ("seed", _) => bail!("seed: must be a non-negative integer or 'random'"),
        (f, _) if is_float(f) => bail!("{f}: must be a number"),
        (f, _) => bail!("{f}: must be a non-negative integer"),
    }
    next.sampler.validate()?;
    *p = next;
    Ok(())
}

/// `/set KEY VALUE`.
fn set_from_text(p: &mut GenerateParams, key: &str, text: &str) -> Result<&'static str> {
    let name = setting_name(key).ok_or_else(|| {
        anyhow!(
            "unknown setting '{key}' (settings: {})",
            SETTINGS.join(", ")
        )
    })?;
    let v = if name == "seed" && ["random", "none", "off"].contains(&text) {
        SettingValue::Random
    } else if is_float(name) {
        match text.parse::<f32>() {
            Ok(x) if x.is_finite() => SettingValue::Float(x),
            _ => bail!("{name}: '{text}' is not a number"),
        }
    } else {
        match text.parse::<u64>() {
            Ok(n) => SettingValue::Int(n),
            Err(_) if name == "seed" => {
                bail!("seed: '{text}' is not a non-negative integer or 'random'")
            }
            Err(_) => bail!("{name}: '{text}' is not a non-negative integer"),
        }
    };
    apply_setting(p, name, v)?;
    Ok(name)
}

fn settings_text(p: &GenerateParams) -> String {
    SETTINGS
        .iter()
        .map(|name| match setting_value(p, name) {
            Value::Null => format!("  {name:18} random"),
            v => format!("  {name:18} {v}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The conversation and what shapes the replies.
pub struct Chat {
    pub system: Option<String>,
    /// The conversation, without the system prompt.
    pub messages: Vec<ChatMessage>,
    pub params: GenerateParams,
}

/// The version `/save` writes in its `version` field.
const SAVE_VERSION: u64 = 1;

/// What `/save` writes.
pub fn saved_json(c: &Chat) -> Value {
    let settings: Map<String, Value> = SETTINGS
        .iter()
        .map(|n| (n.to_string(), setting_value(&c.params, n)))
        .collect();
    json!({
        "version": SAVE_VERSION,
        "system": c.system,
        "settings": settings,
        "messages": c.messages.iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect::<Vec<_>>(),
    })
}

/// Reads what [`saved_json`] wrote: the system prompt, the messages and the settings (the
/// settings missing from the file are those of `params`). Errors name the field.
pub fn parse_saved(
    v: &Value,
    params: &GenerateParams,
) -> Result<(Option<String>, Vec<ChatMessage>, GenerateParams)> {
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("expected a JSON object with 'messages'"))?;
    for k in obj.keys() {
        if !["version", "system", "settings", "messages"].contains(&k.as_str()) {
            bail!("field '{k}': unknown (the fields are version, system, settings, messages)");
        }
    }
    match obj.get("version") {
        None => {}
        Some(Value::Number(n)) if n.as_u64() == Some(SAVE_VERSION) => {}
        Some(other) => bail!("field 'version': {other} is not {SAVE_VERSION}"),
    }
    let system = match obj.get("system") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => bail!("field 'system': expected a string or null"),
    };
    let list = match obj.get("messages") {
        Some(Value::Array(a)) => a,
        Some(_) => bail!("field 'messages': expected an array"),
        None => bail!("field 'messages': missing"),
    };
    let mut messages = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let field = |f: &str| -> Result<String> {
            match m.get(f) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => bail!("field 'messages[{i}].{f}': expected a string"),
                None => bail!("field 'messages[{i}].{f}': missing"),
            }
        };
        if !m.is_object() {
            bail!("field 'messages[{i}]': expected an object with role and content");
        }
        let role = field("role")?;
        if !["user", "assistant", "system", "tool"].contains(&role.as_str()) {
            bail!("field 'messages[{i}].role': '{role}' is not user, assistant, system or tool");
        }
        messages.push(ChatMessage::new(role, field("content")?));
    }
    let mut p = params.clone();
    match obj.get("settings") {
        None | Some(Value::Null) => {}
        Some(Value::Object(s)) => {
            for (k, v) in s {
                let Some(name) = SETTINGS.iter().copied().find(|n| n == k) else {
                    bail!(
                        "field 'settings.{k}': unknown setting (settings: {})",
                        SETTINGS.join(", ")
                    );
                };
                let value = match v {
                    Value::Null if name == "seed" => Some(SettingValue::Random),
                    Value::Number(n) => match n.as_u64() {
                        Some(u) => Some(SettingValue::Int(u)),
                        None if is_float(name) => n
                            .as_f64()
                            .map(|x| x as f32)
                            .filter(|x| x.is_finite())
                            .map(SettingValue::Float),
                        None => None,
                    },
                    _ => None,
                };
                let Some(value) = value else {
                    let expected = if is_float(name) {
                        "a number"
                    } else if name == "seed" {
                        "a non-negative integer or null"
                    } else {
                        "a non-negative integer"
                    };
                    bail!("field 'settings.{k}': must be {expected}, not {v}");
                };
                apply_setting(&mut p, name, value)
                    .with_context(|| format!("field 'settings.{k}'"))?;
            }
        }
        Some(_) => bail!("field 'settings': expected an object"),
    }
    Ok((system, messages, p))
}

/// `~/x` → `$HOME/x`.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// What the loop does after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

impl Chat {
    /// The messages the template renders: the system prompt, then the conversation.
    fn rendered_messages(&self) -> Vec<ChatMessage> {
        let mut all = Vec::with_capacity(self.messages.len() + 1);
        if let Some(s) = &self.system {
            all.push(ChatMessage::new("system", s.as_str()));
        }
        all.extend(self.messages.iter().cloned());
        all
    }

    fn show(&self) -> String {
        let system = match &self.system {
            Some(s) => format!("{s:?}"),
            None => "(none)".to_string(),
        };
        let users = self.messages.iter().filter(|m| m.role == "user").count();
        format!(
            "settings:\n{}\nsystem: {system}\nmessages: {} ({users} from the user)",
            settings_text(&self.params),
            self.messages.len()
        )
    }

    /// Runs one command line (it starts with `/`).
    fn command(&mut self, line: &str) -> Result<Flow> {
        let (name, rest) = match line.split_once(char::is_whitespace) {
            Some((n, r)) => (n, r.trim()),
            None => (line, ""),
        };
        match name {
            "/help" | "/?" => eprintln!("{HELP}"),
            "/bye" | "/exit" | "/quit" => return Ok(Flow::Quit),
            "/clear" | "/reset" => {
                self.messages.clear();
                eprintln!("(conversation cleared; the system prompt is kept)");
            }
            "/system" if rest.is_empty() => match &self.system {
                Some(s) => eprintln!("system: {s:?}"),
                None => eprintln!("system: (none)"),
            },
            "/system" => {
                self.system = Some(rest.to_string());
                eprintln!("(system prompt set)");
            }
            "/set" if rest.is_empty() => eprintln!("{}", settings_text(&self.params)),
            "/set" => {
                let Some((key, value)) = rest.split_once(char::is_whitespace) else {
                    bail!("/set {rest}: give a value, e.g. /set temperature 0.7");
                };
                let name = set_from_text(&mut self.params, key, value.trim())
                    .with_context(|| "/set".to_string())?;
                eprintln!("({name} = {})", setting_value(&self.params, name));
            }
            "/show" => eprintln!("{}", self.show()),
            "/save" | "/load" if rest.is_empty() => bail!("{name}: give a file name"),
            "/save" => {
                let path = expand_home(rest);
                let mut text = serde_json::to_string_pretty(&saved_json(self))?;
                text.push('\n');
                std::fs::write(&path, text)
                    .with_context(|| format!("/save: writing {}", path.display()))?;
                eprintln!(
                    "(saved {} messages to {})",
                    self.messages.len(),
                    path.display()
                );
            }
            "/load" => {
                let path = expand_home(rest);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("/load: reading {}", path.display()))?;
                let v: Value = serde_json::from_str(&text)
                    .with_context(|| format!("/load {}: not valid JSON", path.display()))?;
                let (system, messages, params) = parse_saved(&v, &self.params)
                    .with_context(|| format!("/load {}", path.display()))?;
                self.system = system;
                self.messages = messages;
                self.params = params;
                eprintln!(
                    "(loaded {} messages from {})",
                    self.messages.len(),
                    path.display()
                );
            }
            _ => bail!(
                "unknown command {name}; /help lists the commands (to send a message that \
                 starts with '/', put it in a \"\"\" block)"
            ),
        }
        Ok(Flow::Continue)
    }

    /// Answers `text` as the assistant, streaming the reply to `out`. On an error the user
    /// message is taken back out of the conversation.
    fn reply(
        &mut self,
        eng: &mut Engine,
        tmpl: &ChatTemplate,
        text: String,
        out: &mut impl Write,
        verbose: bool,
    ) -> Result<()> {
        self.messages.push(ChatMessage::new("user", text));
        let prompt = match tmpl.render(&self.rendered_messages(), true) {
            Ok(p) => p,
            Err(e) => {
                self.messages.pop();
                return Err(e.into());
            }
        };
        let ids = eng.tokenize(&prompt, true, true);
        let mut answer = String::new();
        let mut io_err = None;
        let t0 = Instant::now();
        STOP.store(false, Ordering::SeqCst);
        GENERATING.store(true, Ordering::SeqCst);
        let r = eng.generate(&ids, &self.params, |ev| {
            answer.push_str(ev.text);
            if let Err(e) = out.write_all(ev.text.as_bytes()).and_then(|()| out.flush()) {
                io_err = Some(e);
                return false;
            }
            !STOP.load(Ordering::SeqCst)
        });
        GENERATING.store(false, Ordering::SeqCst);
        let stopped = STOP.swap(false, Ordering::SeqCst);
        let stats = match r {
            Ok(s) => s,
            Err(engine::EngineError::ContextTooLong { .. }) => {
                eprintln!("(the conversation no longer fits in the context; /clear to start over)");
                self.messages.pop();
                return Ok(());
            }
            Err(e) => {
                self.messages.pop();
                return Err(e.into());
            }
        };
        if let Some(e) = io_err {
            return Err(OutputError(e).into());
        }
        writeln!(out)
            .and_then(|()| out.flush())
            .map_err(OutputError)?;
        let stopped = stopped && stats.stop == StopReason::Callback;
        if stopped {
            eprintln!("(stopped)");
        }
        if verbose {
            eprintln!(
                "{}",
                speed_line(&stats, t0.elapsed().as_secs_f64(), stopped)
            );
        }
        // A stopped reply is kept as far as it went.
        self.messages
            .push(ChatMessage::new("assistant", answer.trim()));
        Ok(())
    }
}

/// `prompt 42 tok 310.2 t/s · reply 57 tok 48.1 t/s · 1.42 s` (prompt tokens: those evaluated,
/// with the ones the KV cache already held as `+N cached`).
pub fn speed_line(s: &GenerateStats, secs: f64, stopped: bool) -> String {
    let cached = s.n_prompt.saturating_sub(s.n_prompt_evaluated);
    let cached = if cached > 0 {
        format!(" (+{cached} cached)")
    } else {
        String::new()
    };
    format!(
        "prompt {} tok{cached} {:.1} t/s · reply {} tok {:.1} t/s · {:.2} s{}",
        s.n_prompt_evaluated,
        s.prompt_tps(),
        s.n_gen,
        s.gen_tps(),
        secs,
        if stopped { " · stopped" } else { "" }
    )
}

/// Writing a reply to stdout failed: the session cannot go on (a closed pipe ends it quietly).
#[derive(Debug)]
struct OutputError(std::io::Error);

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("writing the reply")
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// `lume chat`.
pub fn run(a: &ChatArgs) -> Result<()> {
    if a.max_tokens == 0 {
        bail!("--max-tokens: must be at least 1");
    }
    a.sampling.config().validate()?;
    let path = a.load.model.path()?;
    let tmpl = a.template.template(&gguf::GgufFile::open(&path)?)?;
    install_ctrlc()?;
    let mut eng = load_engine(&path, a.load.threads, a.load.ctx, a.load.kv_type)?;
    let interactive = std::io::stdin().is_terminal();
    let mut chat = Chat {
        system: a.system.clone(),
        messages: Vec::new(),
        params: GenerateParams {
            max_tokens: a.max_tokens,
            sampler: a.sampling.config(),
            constraint: a.constraint.compile(&eng)?,
            ..GenerateParams::default()
        },
    };
    let mut src = if interactive {
        eprintln!(
            "lume chat ({}): type a message; /help for commands; Ctrl-C stops a reply; \
             Ctrl-D or /bye leaves.",
            a.load.model.model
        );
        Source::terminal()?
    } else {
        Source::Piped {
            stdin: std::io::stdin().lock(),
        }
    };
    let mut stdout = std::io::stdout();
    let mut composer = Composer::default();
    loop {
        let inputs = match src.read(composer.pending())? {
            Line::Eof if interactive => break,
            Line::Eof => match composer.finish()? {
                Some(i) => vec![i],
                None => break,
            },
            Line::Interrupted => {
                composer.clear();
                continue;
            }
            Line::Text(t) => composer.push_text(&t),
        };
        for input in inputs {
            let r = match input {
                Input::Command(c) => chat.command(&c),
                Input::Message(m) if m.trim().is_empty() => Ok(Flow::Continue),
                Input::Message(m) => {
                    let r = chat.reply(&mut eng, &tmpl, m, &mut stdout, a.verbose);
                    if interactive && r.is_ok() {
                        // A blank line between a reply and the next prompt.
                        writeln!(stdout).map_err(OutputError)?;
                    }
                    r.map(|()| Flow::Continue)
                }
            };
            match r {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => return Ok(()),
                // On a terminal, a bad command or a failed reply is said and the chat goes on;
                // a script stops at the first.
                Err(e) if interactive && !e.is::<OutputError>() => eprintln!("error: {e:#}"),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Vec<Input> {
        let mut c = Composer::default();
        let mut out: Vec<Input> = lines.iter().filter_map(|l| c.push(l)).collect();
        out.extend(c.finish().unwrap());
        out
    }

    fn msg(s: &str) -> Input {
        Input::Message(s.to_string())
    }

    #[test]
    fn lines_blocks_and_continuations() {
        assert_eq!(
            feed(&["hello\n", "/set temp 0"]),
            [msg("hello"), Input::Command("/set temp 0".into())]
        );
        assert_eq!(
            feed(&["one \\", "two\\", "three"]),
            [msg("one \ntwo\nthree")]
        );
        assert_eq!(
            feed(&["\"\"\"", "a", "", "/b", "c\"\"\""]),
            [msg("a\n\n/b\nc")]
        );
        assert_eq!(
            feed(&["\"\"\"first", "second", "\"\"\""]),
            [msg("first\nsecond")]
        );
        assert_eq!(feed(&["\"\"\" inline \"\"\""]), [msg("inline")]);
        // A command may continue with \ too.
        assert_eq!(
            feed(&["/system You are \\", "a pirate."]),
            [Input::Command("/system You are \na pirate.".into())]
        );
        // A trailing \ at the end of the input sends what it has.
        assert_eq!(feed(&["last\\"]), [msg("last")]);
        let mut c = Composer::default();
        assert!(c.push("\"\"\"").is_none());
        assert!(c.pending());
        assert!(c.finish().is_err());
        // A paste (several lines in one read) is one message, unless it holds a block.
        let mut p = Composer::default();
        assert_eq!(p.push_text("one\ntwo\n"), [msg("one\ntwo")]);
        assert_eq!(p.push_text("\"\"\"\na\nb\"\"\"\n"), [msg("a\nb")]);
        assert_eq!(p.push_text("/show\n"), [Input::Command("/show".into())]);
        assert!(p.push_text("\"\"\"\nopen").is_empty());
        assert_eq!(p.push_text("x\ny\"\"\""), [msg("open\nx\ny")]);
        // Ctrl-C drops what was pending.
        assert!(c.push("\"\"\"").is_none());
        c.clear();
        assert!(!c.pending());
        assert_eq!(c.push("x"), Some(msg("x")));
    }

    fn params() -> GenerateParams {
        GenerateParams {
            max_tokens: 100,
            ..GenerateParams::default()
        }
    }

    #[test]
    fn set_parses_checks_and_keeps_the_old_value_on_error() {
        let mut p = params();
        assert_eq!(set_from_text(&mut p, "temp", "0.7").unwrap(), "temperature");
        assert_eq!(p.sampler.temperature, 0.7);
        set_from_text(&mut p, "top-p", "0.5").unwrap();
        assert_eq!(p.sampler.top_p, 0.5);
        set_from_text(&mut p, "top_k", "7").unwrap();
        set_from_text(&mut p, "seed", "42").unwrap();
        assert_eq!(p.sampler.seed, Some(42));
        set_from_text(&mut p, "seed", "random").unwrap();
        assert_eq!(p.sampler.seed, None);
        set_from_text(&mut p, "max_tokens", "9").unwrap();
        assert_eq!(p.max_tokens, 9);
        set_from_text(&mut p, "repeat_penalty", "1").unwrap();
        let e = set_from_text(&mut p, "top_p", "2").unwrap_err().to_string();
        assert!(e.contains("top_p"), "{e}");
        assert_eq!(p.sampler.top_p, 0.5);
        for (k, v) in [
            ("temp", "warm"),
            ("temp", "inf"),
            ("top_k", "-1"),
            ("max_tokens", "0"),
            ("seed", "x"),
        ] {
            let e = format!("{:#}", set_from_text(&mut p, k, v).unwrap_err());
            assert!(e.contains(setting_name(k).unwrap()), "{k} {v}: {e}");
        }
        let e = set_from_text(&mut p, "warmth", "1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown setting 'warmth'"), "{e}");
    }

    #[test]
    fn save_and_parse_round_trip() {
        let mut p = params();
        set_from_text(&mut p, "temp", "0").unwrap();
        set_from_text(&mut p, "seed", "3").unwrap();
        let chat = Chat {
            system: Some("Be brief.".into()),
            messages: vec![
                ChatMessage::new("user", "hi\nthere"),
                ChatMessage::new("assistant", "hello"),
            ],
            params: p.clone(),
        };
        let v = saved_json(&chat);
        assert_eq!(v["settings"]["temperature"], 0.0);
        assert_eq!(v["settings"]["top_p"].to_string(), "0.95");
        assert_eq!(v["settings"]["max_tokens"], 100);
        let (system, messages, q) = parse_saved(&v, &params()).unwrap();
        assert_eq!(system.as_deref(), Some("Be brief."));
        assert_eq!(messages, chat.messages);
        assert_eq!(q.sampler, p.sampler);
        assert_eq!(q.max_tokens, 100);
    }

    #[test]
    fn bad_saved_files_name_the_field() {
        let p = params();
        let err = |v: Value| format!("{:#}", parse_saved(&v, &p).unwrap_err());
        assert!(err(json!([1])).contains("JSON object"));
        assert!(err(json!({})).contains("'messages': missing"));
        assert!(err(json!({"messages": 3})).contains("'messages': expected an array"));
        let e = err(json!({"messages": [{"role": "user"}]}));
        assert!(e.contains("'messages[0].content': missing"), "{e}");
        let e = err(json!({"messages": [{"role": "user", "content": 1}]}));
        assert!(
            e.contains("'messages[0].content': expected a string"),
            "{e}"
        );
        let e = err(json!({"messages": [{"role": "robot", "content": ""}]}));
        assert!(e.contains("'messages[0].role'"), "{e}");
        let e = err(json!({"messages": [], "settings": {"top_p": "high"}}));
        assert!(e.contains("'settings.top_p': must be a number"), "{e}");
        let e = err(json!({"messages": [], "settings": {"top_p": 3}}));
        assert!(
            e.contains("'settings.top_p'") && e.contains("(0, 1]"),
            "{e}"
        );
        let e = err(json!({"messages": [], "settings": {"top_k": 1.5}}));
        assert!(
            e.contains("'settings.top_k': must be a non-negative integer"),
            "{e}"
        );
        let e = err(json!({"messages": [], "settings": {"seed": "x"}}));
        assert!(e.contains("'settings.seed'"), "{e}");
        let e = err(json!({"messages": [], "settings": {"warmth": 1}}));
        assert!(e.contains("'settings.warmth': unknown"), "{e}");
        let e = err(json!({"messages": [], "version": 2}));
        assert!(e.contains("'version'"), "{e}");
        let e = err(json!({"messages": [], "system": 5}));
        assert!(e.contains("'system'"), "{e}");
        let e = err(json!({"messages": [], "extra": 5}));
        assert!(e.contains("'extra'"), "{e}");
        // Settings left out keep their values; integers are fine for float settings.
        let (_, _, q) =
            parse_saved(&json!({"messages": [], "settings": {"temperature": 1}}), &p).unwrap();
        assert_eq!(q.sampler.temperature, 1.0);
        assert_eq!(q.sampler.top_p, p.sampler.top_p);
    }

    #[test]
    fn speed_line_format() {
        let s = GenerateStats {
            n_prompt: 50,
            n_prompt_evaluated: 42,
            prompt_ms: 100.0,
            n_gen: 57,
            gen_ms: 1000.0,
            stop: StopReason::Eog,
        };
        assert_eq!(
            speed_line(&s, 1.4249, false),
            "prompt 42 tok (+8 cached) 420.0 t/s · reply 57 tok 57.0 t/s · 1.42 s"
        );
        assert!(speed_line(&s, 1.0, true).ends_with(" · stopped"));
    }
}
