//! Tool calls (OpenAI `tools` / `tool_choice`) in the Hermes / Qwen form:
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Paris"}}
//! </tool_call>
//! ```
//!
//! - [`ToolStyle::of`]: a template that mentions `<tool_call>` (Qwen2.5, Qwen3, Hermes) gets the
//!   tool list as its `tools` variable and renders it itself; any other template gets
//!   [`system_prompt`], which describes the tools and that same form, in the system message.
//! - [`Tool::parse_list`]: checks the request's `tools` array, naming the field at fault.
//! - [`grammar`]: for `tool_choice` `required` or a named function, a Lark grammar whose
//!   arguments are each tool's parameter schema (`%json`), so a call always parses and fits.
//! - [`ToolParser`]: splits streamed text into plain content and finished [`ToolCall`]s.

use serde_json::{json, Map, Value};

use crate::Spec;

/// Where the calls start and end in the text.
pub const CALL_OPEN: &str = "<tool_call>";
pub const CALL_CLOSE: &str = "</tool_call>";

/// One function the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON schema of the arguments object.
    pub parameters: Value,
    /// The tool as the request sent it (what a template's `tools` variable receives).
    pub raw: Value,
}

/// A bad `tools` entry: the field (`tools[2].function.name`) and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolsError {
    pub field: String,
    pub message: String,
}

impl Tool {
    /// The request's `tools`: `[{"type": "function", "function": {"name", "description"?,
    /// "parameters"?}}]`, names unique and made of letters, digits, `_` and `-`.
    pub fn parse_list(v: &Value) -> Result<Vec<Tool>, ToolsError> {
        let err = |field: String, message: String| ToolsError { field, message };
        let Some(items) = v.as_array() else {
            return Err(err("tools".into(), "'tools' must be an array".into()));
        };
        let mut out: Vec<Tool> = Vec::with_capacity(items.len());
        for (i, t) in items.iter().enumerate() {
            let at = |k: &str| format!("tools[{i}]{k}");
            let ty = t.get("type").and_then(Value::as_str);
            if ty != Some("function") {
                return Err(err(
                    at(".type"),
                    format!("'{}' must be \"function\"", at(".type")),
                ));
            }
            let Some(f) = t.get("function").and_then(Value::as_object) else {
                return Err(err(
                    at(".function"),
                    format!("'{}' must be an object", at(".function")),
                ));
            };
            let name = f.get("name").and_then(Value::as_str).unwrap_or("");
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !name_ok {
                return Err(err(
                    at(".function.name"),
                    format!(
                        "'{}' must be 1 to 64 letters, digits, '_', '-' or '.'",
                        at(".function.name")
                    ),
                ));
            }
            if out.iter().any(|o| o.name == name) {
                return Err(err(
                    at(".function.name"),
                    format!("two tools are named '{name}'"),
                ));
            }
            let parameters = match f.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object"}),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(err(
                        at(".function.parameters"),
                        format!(
                            "'{}' must be a JSON schema object",
                            at(".function.parameters")
                        ),
                    ))
                }
            };
            out.push(Tool {
                name: name.to_string(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                parameters,
                raw: t.clone(),
            });
        }
        Ok(out)
    }
}

/// `tool_choice`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (free text, calls parsed out of it).
    #[default]
    Auto,
    /// No calls: the tools are not shown to the model.
    None,
    /// At least one call, nothing else (constrained).
    Required,
    /// Exactly one call of this function (constrained).
    Named(String),
}

/// How a template takes tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolStyle {
    /// The template renders `tools` and the `<tool_call>` form itself.
    Template,
    /// The template knows nothing of tools: [`system_prompt`] describes them.
    Injected,
}

impl ToolStyle {
    pub fn of(template_source: &str) -> ToolStyle {
        if template_source.contains(CALL_OPEN) && template_source.contains("tools") {
            ToolStyle::Template
        } else {
            ToolStyle::Injected
        }
    }
}

