//! Chat templates: the model's own `tokenizer.chat_template` (Jinja) rendered with minijinja.
//!
//! Hugging Face renders these templates with Python's jinja2 (`trim_blocks`, `lstrip_blocks`)
//! and a few extras; we provide the same environment: the variables `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `tools` (none), the function
//! `raise_exception(msg)`, the `tojson` filter, and Python string/dict methods such as
//! `.strip()` or `.items()` (minijinja-contrib's pycompat).
//!
//! A model without a template cannot chat: [`ChatTemplate::from_gguf`] returns
//! [`EngineError::NoChatTemplate`]. [`ChatTemplate::chatml`] is available for callers that
//! want to fall back explicitly (lume does not, so a base model is never silently misused).

use gguf::GgufFile;
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// The metadata key holding the template.
pub const TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// Most template instructions one render may run: a fixed allowance plus some per message.
/// Real templates use tens per message (Qwen2.5's and SmolLM2's: 40 to 100 for one to three
/// messages); the bound is for templates (they come from the model file) that never end.
const FUEL_BASE: u64 = 1_000_000;
const FUEL_PER_MESSAGE: u64 = 10_000;
/// Longest rendered prompt, in bytes: 16 MiB, or four times the messages' text if that is
/// more (a template that prints in a loop stops here, not when memory runs out).
const MIN_OUTPUT_LIMIT: usize = 16 << 20;

/// A plain ChatML template (what SmolLM2 and Qwen use, without their default system prompts).
pub const CHATML: &str =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + \
message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ \
'<|im_start|>assistant\n' }}{% endif %}";

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (or `tool`).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled-on-demand chat template with the special-token texts it may refer to.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// A template from its Jinja source and the texts of the BOS and EOS tokens.
    pub fn new(source: impl Into<String>, bos_token: &str, eos_token: &str) -> ChatTemplate {
        ChatTemplate {
            source: source.into(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        }
    }

    /// The model's template, with `bos_token`/`eos_token` taken from its vocabulary.
    pub fn from_gguf(f: &GgufFile) -> Result<ChatTemplate, EngineError> {
        let source = match f.get(TEMPLATE_KEY) {
            None => {
                return Err(EngineError::NoChatTemplate {
                    path: f.path().to_path_buf(),
                })
            }
            Some(_) => f.get_str(TEMPLATE_KEY)?,
        };
        let bos = special_text(f, "tokenizer.ggml.bos_token_id");
        let eos = special_text(f, "tokenizer.ggml.eos_token_id");
        Ok(ChatTemplate::new(source, &bos, &eos))
    }

    /// A ChatML template (explicit fallback for models without one).
    pub fn chatml() -> ChatTemplate {
        ChatTemplate::new(CHATML, "", "<|im_end|>")
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// answer begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        let mut env = Environment::new();
        // jinja2 settings used by Hugging Face's apply_chat_template.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        let err = |e: minijinja::Error| EngineError::Template { msg: one_line(&e) };
        env.set_fuel(Some(FUEL_BASE.saturating_add(
            FUEL_PER_MESSAGE.saturating_mul(messages.len() as u64),
        )));
        env.add_template("chat", &self.source).map_err(err)?;
        let tmpl = env.get_template("chat").map_err(err)?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            tools => minijinja::Value::from(()),
        };
        let text: usize = messages
            .iter()
            .map(|m| m.role.len() + m.content.len())
            .sum();
        let mut out = Capped {
            buf: Vec::new(),
            limit: MIN_OUTPUT_LIMIT.max(text.saturating_mul(4)),
            over: false,
        };
        let rendered = tmpl.render_captured_to(ctx, &mut out).map(drop);
        match rendered {
            Ok(()) => String::from_utf8(out.buf).map_err(|e| EngineError::Template {
                msg: format!("the template's output is not UTF-8: {e}"),
            }),
            Err(_) if out.over => Err(EngineError::Template {
                msg: format!("the rendered prompt is longer than {} bytes", out.limit),
            }),
            Err(e) => Err(err(e)),
        }
    }
}

/// Collects rendered text, refusing to hold more than `limit` bytes.
struct Capped {
    buf: Vec<u8>,
    limit: usize,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.over = true;
            return Err(std::io::Error::other("the rendered prompt is too long"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The text of the special token whose id is stored under `key`, or "" when absent.
fn special_text(f: &GgufFile, key: &str) -> String {
    let Ok(id) = f.get_u32(key) else {
        return String::new();
    };
    f.get_array("tokenizer.ggml.tokens")
        .ok()
        .and_then(|toks| toks.get(id as usize))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string()
}

/// A minijinja error with its cause chain, on one line.
fn one_line(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s += &format!(": {c}");
        src = c.source();
    }
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders() {
        let t = ChatTemplate::chatml();
        let s = t.render(&[ChatMessage::new("user", "hi")], true).unwrap();
        assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn raise_exception_and_python_methods() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}\
             {{ messages[0].content.strip() | upper }}{{ bos_token }}",
            "<s>",
            "</s>",
        );
        assert_eq!(
            t.render(&[ChatMessage::new("user", "  hi ")], false)
                .unwrap(),
            "HI<s>"
        );
        let err = t
            .render(&[ChatMessage::new("system", "x")], false)
            .unwrap_err();
        assert!(err.to_string().contains("first must be user"), "{err}");
    }

    /// A template from a model file cannot run forever nor print until memory runs out
    /// (two nested `range(100000)` loops, fed by hand to the `load` fuzz target, ran out of
    /// memory).
    #[test]
    fn runaway_templates_are_errors() {
        let msgs = [ChatMessage::new("user", "hi")];
        let endless = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "",
            "",
        );
        let err = endless.render(&msgs, true).unwrap_err();
        assert!(matches!(err, EngineError::Template { .. }), "{err}");
        assert!(err.to_string().contains("fuel"), "{err}");
        let loud = ChatTemplate::new(
            "{% for i in range(100000) %}{{ 'ab' * 1000 }}{% endfor %}",
            "",
            "",
        );
        let err = loud.render(&msgs, true).unwrap_err();
        assert!(
            err.to_string()
                .contains("the rendered prompt is longer than 16777216 bytes"),
            "{err}"
        );
        // Long conversations still render: the allowances grow with them.
        let long: Vec<ChatMessage> = (0..2000)
            .map(|i| ChatMessage::new("user", "x".repeat(10_000 + i)))
            .collect();
        let s = ChatTemplate::chatml().render(&long, true).unwrap();
        assert!(s.len() > 20_000_000);
    }

    #[test]
    fn bad_template_is_an_error() {
        let t = ChatTemplate::new("{% for %}", "", "");
        let err = t.render(&[], true).unwrap_err();
        assert!(matches!(err, EngineError::Template { .. }));
    }
}
