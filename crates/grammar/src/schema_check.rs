//! What llguidance would silently ignore in a JSON schema, refused by name instead: a key that
//! is not a JSON-schema keyword (`maxLenght`, OpenAPI's `nullable`, `x-...`), a keyword that
//! the schema's own `$schema` draft does not have (draft-07 with `prefixItems`), and a
//! `$schema` URL of a draft lume does not know. (Keywords of the draft that llguidance does not
//! implement, `not`, `if`, `uniqueItems`, ..., it refuses itself, by name.)

use serde_json::Value;

use crate::GrammarError;

/// Keywords llguidance implements, annotations it knows, and keywords of the draft it refuses
/// by name itself.
const KNOWN: &[&str] = &[
    // implemented
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "const",
    "enum",
    "type",
    "items",
    "additionalItems",
    "prefixItems",
    "minItems",
    "maxItems",
    "properties",
    "additionalProperties",
    "patternProperties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    // meta-data and annotations
    "$anchor",
    "$defs",
    "definitions",
    "$schema",
    "$id",
    "id",
    "$comment",
    "title",
    "description",
    "default",
    "readOnly",
    "writeOnly",
    "examples",
    "contentMediaType",
    "contentEncoding",
    "deprecated",
    "contentSchema",
    // of the draft, refused by llguidance by name
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "contains",
    "minContains",
    "maxContains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "uniqueItems",
    "$dynamicRef",
    "$dynamicAnchor",
    "$vocabulary",
    "$recursiveRef",
    "$recursiveAnchor",
];

/// Keywords that drafts 04 to 07 do not have (llguidance ignores them under such a `$schema`).
const AFTER_DRAFT7: &[&str] = &[
    "prefixItems",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
    "unevaluatedItems",
    "minContains",
    "maxContains",
    "$anchor",
    "$defs",
];

/// Keys whose value is one subschema, a map of subschemas, or a list of subschemas.
const ONE: &[&str] = &[
    "additionalProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contentSchema",
];
const MAP: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];
const LIST: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];

fn err(path: &str, msg: String) -> GrammarError {
    let at = if path.is_empty() { "/" } else { path };
    GrammarError::Compile {
        kind: "json_schema",
        msg: format!("{msg} (at {at})"),
    }
}

/// Checks `schema` (see the module docs); the error names the keyword and where it is.
pub fn check_schema(schema: &Value) -> Result<(), GrammarError> {
    let old_draft = match schema.get("$schema") {
        None => false,
        Some(Value::String(url)) => {
            let u = url.trim_end_matches('#').trim_end_matches('/');
            if u.ends_with("draft/2020-12/schema") || u.ends_with("draft/2019-09/schema") {
                false
            } else if ["draft-04/schema", "draft-06/schema", "draft-07/schema"]
                .iter()
                .any(|d| u.ends_with(d))
            {
                true
            } else {
                return Err(err(
                    "/$schema",
                    format!("unsupported '$schema' {url:?} (drafts 04 to 2020-12 are)"),
                ));
            }
        }
        Some(_) => return Err(err("/$schema", "'$schema' must be a string".into())),
    };
    walk(schema, "", old_draft, true)
}

fn walk(v: &Value, path: &str, old_draft: bool, root: bool) -> Result<(), GrammarError> {
    let Value::Object(map) = v else {
        return Ok(()); // true / false, or a value the compiler itself will refuse
    };
    for (k, sub) in map {
        let here = format!("{path}/{k}");
        if root && k == "x-guidance" {
            continue;
        }
        if !KNOWN.contains(&k.as_str()) {
            return Err(err(
                path,
                format!(
                    "unsupported JSON schema keyword '{k}' (it would be ignored, so it is refused)"
                ),
            ));
        }
        if old_draft && AFTER_DRAFT7.contains(&k.as_str()) {
            return Err(err(
                path,
                format!(
                    "'{k}' is not a keyword of the schema's '$schema' draft (use draft 2020-12)"
                ),
            ));
        }
        if ONE.contains(&k.as_str()) {
            walk(sub, &here, old_draft, false)?;
        } else if MAP.contains(&k.as_str()) {
            if let Value::Object(m) = sub {
                for (name, s) in m {
                    walk(s, &format!("{here}/{name}"), old_draft, false)?;
                }
            }
        } else if LIST.contains(&k.as_str()) {
            if let Value::Array(items) = sub {
                for (i, s) in items.iter().enumerate() {
                    walk(s, &format!("{here}/{i}"), old_draft, false)?;
                }
            }
        } else if k == "items" {
            match sub {
                Value::Array(items) => {
                    for (i, s) in items.iter().enumerate() {
                        walk(s, &format!("{here}/{i}"), old_draft, false)?;
                    }
                }
                s => walk(s, &here, old_draft, false)?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(s: Value) -> String {
        check_schema(&s).unwrap_err().to_string()
    }

    #[test]
    fn silently_ignored_keys_are_refused_by_name() {
        let m =
            msg(json!({"type": "object", "properties": {"a": {"type": "string", "maxLenght": 3}}}));
        assert!(
            m.contains("'maxLenght'") && m.contains("/properties/a"),
            "{m}"
        );
        let m = msg(json!({"type": "integer", "nullable": true}));
        assert!(m.contains("'nullable'"), "{m}");
        let m = msg(json!({"anyOf": [{"type": "string"}, {"type": "null", "x-foo": 1}]}));
        assert!(m.contains("'x-foo'") && m.contains("/anyOf/1"), "{m}");
        let m =
            msg(json!({"$schema": "http://json-schema.org/draft-07/schema#", "prefixItems": []}));
        assert!(m.contains("'prefixItems'") && m.contains("draft"), "{m}");
        let m = msg(json!({"$schema": "http://json-schema.org/draft-03/schema#"}));
        assert!(m.contains("$schema"), "{m}");
        let m = msg(
            json!({"$defs": {"p": {"type": "object", "discriminator": {}}}, "$ref": "#/$defs/p"}),
        );
        assert!(
            m.contains("'discriminator'") && m.contains("/$defs/p"),
            "{m}"
        );
    }

    #[test]
    fn ordinary_schemas_pass() {
        for s in [
            json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                   "properties": {"a": {"type": "array", "items": {"enum": [1, 2]}, "maxItems": 2}},
                   "required": ["a"], "additionalProperties": false, "title": "t"}),
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"x": {"type": "string"}},
                   "properties": {"x": {"$ref": "#/definitions/x", "default": "y"}}}),
            json!(true),
            json!({"type": "string", "x-guidance": {"lenient": false}}),
            json!({"const": {"nullable": 1}, "examples": [{"maxLenght": 2}]}),
        ] {
            check_schema(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }
}
