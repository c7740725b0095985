//! Chat templates: the model's own `tokenizer.chat_template` (Jinja) rendered with minijinja
//! as Hugging Face transformers renders it with Python's jinja2.
//!
//! transformers' `apply_chat_template` renders in a sandboxed jinja2 environment with
//! `trim_blocks` and `lstrip_blocks`, loop controls, its `{% generation %}` tag, the functions
//! `raise_exception(msg)` and `strftime_now(format)`, a `tojson` that keeps non-ASCII text, and
//! the variables `messages` (keys whose value is null dropped), `tools` and `documents` (none
//! when not given), `add_generation_prompt`, the special tokens (`bos_token`, `eos_token`) and
//! any extra keyword arguments (`enable_thinking`, …). We provide the same: minijinja with
//! minijinja-contrib's Python string and dict methods, and [`pyjinja`] for what they lack
//! (Python's printing of values, `json.dumps`, Python's answers to `is iterable` and friends for
//! none and undefined, …). `testdata/templates` holds every template of llama.cpp's collection
//! with transformers' renderings, which `tests/template_parity.rs` compares byte for byte.
//!
//! A model without a template cannot chat: [`ChatTemplate::from_gguf`] returns
//! [`EngineError::NoChatTemplate`]. [`ChatTemplate::chatml`] is available for callers that
//! want to fall back explicitly (lume does not, so a base model is never silently misused).

mod pyjinja;
mod strftime;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use gguf::GgufFile;
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// The variables a template always gets from the request; extra keyword arguments may not
/// replace them.
pub const RESERVED_VARIABLES: [&str; 4] =
    ["messages", "tools", "documents", "add_generation_prompt"];

/// Names a message's reasoning is passed under (transformers copies the first one present to
/// `thinking` and `reasoning_content`, the names templates read).
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// One chat message with text content (see [`ChatInput`] for messages of any shape).
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

/// Everything a template is rendered with besides its special tokens, as transformers'
/// `apply_chat_template` takes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatInput {
    /// Message objects (`role`, `content`, and whatever else the template reads:
    /// `tool_calls`, `reasoning_content`, `name`, …); keys whose value is null are dropped.
    pub messages: Vec<Value>,
    /// The OpenAI-style function list, or none.
    pub tools: Option<Value>,
    /// Documents for retrieval templates, or none.
    pub documents: Option<Value>,
    /// End the text where the assistant's answer begins.
    pub add_generation_prompt: bool,
    /// Extra template variables (`enable_thinking`, `reasoning_effort`, …), over the
    /// template's own ([`ChatTemplate::with_kwargs`]).
    pub kwargs: Map<String, Value>,
}

impl ChatInput {
    /// Text messages, with or without the generation prompt.
    pub fn from_messages(messages: &[ChatMessage], add_generation_prompt: bool) -> ChatInput {
        ChatInput {
            messages: messages
                .iter()
                .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
                .collect(),
            add_generation_prompt,
            ..ChatInput::default()
        }
    }
}

/// A compiled-on-demand chat template with the special-token texts it may refer to.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
    kwargs: Map<String, Value>,
    now: Option<SystemTime>,
}

