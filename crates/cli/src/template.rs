//! `--chat-template`, `--chat-template-file` and `--chat-template-kwargs` (as llama-server's),
//! shared by `lume run --chat`, `lume chat` and `lume serve`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::ChatTemplate;
use serde_json::{Map, Value};

#[derive(Args, Clone, Debug, Default)]
pub struct TemplateArgs {
    /// Render chats with this Jinja template instead of the model's own.
    #[arg(
        long = "chat-template",
        value_name = "TEXT",
        conflicts_with = "chat_template_file"
    )]
    pub chat_template: Option<String>,
    /// Render chats with the Jinja template in FILE instead of the model's own.
    #[arg(long = "chat-template-file", value_name = "FILE")]
    pub chat_template_file: Option<PathBuf>,
    /// Extra template variables, a JSON object, e.g. '{"enable_thinking": false}'.
    #[arg(long = "chat-template-kwargs", value_name = "JSON")]
    pub chat_template_kwargs: Option<String>,
}

impl TemplateArgs {
    /// Any of the flags given.
    pub fn any(&self) -> bool {
        self.chat_template.is_some()
            || self.chat_template_file.is_some()
            || self.chat_template_kwargs.is_some()
    }

    /// The template source given by `--chat-template` or `--chat-template-file`, if any.
    pub fn source(&self) -> Result<Option<String>> {
        if let Some(t) = &self.chat_template {
            return Ok(Some(t.clone()));
        }
        match &self.chat_template_file {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("--chat-template-file: reading {}", f.display()))
                .map(Some),
            None => Ok(None),
        }
    }

    /// `--chat-template-kwargs` as an object (empty when not given).
    pub fn kwargs(&self) -> Result<Map<String, Value>> {
        let Some(text) = &self.chat_template_kwargs else {
            return Ok(Map::new());
        };
        let v: Value = serde_json::from_str(text)
            .with_context(|| format!("--chat-template-kwargs: not valid JSON: {text}"))?;
        let Value::Object(map) = v else {
            bail!("--chat-template-kwargs: must be a JSON object like '{{\"enable_thinking\": false}}', not {v}");
        };
        if let Some(k) = map
            .keys()
            .find(|k| engine::chat::RESERVED_VARIABLES.contains(&k.as_str()))
        {
            bail!("--chat-template-kwargs: '{k}' cannot be set (lume passes it itself)");
        }
        Ok(map)
    }

    /// The template to chat with: the override (checked for syntax errors) with the model's
    /// special tokens, or the model's own; with the kwargs.
    pub fn template(&self, f: &gguf::GgufFile) -> Result<ChatTemplate> {
        let kwargs = self.kwargs()?;
        let tmpl = match self.source()? {
            Some(src) => {
                let t = ChatTemplate::with_tokens_of(src, f);
                t.check().with_context(|| self.flag().to_string())?;
                t
            }
            None => ChatTemplate::from_gguf(f)?,
        };
        Ok(tmpl.with_kwargs(kwargs))
    }

    /// The flag the template came from, for errors.
    fn flag(&self) -> &'static str {
        if self.chat_template.is_some() {
            "--chat-template"
        } else {
            "--chat-template-file"
        }
    }

    /// Checks the flags without a model (for `lume serve`, which loads it later): the source,
    /// its syntax and the kwargs.
    pub fn resolve(&self) -> Result<(Option<String>, Map<String, Value>)> {
        let kwargs = self.kwargs()?;
        let src = self.source()?;
        if let Some(s) = &src {
            ChatTemplate::new(s.as_str(), "", "")
                .check()
                .with_context(|| self.flag().to_string())?;
        }
        Ok((src, kwargs))
    }
}