/// The system-message text that teaches a template without tool support the tools and the
/// call form.
pub fn system_prompt(tools: &[Tool]) -> String {
    let mut s = String::from(
        "You can call functions to help with the user's request. The functions, as JSON \
         signatures:\n<tools>\n",
    );
    for t in tools {
        let sig = json!({
            "name": t.name,
            "description": t.description,
            "parameters": t.parameters,
        });
        s.push_str(&sig.to_string());
        s.push('\n');
    }
    s.push_str(
        "</tools>\nTo call a function, answer with a JSON object with its name and arguments \
         inside <tool_call></tool_call> tags:\n<tool_call>\n{\"name\": <function-name>, \
         \"arguments\": <args-json-object>}\n</tool_call>",
    );
    s
}

/// The grammar `choice` imposes (`None` for `auto` and `none`): one call of the named tool, or
/// one or more calls of any tool, each `{"name": ..., "arguments": <its parameters>}`.
///
/// Each tool's parameter schema is checked first ([`grammar::check_schema`]): what llguidance
/// would silently ignore is an error naming the tool's field.
pub fn grammar(tools: &[Tool], choice: &ToolChoice) -> Result<Option<Spec>, ToolsError> {
    if !matches!(choice, ToolChoice::Auto | ToolChoice::None) {
        for (i, t) in tools.iter().enumerate() {
            grammar::check_schema(&t.parameters).map_err(|e| ToolsError {
                field: format!("tools[{i}].function.parameters"),
                message: format!("tools[{i}].function.parameters: {e}"),
            })?;
        }
    }
    Ok(grammar_of(tools, choice))
}

fn grammar_of(tools: &[Tool], choice: &ToolChoice) -> Option<Spec> {
    let call_schema = |t: &Tool| {
        json!({
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": false,
        })
    };
    let (schema, many) = match choice {
        ToolChoice::Auto | ToolChoice::None => return None,
        ToolChoice::Named(n) => (call_schema(tools.iter().find(|t| &t.name == n)?), false),
        ToolChoice::Required => {
            let branches: Vec<Value> = tools.iter().map(call_schema).collect();
            if branches.len() == 1 {
                (branches.into_iter().next().expect("one"), true)
            } else {
                (json!({ "anyOf": branches }), true)
            }
        }
    };
    let mut schema = schema;
    if let Value::Object(m) = &mut schema {
        m.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    let start = if many {
        "start: call (\"\\n\" call)*"
    } else {
        "start: call"
    };
    Some(Spec::Lark(format!(
        "{start}\ncall: \"{CALL_OPEN}\\n\" %json {schema} \"\\n{CALL_CLOSE}\"\n"
    )))
}

/// The choice from the request's `tool_choice` (absent: auto), or what is wrong with it.
pub fn parse_choice(v: Option<&Value>, tools: &[Tool]) -> Result<ToolChoice, String> {
    match v {
        None | Some(Value::Null) => Ok(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => {
                if tools.is_empty() {
                    Err("'tool_choice' is \"required\" but 'tools' is empty".into())
                } else {
                    Ok(ToolChoice::Required)
                }
            }
            other => Err(format!(
                "'tool_choice' must be \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\"}}}} (got \"{other}\")"
            )),
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or("'tool_choice.function.name' is missing")?;
            if tools.iter().any(|t| t.name == name) {
                Ok(ToolChoice::Named(name.to_string()))
            } else {
                Err(format!("'tool_choice' names '{name}', which is not in 'tools'"))
            }
        }
        Some(_) => Err("'tool_choice' must be a string or an object".into()),
    }
}

/// One parsed call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments object as compact JSON text (OpenAI's `function.arguments`).
    pub arguments: String,
}

/// What [`ToolParser`] hands out.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Text(String),
    Call(ToolCall),
}