impl ChatTemplate {
    /// A template from its Jinja source and the texts of the BOS and EOS tokens.
    pub fn new(source: impl Into<String>, bos_token: &str, eos_token: &str) -> ChatTemplate {
        ChatTemplate {
            source: source.into(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            kwargs: Map::new(),
            now: None,
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
        Ok(ChatTemplate::with_tokens_of(source, f))
    }

    /// `source` (e.g. from `--chat-template`) with the special tokens of the model `f`.
    pub fn with_tokens_of(source: impl Into<String>, f: &GgufFile) -> ChatTemplate {
        let bos = special_text(f, "tokenizer.ggml.bos_token_id");
        let eos = special_text(f, "tokenizer.ggml.eos_token_id");
        ChatTemplate::new(source, &bos, &eos)
    }

    /// A ChatML template (explicit fallback for models without one).
    pub fn chatml() -> ChatTemplate {
        ChatTemplate::new(CHATML, "", "<|im_end|>")
    }

    /// Extra variables every render sees (e.g. `{"enable_thinking": false}`); a render's own
    /// [`ChatInput::kwargs`] go over these.
    pub fn with_kwargs(mut self, kwargs: Map<String, Value>) -> ChatTemplate {
        self.kwargs = kwargs;
        self
    }

    /// The extra variables of [`with_kwargs`](Self::with_kwargs).
    pub fn kwargs(&self) -> &Map<String, Value> {
        &self.kwargs
    }

    /// Makes `strftime_now` print `now` instead of the current time (for tests: renders that
    /// mention today's date are then reproducible).
    pub fn with_time(mut self, now: SystemTime) -> ChatTemplate {
        self.now = Some(now);
        self
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The texts of the BOS and EOS tokens the template sees.
    pub fn tokens(&self) -> (&str, &str) {
        (&self.bos_token, &self.eos_token)
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// answer begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, EngineError> {
        self.render_input(&ChatInput::from_messages(messages, add_generation_prompt))
    }

    /// Renders `input` as transformers' `apply_chat_template(..., tokenize=False)` does.
    ///
    /// A template that refuses the conversation through `raise_exception(msg)` gives
    /// [`EngineError::TemplateRaised`] with its message; any other failure (a syntax error, a
    /// loop over none, an unknown method, …) gives [`EngineError::Template`].
    pub fn render_input(&self, input: &ChatInput) -> Result<String, EngineError> {
        let err = |e: minijinja::Error| EngineError::Template { msg: one_line(&e) };
        let messages = input
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| normalize_message(i, m))
            .collect::<Result<Vec<Value>, EngineError>>()?;

        let mut vars: Map<String, Value> = Map::new();
        vars.insert("bos_token".into(), Value::from(self.bos_token.as_str()));
        vars.insert("eos_token".into(), Value::from(self.eos_token.as_str()));
        for (k, v) in self.kwargs.iter().chain(input.kwargs.iter()) {
            if RESERVED_VARIABLES.contains(&k.as_str()) {
                return Err(EngineError::Template {
                    msg: format!(
                        "chat template kwargs may not set '{k}' (it is given by the request)"
                    ),
                });
            }
            vars.insert(k.clone(), v.clone());
        }
        vars.insert("messages".into(), Value::Array(messages));
        vars.insert("tools".into(), input.tools.clone().unwrap_or(Value::Null));
        vars.insert(
            "documents".into(),
            input.documents.clone().unwrap_or(Value::Null),
        );
        vars.insert(
            "add_generation_prompt".into(),
            Value::Bool(input.add_generation_prompt),
        );

        // The messages' text (JSON) sizes the output cap.
        let text: usize = vars.values().map(|v| v.to_string().len()).sum();
        let raised: Arc<Mutex<Option<String>>> = Arc::default();
        let mut env = self.environment(raised.clone()).map_err(err)?;
        env.set_fuel(Some(FUEL_BASE.saturating_add(
            FUEL_PER_MESSAGE.saturating_mul(input.messages.len() as u64),
        )));
        let tmpl = env.get_template("chat").map_err(err)?;
        let ctx = minijinja::Value::from_serialize(&vars);
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
            Err(e) => Err(
                match raised.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    Some(msg) => EngineError::TemplateRaised { msg },
                    None => err(e),
                },
            ),
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

impl ChatTemplate {
    /// Compiles the template without rendering it (a syntax error is reported here).
    pub fn check(&self) -> Result<(), EngineError> {
        self.environment(Arc::default())
            .map(|_| ())
            .map_err(|e| EngineError::Template { msg: one_line(&e) })
    }

    /// The jinja2-like environment with the template compiled as `chat`; `raised` receives the
    /// message of `raise_exception`.
    fn environment(
        &self,
        raised: Arc<Mutex<Option<String>>>,
    ) -> Result<Environment<'static>, minijinja::Error> {
        let mut env = Environment::new();
        // jinja2 settings used by transformers (keep_trailing_newline stays false, as there).
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        pyjinja::install(&mut env);
        env.add_function(
            "raise_exception",
            move |msg: String| -> Result<String, minijinja::Error> {
                *raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg.clone());
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        let now = self.now;
        env.add_function("strftime_now", move |format: String| -> String {
            strftime::strftime(now.unwrap_or_else(SystemTime::now), &format)
        });
        env.add_template_owned("chat", pyjinja::rewrite_source(&self.source))?;
        Ok(env)
    }
}

/// A message as transformers hands it to the template: an object without null values, with
/// its reasoning (under any of [`REASONING_FIELDS`]) also as `thinking` and
/// `reasoning_content`.
fn normalize_message(i: usize, m: &Value) -> Result<Value, EngineError> {
    let Some(obj) = m.as_object() else {
        return Err(EngineError::Template {
            msg: format!("messages[{i}] must be an object, not {m}"),
        });
    };
    let obj: Map<String, Value> = obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let reasoning = REASONING_FIELDS.iter().find_map(|k| obj.get(*k)).cloned();
    let Some(reasoning) = reasoning else {
        return Ok(Value::Object(obj));
    };
    // Python: {"thinking": reasoning, **message, "reasoning_content": reasoning}
    let mut out = Map::new();
    out.insert("thinking".into(), reasoning.clone());
    for (k, v) in obj {
        out.insert(k, v);
    }
    out.insert("reasoning_content".into(), reasoning);
    Ok(Value::Object(out))
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
        assert!(
            matches!(&err, EngineError::TemplateRaised { msg } if msg == "first must be user"),
            "{err:?}"
        );
    }

    #[test]
    fn messages_are_normalized_and_kwargs_merged() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{{ m.keys()|list }}{{ m.thinking }};{% endfor %}\
             {{ enable_thinking }} {{ flavour }} {{ bos_token }}",
            "<s>",
            "",
        )
        .with_kwargs(serde_json::from_str(r#"{"enable_thinking": true, "flavour": "a"}"#).unwrap());
        let input = ChatInput {
            messages: vec![
                serde_json::json!({"role": "user", "content": "u", "name": null}),
                serde_json::json!({"role": "assistant", "content": "a", "reasoning": "r"}),
            ],
            kwargs: serde_json::from_str(r#"{"flavour": "b", "bos_token": "<B>"}"#).unwrap(),
            ..ChatInput::default()
        };
        assert_eq!(
            t.render_input(&input).unwrap(),
            "['role', 'content'];['thinking', 'role', 'content', 'reasoning', \
             'reasoning_content']r;True b <B>"
        );
        let bad = ChatInput {
            kwargs: serde_json::from_str(r#"{"messages": []}"#).unwrap(),
            ..input.clone()
        };
        let err = t.render_input(&bad).unwrap_err();
        assert!(err.to_string().contains("'messages'"), "{err}");
        let bad = ChatInput {
            messages: vec![serde_json::json!("hi")],
            ..input
        };
        let err = t.render_input(&bad).unwrap_err();
        assert!(
            err.to_string().contains("messages[0] must be an object"),
            "{err}"
        );
    }

    #[test]
    fn bad_template_is_an_error() {
        let t = ChatTemplate::new("{% for %}", "", "");
        let err = t.render(&[], true).unwrap_err();
        assert!(matches!(err, EngineError::Template { .. }));
    }

    /// Small templates with what Python's jinja2 renders for them inside transformers (made with
    /// the venv of scripts/gen_template_refs.py, messages system S / user U / assistant A).
    #[test]
    fn renders_like_python_jinja() {
        let cases = [
        ("{{ none }} {{ true }} {{ false }} {{ 2.0 }} {{ 1e16 }} {{ 4/2 }} {{ 7//2 }}", "None True False 2.0 1e+16 2.0 3"),
        ("{{ [1, none, true, 'a\\'b', 2.5] }} {{ {'k': 'v', 'n': none} }}", "[1, None, True, \"a'b\", 2.5] {'k': 'v', 'n': None}"),
        ("{{ x }}|{{ x|length }}|{{ x|list }}|{{ x is defined }}|{{ x is iterable }}|{{ x is sequence }}", "|0|[]|False|True|True"),
        ("{{ tools is iterable }} {{ tools is none }} {{ tools is defined }} {{ documents is none }}", "False True True True"),
        ("{% if tools is iterable and tools|length > 0 %}yes{% else %}no{% endif %}", "no"),
        ("{{ 'é\"\\n'|tojson }} {{ 'é'|tojson(ensure_ascii=true) }} {{ {'b': 1, 'a': [1.5, true, none]}|tojson }}", "\"é\\\"\\n\" \"\\u00e9\" {\"b\": 1, \"a\": [1.5, true, null]}"),
        ("{{ {'b': 1, 'a': [1, {}], 'c': []}|tojson(indent=2) }}", "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    {}\n  ],\n  \"c\": []\n}"),
        ("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true, separators=(',', ':')) }}", "{\"a\":2,\"b\":1}"),
        ("{{ [true, none, 'x']|join(', ') }}|{{ 3|string }}{{ none|string }}", "True, None, x|3None"),
        ("{% for m in messages %}{% if loop.first %}{% continue %}{% endif %}{{ m.role }}{% if loop.index == 2 %}{% break %}{% endif %}{% endfor %}", "user"),
        ("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", "3"),
        ("{{ messages[0].get('role') }} {{ messages[0].get('nope', 'dflt') }} {% for k, v in messages[0].items() %}{{ k }}={{ v }};{% endfor %}", "system dflt role=system;content=S;"),
        ("{{ '  a-b-c '.strip().split('-') }} {{ 'abc'.startswith('ab') }} {{ 'a{}c'.format(1) }} {{ 'x'.replace('x', 'y') }} {{ 'Hi'.upper() }}", "['a', 'b', 'c'] True a1c y HI"),
        ("{{ messages|selectattr('role', 'equalto', 'user')|list|length }} {{ messages|map(attribute='role')|join('/') }}", "1 system/user/assistant"),
        ("{%- generation -%} gen {%- endgeneration %}", "gen"),
        ("a\n  {% if true %}\n  b\n  {% endif %}\nc\n", "a\n  b\nc"),
        ("{{ strftime_now('%d %B %Y') }}", "15 January 2026"),
        ("{{ 1 is number }} {{ true is number }} {{ true is integer }} {{ 1.5 is float }} {{ none is string }} {{ 'a' is string }} {{ {} is mapping }}", "True True False True False True True"),
        ];
        let msgs = [
            ChatMessage::new("system", "S"),
            ChatMessage::new("user", "U"),
            ChatMessage::new("assistant", "A"),
        ];
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_768_473_000);
        for (src, want) in cases {
            let t = ChatTemplate::new(src, "", "").with_time(now);
            let got = t
                .render(&msgs, false)
                .unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(got, want, "{src}");
        }
    }

    /// Without a fixed time, `strftime_now` prints the current one (UTC).
    #[test]
    fn strftime_now_is_today_by_default() {
        let t = ChatTemplate::new("{{ strftime_now('%Y-%m-%d') }}", "", "");
        let before = strftime::strftime(std::time::SystemTime::now(), "%Y-%m-%d");
        let got = t.render(&[], false).unwrap();
        let after = strftime::strftime(std::time::SystemTime::now(), "%Y-%m-%d");
        assert!(got == before || got == after, "{got} vs {before}");
        assert!(got.as_str() > "2025-12-31", "{got}");
    }

    /// Broken templates give errors (or render), never a panic in the source rewrites.
    #[test]
    fn malformed_templates_do_not_panic() {
        let pieces = [
            "{{",
            "}}",
            "{%",
            "%}",
            "{#",
            "#}",
            "'",
            "\"",
            "+",
            "-",
            " ",
            "for ",
            " in ",
            "if ",
            "set ",
            "=",
            "(",
            ")",
            "[",
            "]",
            "é",
            "x",
            "|safe",
            "generation",
            "endgeneration",
            "raw",
            "endraw",
            "is not",
            "\\",
        ];
        let mut seed = 0x2545_f491_u64;
        for _ in 0..4000 {
            let mut src = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                src.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            let _ = ChatTemplate::new(src, "", "").render(&[ChatMessage::new("user", "u")], true);
        }
    }

    /// What Python refuses, lume refuses.
    #[test]
    fn fails_where_python_fails() {
        for (src, why) in [
            ("{% for t in tools %}{% endfor %}", "not iterable"),
            (
                "{{ messages|map(attribute='role')|tojson }}",
                "not JSON serializable",
            ),
            ("{{ nope|tojson }}", "not JSON serializable"),
            ("{{ messages.append(1) }}", "append"),
            ("{{ nope.attr }}", "undefined"),
        ] {
            let t = ChatTemplate::new(src, "", "");
            let err = t
                .render(&[ChatMessage::new("user", "u")], false)
                .unwrap_err();
            assert!(
                matches!(err, EngineError::Template { .. }),
                "{src}: {err:?}"
            );
            assert!(err.to_string().contains(why), "{src}: {err}");
        }
    }

    /// Python's `+` (markupsafe's `Markup` escapes what is added to it) and its precedence,
    /// with what jinja2 renders (messages system "S<" / user U / assistant A).
    #[test]
    fn plus_is_pythons() {
        let msgs = [
            ChatMessage::new("system", "S<"),
            ChatMessage::new("user", "U"),
            ChatMessage::new("assistant", "A"),
        ];
        for (src, want) in [
            ("{{ '<b>'|safe + messages[0].content + '&' }}|{{ 'x<' + '<i>'|safe }}|{{ ('<'|safe + '>') ~ '<' }}", "<b>S&lt;&amp;|x&lt;<i>|<&gt;<"),
            ("{{ ([1] + [2, 3])|tojson }} {{ 1 + true }} {{ 1.5 + 1 }} {{ (1 + 2) * 3 }} {{ 10 - 2 + 1 }} {{ -1 + 2 }}", "[1, 2, 3] 2 2.5 9 9 1"),
            ("{% set x = messages[0].content + '!' if messages else 'none' %}{{ x }}|{% if x + '?' == 'S!?' %}yes{% endif %}", "S<!|"),
            ("{{ messages|map(attribute='content')|join('') + 'Z' }} {{ 'a' ~ (1 + 2) }} {{ messages[0]['content'] + messages[1].content|lower }}", "S<UAZ a3 S<u"),
            ("{% for i in range(1 + 1) if i + 1 > 1 %}{{ i + 10 }}{% endfor %} {{ {'k': 'a' + 'b'}['k'] }} {{ 'q' if 1 + 1 == 2 else 'r' }}", "11 ab q"),
        ] {
            let got = ChatTemplate::new(src, "", "").render(&msgs, false);
            assert_eq!(got.unwrap_or_else(|e| panic!("{src}: {e}")), want, "{src}");
        }
        for (src, why) in [
            (
                "{{ 'a' + 1 }}",
                "can only concatenate str (not \"int\") to str",
            ),
            (
                "{{ 1 + 'a' }}",
                "unsupported operand type(s) for +: 'int' and 'str'",
            ),
            (
                "{{ [1] + 'a' }}",
                "can only concatenate list (not \"str\") to list",
            ),
            ("{{ nope + 'a' }}", "undefined"),
        ] {
            let err = ChatTemplate::new(src, "", "")
                .render(&msgs, false)
                .unwrap_err();
            assert!(err.to_string().contains(why), "{src}: {err}");
        }
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
}
