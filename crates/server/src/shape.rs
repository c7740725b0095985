//! The request fields that shape the output, on both completion routes:
//!
//! - `response_format`: `{"type": "text"}` (nothing), `{"type": "json_object"}` (any JSON
//!   object; llama-server's `"schema"` inside it is honoured too), `{"type": "json_schema",
//!   "json_schema": {"name", "schema", "strict"}}` (OpenAI's);
//! - `json_schema`: a schema object (llama-server's field);
//! - `grammar`: a GBNF string (llama-server's field), or `{"type": "gbnf" | "lark" | "regex" |
//!   "json_schema", "value": ...}`.
//!
//! At most one of them per request. A schema or grammar that does not compile is a 400 naming
//! the field and, in llguidance's message, the keyword or rule; compiling runs on the blocking
//! pool, never on the async runtime.

use engine::{Constraint, Scheduler, Spec};
use serde::Deserialize;
use serde_json::Value;

use crate::ServerError;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShapeFields {
    pub response_format: Option<Value>,
    pub json_schema: Option<Value>,
    pub grammar: Option<Value>,
}

/// A spec with the request field it came from.
#[derive(Debug)]
pub struct Shape {
    pub spec: Spec,
    pub field: &'static str,
}

impl ShapeFields {
    /// The spec these fields ask for (`None`: free output).
    pub fn spec(&self) -> Result<Option<Shape>, ServerError> {
        let mut given = Vec::new();
        let rf = match &self.response_format {
            None | Some(Value::Null) => None,
            Some(v) => response_format(v)?,
        };
        if rf.is_some() {
            given.push("response_format");
        }
        let js = match &self.json_schema {
            None | Some(Value::Null) => None,
            Some(v) => Some(schema(v, "json_schema")?),
        };
        if js.is_some() {
            given.push("json_schema");
        }
        let gr = match &self.grammar {
            None | Some(Value::Null) => None,
            Some(v) => Some(grammar(v)?),
        };
        if gr.is_some() {
            given.push("grammar");
        }
        if given.len() > 1 {
            return Err(ServerError::bad(
                format!(
                    "give at most one of 'response_format', 'json_schema' and 'grammar' (got {})",
                    given.join(", ")
                ),
                given[1],
            ));
        }
        Ok(rf
            .map(|spec| Shape {
                spec,
                field: "response_format",
            })
            .or(js.map(|spec| Shape {
                spec,
                field: "json_schema",
            }))
            .or(gr.map(|spec| Shape {
                spec,
                field: "grammar",
            })))
    }
}

/// A JSON schema given in `field` (an object, a boolean, or the same as JSON text).
pub fn schema(v: &Value, field: &str) -> Result<Spec, ServerError> {
    match v {
        Value::Object(_) | Value::Bool(_) => Ok(Spec::JsonSchema(v.clone())),
        // Some clients send the schema as a JSON string.
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner @ (Value::Object(_) | Value::Bool(_))) => Ok(Spec::JsonSchema(inner)),
            _ => Err(ServerError::bad(
                format!("'{field}' must be a JSON schema object"),
                field,
            )),
        },
        _ => Err(ServerError::bad(
            format!("'{field}' must be a JSON schema object"),
            field,
        )),
    }
}

fn response_format(v: &Value) -> Result<Option<Spec>, ServerError> {
    const F: &str = "response_format";
    let Some(obj) = v.as_object() else {
        return Err(ServerError::bad(format!("'{F}' must be an object"), F));
    };
    let ty = obj.get("type").and_then(Value::as_str).ok_or_else(|| {
        ServerError::bad(
            format!("'{F}.type' must be \"text\", \"json_object\" or \"json_schema\""),
            "response_format.type",
        )
    })?;
    match ty {
        "text" => Ok(None),
        "json_object" => match obj.get("schema") {
            Some(s) if !s.is_null() => Ok(Some(schema(s, "response_format.schema")?)),
            _ => Ok(Some(Spec::JsonObject)),
        },
        "json_schema" => {
            let js = obj.get("json_schema").and_then(Value::as_object);
            // OpenAI's place is json_schema.schema; llama-server also takes "schema" beside it.
            let s = js
                .and_then(|js| js.get("schema"))
                .or_else(|| obj.get("schema"))
                .filter(|s| !s.is_null());
            match s {
                Some(s) => Ok(Some(schema(s, "response_format.json_schema.schema")?)),
                None => Err(ServerError::bad(
                    "'response_format.json_schema.schema' is missing",
                    "response_format.json_schema.schema",
                )),
            }
        }
        other => Err(ServerError::bad(
            format!(
                "'{F}.type' must be \"text\", \"json_object\" or \"json_schema\" (got \"{other}\")"
            ),
            "response_format.type",
        )),
    }
}

fn grammar(v: &Value) -> Result<Spec, ServerError> {
    const F: &str = "grammar";
    match v {
        Value::String(s) => Ok(Spec::Gbnf(s.clone())),
        Value::Object(obj) => {
            let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
            let value = obj.get("value").ok_or_else(|| {
                ServerError::bad(format!("'{F}.value' is missing"), "grammar.value")
            })?;
            let text = || {
                value.as_str().map(str::to_string).ok_or_else(|| {
                    ServerError::bad(format!("'{F}.value' must be a string"), "grammar.value")
                })
            };
            match ty {
                "gbnf" => Ok(Spec::Gbnf(text()?)),
                "lark" => Ok(Spec::Lark(text()?)),
                "regex" => Ok(Spec::Regex(text()?)),
                "json_schema" => schema(value, "grammar.value"),
                other => Err(ServerError::bad(
                    format!(
                        "'{F}.type' must be \"gbnf\", \"lark\", \"regex\" or \"json_schema\" (got \"{other}\")"
                    ),
                    "grammar.type",
                )),
            }
        }
        _ => Err(ServerError::bad(
            format!("'{F}' must be a GBNF string or an object {{\"type\", \"value\"}}"),
            F,
        )),
    }
}

/// Compiles `shape` for the loaded model on the blocking pool (a 400 naming the field when it
/// does not compile).
pub async fn compile(sched: &Scheduler, shape: Shape) -> Result<Constraint, ServerError> {
    let sched = sched.clone();
    let field = shape.field;
    let r = tokio::task::spawn_blocking(move || sched.compile(&shape.spec))
        .await
        .map_err(|e| ServerError::Internal(format!("compiling the {field}: {e}")))?;
    r.map_err(|e| match e {
        engine::EngineError::Grammar(g @ engine::GrammarError::Compile { .. })
        | engine::EngineError::Grammar(g @ engine::GrammarError::Gbnf { .. }) => {
            ServerError::bad(format!("'{field}': {g}"), field)
        }
        other => ServerError::Internal(other.to_string()),
    })
}

/// The constraint a request's fields ask for, compiled (`None`: free output).
pub async fn constraint(
    sched: &Scheduler,
    f: &ShapeFields,
) -> Result<Option<Constraint>, ServerError> {
    match f.spec()? {
        None => Ok(None),
        Some(shape) => Ok(Some(compile(sched, shape).await?)),
    }
}