/// Splits generated text, as it streams, into content and calls. Text that may be the start of
/// `<tool_call>` is held back until it is known not to be; a block that does not hold a valid
/// call comes out as text. Small models sometimes answer with the call's JSON alone, without
/// the tags: an output that is nothing but `{"name": <a tool's name>, "arguments": {…}}` is a
/// call too (such an output is held back until its end).
#[derive(Debug, Default)]
pub struct ToolParser {
    /// The tools' names (for untagged calls).
    names: Vec<String>,
    /// Nothing but whitespace has come out yet.
    at_start: bool,
    /// The output began with `{`: all of it is held back until the end.
    bare: bool,
    buf: String,
    /// Inside `<tool_call>` … (the buffer holds the block so far, tags included).
    in_call: bool,
    /// Right after a call: whitespace is dropped until something else comes.
    after_call: bool,
}

impl ToolParser {
    /// A parser for calls of the tools named `names`.
    pub fn new(names: Vec<String>) -> ToolParser {
        ToolParser {
            names,
            at_start: true,
            ..ToolParser::default()
        }
    }

    /// Feeds `text`; finished pieces go to `out`.
    pub fn push(&mut self, text: &str, out: &mut Vec<Piece>) {
        self.buf.push_str(text);
        if self.at_start {
            match lone_call_start(&self.buf) {
                None => return,
                Some(bare) => self.bare = bare,
            }
            self.at_start = false;
        }
        if self.bare {
            return;
        }
        loop {
            if self.after_call {
                let n = self.buf.len() - self.buf.trim_start().len();
                self.buf.drain(..n);
                if self.buf.is_empty() {
                    return;
                }
                self.after_call = false;
            }
            if self.in_call {
                let Some(end) = self.buf.find(CALL_CLOSE) else {
                    return;
                };
                let block: String = self.buf.drain(..end + CALL_CLOSE.len()).collect();
                self.in_call = false;
                match parse_block(&block) {
                    Some(call) => {
                        out.push(Piece::Call(call));
                        // What follows a call, up to the next one, is usually a newline.
                        self.after_call = true;
                    }
                    None => out.push(Piece::Text(block)),
                }
            } else if let Some(start) = self.buf.find(CALL_OPEN) {
                if start > 0 {
                    let before: String = self.buf.drain(..start).collect();
                    out.push(Piece::Text(before));
                }
                self.in_call = true;
            } else {
                // Keep back a tail that may begin "<tool_call>".
                let keep = partial_suffix(&self.buf, CALL_OPEN);
                let emit = self.buf.len() - keep;
                if emit > 0 {
                    let t: String = self.buf.drain(..emit).collect();
                    out.push(Piece::Text(t));
                }
                return;
            }
        }
    }

    /// The end of the text: whatever is held back (an unfinished block is tried as a call
    /// whose closing tag is missing, else returned as text).
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        if self.bare {
            self.bare = false;
            let inner = self.buf.trim();
            let inner = inner
                .strip_prefix("```json")
                .or_else(|| inner.strip_prefix("```"))
                .and_then(|t| t.trim_end().strip_suffix("```"))
                .unwrap_or(inner);
            if let Some(call) =
                parse_json_call(inner.trim()).filter(|c| self.names.contains(&c.name))
            {
                self.buf.clear();
                out.push(Piece::Call(call));
                return;
            }
            // Not a lone call: parse it as ordinary output.
            let text = std::mem::take(&mut self.buf);
            self.push(&text, out);
        }
        let rest = std::mem::take(&mut self.buf);
        if rest.is_empty() {
            return;
        }
        if self.in_call {
            self.in_call = false;
            let mut closed = rest.clone();
            closed.push_str(CALL_CLOSE);
            if let Some(call) = parse_block(&closed) {
                out.push(Piece::Call(call));
                return;
            }
        }
        out.push(Piece::Text(rest));
    }
}

