//! The JSON-schema test set (testdata/schemas): every schema compiles with llguidance and its
//! matcher accepts hand-written valid instances byte by byte and rejects invalid ones; every
//! schema in refused/ fails with the message listed in refused/expected.json; and the keywords
//! llguidance ignores without a word are pinned down, since the caller must refuse those itself.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use llguidance::api::TopLevelGrammar;
use serde_json::{json, Value};

/// (file, valid instances, invalid instances).
const CASES: &[(&str, &[&str], &[&str])] = &[
    (
        "types.json",
        &[
            r#"{"s":"hi","i":3,"n":1.5,"b":true,"z":null}"#,
            r#"{ "s" : "" , "i" : -7 , "n" : 2e3 , "b" : false , "z" : null }"#,
        ],
        &[
            r#"{"s":"hi","i":3.5,"n":1.5,"b":true,"z":null}"#,
            r#"{"s":"hi","i":3,"n":1.5,"b":"true","z":null}"#,
            r#"{"s":"hi","i":3,"n":1.5,"b":true}"#,
            r#"{"s":"much too long","i":3,"n":1.5,"b":true,"z":null}"#,
        ],
    ),
    (
        "type_array.json",
        &[r#"{"v":null}"#, r#"{"v":12}"#, r#"{"v":"abc"}"#],
        &[
            r#"{"v":true}"#,
            r#"{"v":1.5}"#,
            r#"{"v":"too long string"}"#,
        ],
    ),
    (
        "required_optional.json",
        &[
            r#"{"name":"Ann"}"#,
            r#"{"name":"Ann","nick":"A","age":30}"#,
            r#"{"name":"Ann","age":0}"#,
        ],
        &[r#"{"nick":"A"}"#, r#"{}"#, r#"{"name":"Ann","age":151}"#],
    ),
    (
        "additional_false.json",
        &[r#"{"x":1,"y":2}"#],
        &[r#"{"x":1,"y":2,"z":3}"#, r#"{"x":1}"#],
    ),
    (
        "additional_schema.json",
        &[r#"{"id":1}"#, r#"{"id":5,"a":0,"b":100}"#],
        &[
            r#"{"id":1,"a":"s"}"#,
            r#"{"id":1,"a":101}"#,
            r#"{"a":1}"#,
            r#"{"id":1,"a":1,"b":2,"c":3,"d":4}"#,
        ],
    ),
    (
        "items.json",
        &["[1]", "[0,9,5]"],
        &["[]", "[1,2,3,4]", "[10]", "[\"1\"]"],
    ),
    (
        "prefix_items.json",
        &[r#"["ab",3]"#, r#"["abcde",99,true]"#],
        &[
            r#"[3,"ab"]"#,
            r#"["ab",3,true,4]"#,
            r#"["ab"]"#,
            r#"["ab",100]"#,
        ],
    ),
    (
        "enum.json",
        &[
            r#"{"color":"red","size":2}"#,
            r#"{"color":"blue","size":null}"#,
        ],
        &[
            r#"{"color":"pink","size":2}"#,
            r#"{"color":"red","size":4}"#,
        ],
    ),
    (
        "const.json",
        &[r#"{"version":2,"kind":"point","x":-5}"#],
        &[
            r#"{"version":3,"kind":"point","x":0}"#,
            r#"{"version":2,"kind":"line","x":0}"#,
        ],
    ),
    (
        "any_of.json",
        &[
            r#"{"value":7}"#,
            r#"{"value":"hey"}"#,
            r#"{"value":[true,false]}"#,
        ],
        &[
            r#"{"value":11}"#,
            r#"{"value":"toolong"}"#,
            r#"{"value":null}"#,
            r#"{"value":[1]}"#,
        ],
    ),
    (
        "one_of.json",
        &[
            r#"{"kind":"circle","r":2.5}"#,
            r#"{"kind":"square","side":4}"#,
            r#""plain""#,
        ],
        &[
            r#"{"kind":"circle","side":4}"#,
            r#"{"kind":"triangle","r":1}"#,
            r#"7"#,
        ],
    ),
    (
        "ref_defs.json",
        &[r#"{"from":{"x":0,"y":1},"to":{"x":-3,"y":99}}"#],
        &[
            r#"{"from":{"x":0},"to":{"x":1,"y":1}}"#,
            r#"{"from":{"x":0,"y":1},"to":{"x":100,"y":1}}"#,
        ],
    ),
    (
        "ref_recursive.json",
        &[
            r#"{"v":1}"#,
            r#"{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4}]}]}"#,
        ],
        &[
            r#"{"v":1,"kids":[{"v":2},{"v":3},{"v":4}]}"#,
            r#"{"v":1,"kids":[{"w":2}]}"#,
        ],
    ),
    (
        "string_length.json",
        &[
            r#"{"code":"ab","note":""}"#,
            r#"{"code":"abcd","note":"x"}"#,
        ],
        &[r#"{"code":"a","note":""}"#, r#"{"code":"abcde","note":""}"#],
    ),
    (
        "pattern.json",
        &[r##"{"id":"ABC-12","hex":"#00ff7a"}"##],
        &[
            r##"{"id":"AB-12","hex":"#00ff7a"}"##,
            r##"{"id":"ABC-12","hex":"#00FF7A"}"##,
        ],
    ),
    (
        "format_dates.json",
        &[r#"{"day":"2024-02-29","at":"2024-05-01T12:30:00Z","clock":"23:59:59+02:00"}"#],
        &[
            r#"{"day":"2024-13-01","at":"2024-05-01T12:30:00Z","clock":"23:59:59Z"}"#,
            r#"{"day":"2024-01-01","at":"2024-05-01 12:30","clock":"23:59:59Z"}"#,
            r#"{"day":"2024-01-01","at":"2024-05-01T12:30:00Z","clock":"25:00:00Z"}"#,
        ],
    ),
    (
        "format_ids.json",
        &[r#"{"email":"a.b@example.com","id":"123e4567-e89b-12d3-a456-426614174000"}"#],
        &[
            r#"{"email":"not an email","id":"123e4567-e89b-12d3-a456-426614174000"}"#,
            r#"{"email":"a@b.c","id":"123e4567e89b12d3a456426614174000"}"#,
        ],
    ),
    (
        "format_net.json",
        &[r#"{"ip":"192.168.0.1","host":"example.com","url":"https://example.com/a?b=c"}"#],
        &[
            r#"{"ip":"256.1.1.1","host":"example.com","url":"https://example.com/"}"#,
            r#"{"ip":"1.1.1.1","host":"bad host","url":"https://example.com/"}"#,
            r#"{"ip":"1.1.1.1","host":"example.com","url":"no scheme"}"#,
        ],
    ),
    (
        "numeric_bounds.json",
        &[
            r#"{"age":0,"score":0.5,"temp":-40.5}"#,
            r#"{"age":120,"score":0.95,"temp":50}"#,
        ],
        &[
            r#"{"age":121,"score":0.5,"temp":0}"#,
            r#"{"age":-1,"score":0.5,"temp":0}"#,
            r#"{"age":1,"score":1,"temp":0}"#,
            r#"{"age":1,"score":0,"temp":0}"#,
            r#"{"age":1,"score":0.5,"temp":-41}"#,
            r#"{"age":1,"score":0.5,"temp":50.5}"#,
            // multipleOf: 0.05 for score, 0.5 for temp (they also bound the decimals).
            r#"{"age":1,"score":0.999,"temp":0}"#,
            r#"{"age":1,"score":0.5,"temp":10.25}"#,
        ],
    ),
    (
        "nested.json",
        &[
            r#"{"user":{"name":"Bo","tags":[]},"orders":[{"id":1,"qty":2}]}"#,
            r#"{"user":{"name":"Bo","tags":["a","b","c"]},"orders":[{"id":1,"qty":2},{"id":9999,"qty":9}]}"#,
        ],
        &[
            r#"{"user":{"name":"Bo","tags":[]},"orders":[]}"#,
            r#"{"user":{"name":"Bo","tags":["a","b","c","d"]},"orders":[{"id":1,"qty":2}]}"#,
            r#"{"user":{"name":"Bo"},"orders":[{"id":1,"qty":2}]}"#,
            r#"{"user":{"name":"Bo","tags":[]},"orders":[{"id":1,"qty":10}]}"#,
        ],
    ),
    (
        "array_bounds.json",
        &[
            r#"{"pair":["a","c"],"few":[]}"#,
            r#"{"pair":["b","b"],"few":[1.5,2]}"#,
        ],
        &[
            r#"{"pair":["a"],"few":[]}"#,
            r#"{"pair":["a","b","c"],"few":[]}"#,
            r#"{"pair":["a","d"],"few":[]}"#,
            r#"{"pair":["a","b"],"few":[1,2,3]}"#,
        ],
    ),
    (
        "top_level_enum.json",
        &[r#""yes""#, r#""maybe""#],
        &[r#""no way""#, "yes"],
    ),
    ("top_level_integer.json", &["1", "5"], &["0", "6", "2.5"]),
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/schemas")
}

fn json_files(dir: &PathBuf) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("schema folder")
        .map(|e| e.expect("dir entry"))
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    files
}

fn load(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).expect("read schema");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_schema_compiles_and_constrains() {
    let files = json_files(&dir());
    assert!(files.len() >= 15, "{files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let schema = load(dir().join(file));
        let grammar = TopLevelGrammar::from_json_schema(schema);
        if let Err(e) = common::matcher(grammar.clone()) {
            failures.push(format!("{file}: llguidance refused it: {e}"));
            continue;
        }
        let Some((_, good, bad)) = CASES.iter().find(|(f, _, _)| f == file) else {
            failures.push(format!("{file}: no instances in CASES"));
            continue;
        };
        assert!(
            !good.is_empty() && !bad.is_empty(),
            "{file}: needs instances both ways"
        );
        for s in *good {
            if let Err(e) = common::accepts(&grammar, s.as_bytes()) {
                failures.push(format!("{file}: should accept {s}: {e}"));
            }
        }
        for s in *bad {
            if common::accepts(&grammar, s.as_bytes()).is_ok() {
                failures.push(format!("{file}: should reject {s}"));
            }
        }
    }
    for (f, _, _) in CASES {
        assert!(
            files.iter().any(|x| x == f),
            "CASES names a missing file {f}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_refused_schema_fails_naming_the_reason() {
    let refused = dir().join("refused");
    let expected: BTreeMap<String, String> =
        serde_json::from_value(load(refused.join("expected.json"))).expect("file -> substring");
    let files: Vec<String> = json_files(&refused)
        .into_iter()
        .filter(|f| f != "expected.json")
        .collect();
    assert_eq!(
        files,
        expected.keys().cloned().collect::<Vec<_>>(),
        "refused/ and refused/expected.json must list the same files"
    );
    let mut failures = Vec::new();
    for (file, what) in &expected {
        let grammar = TopLevelGrammar::from_json_schema(load(refused.join(file)));
        match common::matcher(grammar) {
            Ok(_) => failures.push(format!("{file}: compiled, expected an error with {what:?}")),
            Err(e) if !e.contains(what.as_str()) => {
                failures.push(format!("{file}: error {e:?} lacks {what:?}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// llguidance compiles these and ignores the keyword without a warning or error: a caller that
/// must refuse unknown keywords has to check for them before llguidance sees the schema.
#[test]
fn keywords_llguidance_ignores_silently() {
    let cases = [
        // Not a JSON-schema keyword at all (in any draft): ignored.
        (
            json!({"type": "string", "x-max": 3, "maxLenght": 2}),
            r#""long string""#,
        ),
        // OpenAPI's keywords, unknown to JSON schema.
        (
            json!({"type": "object", "properties": {"a": {"type": "integer", "nullable": true}}, "discriminator": {"propertyName": "a"}}),
            r#"{"a":1}"#,
        ),
        // Annotations: no effect on validation by design.
        (
            json!({"type": "string", "title": "t", "description": "d", "default": "x", "examples": ["y"], "readOnly": true, "deprecated": true, "contentMediaType": "application/json", "contentEncoding": "base64"}),
            r#""not base64!""#,
        ),
        // With draft-07's $schema, keywords of later drafts are unknown, so ignored.
        (
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}}),
            r#"["a"]"#,
        ),
        (
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "dependentRequired": {"a": ["b"]}}),
            r#"{"a":1}"#,
        ),
        // An unknown $schema URL: no error, the default draft (2020-12) is used.
        (
            json!({"$schema": "http://json-schema.org/draft-03/schema#", "type": "integer", "divisibleBy": 2}),
            "3",
        ),
        // The format "unknown" matches any string.
        (
            json!({"type": "string", "format": "unknown"}),
            r#""anything""#,
        ),
    ];
    for (schema, instance) in cases {
        let grammar = TopLevelGrammar::from_json_schema(schema.clone());
        let mut m = common::matcher(grammar).unwrap_or_else(|e| panic!("{schema}: {e}"));
        common::run(&mut m, instance.as_bytes()).unwrap_or_else(|e| {
            panic!("{schema} should ignore its keyword and accept {instance}: {e}")
        });
    }
}

/// Properties come out in the schema's order: an instance with the same keys in another order is
/// rejected by the matcher (it is still valid JSON-schema-wise).
#[test]
fn properties_in_schema_order_only() {
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]});
    let g = TopLevelGrammar::from_json_schema(schema);
    common::accepts(&g, br#"{"a":1,"b":2}"#).unwrap();
    assert!(common::accepts(&g, br#"{"b":2,"a":1}"#).is_err());
}