/// Whether the output so far starts like a lone call: `{`, or a Markdown fence (```` ``` ```` or
/// ```` ```json ````) whose next line starts with `{`. `None`: too early to say.
fn lone_call_start(buf: &str) -> Option<bool> {
    let t = buf.trim_start();
    let first = t.chars().next()?;
    if first == '{' {
        return Some(true);
    }
    if "```".starts_with(t) {
        return None; // "`" or "``" so far
    }
    let Some(rest) = t.strip_prefix("```") else {
        return Some(false);
    };
    let Some(nl) = rest.find('\n') else {
        // The fence's info string is still coming.
        return if "json".starts_with(rest) {
            None
        } else {
            Some(false)
        };
    };
    if !matches!(rest[..nl].trim(), "" | "json") {
        return Some(false);
    }
    rest[nl..].trim_start().chars().next().map(|c| c == '{')
}

/// The length of the longest suffix of `s` that is a proper prefix of `tag`.
fn partial_suffix(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && tag.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

/// `<tool_call>{"name": …, "arguments": …}</tool_call>` → the call (arguments as compact JSON;
/// a string holding JSON is accepted too, as some models write it).
fn parse_block(block: &str) -> Option<ToolCall> {
    let inner = block
        .strip_prefix(CALL_OPEN)?
        .strip_suffix(CALL_CLOSE)?
        .trim();
    parse_json_call(inner)
}

/// `{"name": …, "arguments": …}` → the call.
fn parse_json_call(inner: &str) -> Option<ToolCall> {
    let v: Value = serde_json::from_str(inner).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    let args = match v.get("arguments").or_else(|| v.get("parameters")) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(s)) => serde_json::from_str(s).ok()?,
        Some(a) => a.clone(),
    };
    if !args.is_object() {
        return None;
    }
    Some(ToolCall {
        name,
        arguments: args.to_string(),
    })
}

/// Splits a whole text into its content (the text outside calls, trimmed) and its calls of
/// the tools named `names`.
pub fn split(text: &str, names: Vec<String>) -> (String, Vec<ToolCall>) {
    let mut p = ToolParser::new(names);
    let mut pieces = Vec::new();
    p.push(text, &mut pieces);
    p.finish(&mut pieces);
    let mut content = String::new();
    let mut calls = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => content.push_str(&t),
            Piece::Call(c) => calls.push(c),
        }
    }
    (content.trim().to_string(), calls)
}

/// A message list as a template receives it: an assistant's `tool_calls` get their
/// `function.arguments` as objects (OpenAI sends JSON text; templates write `| tojson`).
pub fn template_message(mut m: Value) -> Value {
    if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
        for c in calls {
            if let Some(f) = c.get_mut("function").and_then(Value::as_object_mut) {
                if let Some(Value::String(s)) = f.get("arguments") {
                    if let Ok(obj @ Value::Object(_)) = serde_json::from_str::<Value>(s) {
                        f.insert("arguments".into(), obj);
                    }
                }
            }
        }
    }
    m
}

/// For a template without tool support: an assistant message's calls written into its
/// content in the call form, so the conversation still shows them.
pub fn calls_as_text(m: &Value) -> Option<String> {
    let calls = m.get("tool_calls")?.as_array()?;
    let mut s = m
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    for c in calls {
        let f = c.get("function")?;
        let name = f.get("name")?.as_str()?;
        let args = match f.get("arguments") {
            Some(Value::String(a)) => serde_json::from_str(a).unwrap_or(Value::String(a.clone())),
            Some(a) => a.clone(),
            None => json!({}),
        };
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(&format!(
            "{CALL_OPEN}\n{}\n{CALL_CLOSE}",
            json!({"name": name, "arguments": args})
        ));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["get_weather".into(), "f".into(), "g".into()]
    }

    #[test]
    fn a_lone_json_call_is_a_call() {
        let (c, calls) = split(
            " {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}",
            names(),
        );
        assert_eq!(c, "");
        assert_eq!(calls[0].arguments, "{\"city\":\"Oslo\"}");
        // Not a known tool, or not alone: plain content.
        let (c, calls) = split("{\"name\": \"other\", \"arguments\": {}}", names());
        assert!(calls.is_empty());
        assert_eq!(c, "{\"name\": \"other\", \"arguments\": {}}");
        let (c, calls) = split(
            "```json\n{\"name\": \"f\", \"arguments\": {}}\n```",
            names(),
        );
        assert_eq!((c.as_str(), calls.len()), ("", 1));
        // A code block that is not a call streams as it comes.
        let mut p = ToolParser::new(names());
        let mut out = Vec::new();
        p.push("```py", &mut out);
        p.push("thon\nprint(1)", &mut out);
        let text: String = out
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Call(_) => panic!("no call"),
            })
            .collect();
        assert_eq!(text, "```python\nprint(1)");
        let (_, calls) = split(
            "{\"a\": 1} <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
            names(),
        );
        assert_eq!(calls.len(), 1);
    }

    fn weather() -> Vec<Tool> {
        Tool::parse_list(&json!([{"type": "function", "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}]))
        .unwrap()
    }

    #[test]
    fn splits_calls_out_of_text() {
        let (c, calls) = split(
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            names(),
        );
        assert_eq!(c, "Let me check.");
        assert_eq!(
            calls,
            vec![ToolCall {
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into()
            }]
        );
        let (c, calls) = split("no calls <tool_call>{broken</tool_call> here", names());
        assert!(calls.is_empty());
        assert_eq!(c, "no calls <tool_call>{broken</tool_call> here");
    }

    #[test]
    fn streaming_holds_back_a_possible_tag() {
        let mut p = ToolParser::new(names());
        let mut out = Vec::new();
        for piece in [
            "Hi <",
            "tool",
            "_call>\n{\"name\": \"f\", ",
            "\"arguments\": {}}\n</tool_",
            "call>\n<tool_call>{\"name\":\"g\",\"arguments\":{\"x\":1}}</tool_call>",
        ] {
            p.push(piece, &mut out);
        }
        p.finish(&mut out);
        assert_eq!(
            out,
            vec![
                Piece::Text("Hi ".into()),
                Piece::Call(ToolCall {
                    name: "f".into(),
                    arguments: "{}".into()
                }),
                Piece::Call(ToolCall {
                    name: "g".into(),
                    arguments: "{\"x\":1}".into()
                }),
            ]
        );
        // A '<' that turns out not to start a tag comes out.
        let mut out = Vec::new();
        let mut p = ToolParser::new(names());
        p.push("a <", &mut out);
        assert_eq!(out, vec![Piece::Text("a ".into())]);
        p.push("b", &mut out);
        assert_eq!(out[1], Piece::Text("<b".into()));
    }

    #[test]
    fn tools_are_checked_by_field() {
        let e = Tool::parse_list(&json!([{"type": "function", "function": {"name": "a b"}}]))
            .unwrap_err();
        assert_eq!(e.field, "tools[0].function.name");
        let e = Tool::parse_list(&json!([{"type": "retrieval"}])).unwrap_err();
        assert_eq!(e.field, "tools[0].type");
        let t = weather();
        assert_eq!(
            parse_choice(Some(&json!("required")), &t),
            Ok(ToolChoice::Required)
        );
        assert!(parse_choice(
            Some(&json!({"type": "function", "function": {"name": "nope"}})),
            &t
        )
        .unwrap_err()
        .contains("nope"));
    }

    #[test]
    fn grammar_only_for_forced_choices() {
        let t = weather();
        assert!(grammar(&t, &ToolChoice::Auto).unwrap().is_none());
        let Some(Spec::Lark(g)) = grammar(&t, &ToolChoice::Named("get_weather".into())).unwrap()
        else {
            panic!("a lark grammar")
        };
        assert!(g.contains("%json") && g.contains("get_weather"), "{g}");
    }

    #[test]
    fn arguments_become_objects_for_templates() {
        let m = template_message(json!({"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}));
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], json!({"a": 1}));
        let t = calls_as_text(&m).unwrap();
        assert!(t.starts_with("<tool_call>\n{\"name\":\"f\""), "{t}");
    }
}
