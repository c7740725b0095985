//! What minijinja lacks to render chat templates as Python's jinja2 does inside Hugging Face
//! transformers (`ImmutableSandboxedEnvironment` with its own `tojson`, `raise_exception`,
//! `strftime_now` and the `{% generation %}` tag): Python's `str()` of values when printed,
//! `json.dumps` for `tojson`, the tests (`is iterable`, `is sequence`, `is number`, …) as
//! Python answers them for none and undefined, lazy filters (`map`, `select`, …) that return
//! generators, and two rewrites of the template source (the `generation` tag; `for` loops over
//! none fail as in Python).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use minijinja::value::{from_args, Enumerator, Kwargs, Object, ObjectRepr, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, Value};

/// The filter the rewritten `for` loops pass their iterable through.
const ITER_FILTER: &str = "__lume_pyiter";
/// The function rewritten `a + b` calls (Python's `+`, with markupsafe's `Markup`).
const ADD_FUNCTION: &str = "__lume_add";

/// Installs the formatter, filters and tests on `env`.
pub fn install(env: &mut Environment<'_>) {
    env.set_formatter(|out, _state, value| {
        let s = if let Some(s) = value.as_str() {
            s.to_string()
        } else {
            py_str(value)?
        };
        out.write_str(&s).map_err(Error::from)
    });
    env.add_filter("tojson", tojson);
    env.add_filter("string", |v: Value| py_str(&v));
    env.add_filter("join", join);
    env.add_filter(ITER_FILTER, py_iter);
    env.add_function(ADD_FUNCTION, py_add);
    use minijinja::filters as f;
    let gen = |v: Vec<Value>| Value::from_object(Generator(v));
    env.add_filter("map", move |st: &State, v: Value, a: Rest<Value>| {
        f::map(st, v, a).map(gen)
    });
    env.add_filter(
        "select",
        move |st: &State, v: Value, t: Option<Cow<'_, str>>, a: Rest<Value>| {
            f::select(st, v, t, a).map(gen)
        },
    );
    env.add_filter(
        "reject",
        move |st: &State, v: Value, t: Option<Cow<'_, str>>, a: Rest<Value>| {
            f::reject(st, v, t, a).map(gen)
        },
    );
    env.add_filter(
        "selectattr",
        move |st: &State, v: Value, at: Cow<'_, str>, t: Option<Cow<'_, str>>, a: Rest<Value>| {
            f::selectattr(st, v, at, t, a).map(gen)
        },
    );
    env.add_filter(
        "rejectattr",
        move |st: &State, v: Value, at: Cow<'_, str>, t: Option<Cow<'_, str>>, a: Rest<Value>| {
            f::rejectattr(st, v, at, t, a).map(gen)
        },
    );
    let length = |v: Value| -> Result<Value, Error> {
        if v.is_undefined() {
            return Ok(Value::from(0));
        }
        match v.len() {
            Some(n) if !is_generator(&v) => Ok(Value::from(n)),
            _ => Err(type_error(format!(
                "object of type '{}' has no len()",
                py_type(&v)
            ))),
        }
    };
    env.add_filter("length", length);
    env.add_filter("count", length);
    env.add_filter("unique", move |st: &State, v: Value, kw: Kwargs| {
        let list: Vec<Value> = f::unique(st, v, kw)?.try_iter()?.collect();
        Ok::<Value, Error>(gen(list))
    });
    env.add_test("iterable", |v: &Value| {
        !matches!(v.kind(), ValueKind::None | ValueKind::Plain)
            && !is_number_like(v)
            && (v.is_undefined() || v.try_iter().is_ok())
    });
    env.add_test("sequence", |v: &Value| {
        v.is_undefined()
            || matches!(
                v.kind(),
                ValueKind::String | ValueKind::Seq | ValueKind::Map
            )
            || (v.kind() == ValueKind::Iterable && !is_generator(v))
    });
    env.add_test("mapping", |v: &Value| v.kind() == ValueKind::Map);
    env.add_test("number", is_number_like);
    env.add_test("integer", |v: &Value| v.is_integer());
    env.add_test("float", |v: &Value| {
        v.kind() == ValueKind::Number && !v.is_integer()
    });
    env.add_test("boolean", |v: &Value| v.kind() == ValueKind::Bool);
    env.add_test("callable", |v: &Value| {
        v.is_undefined() || (v.kind() == ValueKind::Plain)
    });
}

fn is_number_like(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Number | ValueKind::Bool)
}

/// What Python's lazy filters return: iterable (again, unlike Python's, which is harmless),
/// always true, without a length, not JSON.
#[derive(Debug)]
struct Generator(Vec<Value>);

impl Object for Generator {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.clone())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        None
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }
}

fn is_generator(v: &Value) -> bool {
    v.downcast_object_ref::<Generator>().is_some()
}

fn type_error(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Python's type name of a value, for error messages.
fn py_type(v: &Value) -> &'static str {
    match v.kind() {
        ValueKind::Undefined => "Undefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if v.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq => "list",
        ValueKind::Map => "dict",
        ValueKind::Iterable if is_generator(v) => "generator",
        ValueKind::Iterable => "list",
        _ => "object",
    }
}

/// `for x in value`: Python refuses none and numbers (minijinja iterates none as empty).
fn py_iter(v: Value) -> Result<Value, Error> {
    match v.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Plain => Err(
            type_error(format!("'{}' object is not iterable", py_type(&v))),
        ),
        _ => Ok(v),
    }
}

/// markupsafe's `escape` (what `Markup + str` applies to the str).
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn is_list(v: &Value) -> bool {
    v.kind() == ValueKind::Seq || (v.kind() == ValueKind::Iterable && !is_generator(v))
}

/// Python's `a + b` on template values: numbers add (bools count as ints), lists and strings
/// concatenate, and a `Markup` string (`|safe`) escapes the plain string it is added to, as
/// markupsafe does; anything else is a TypeError.
fn py_add(a: Value, b: Value) -> Result<Value, Error> {
    use ValueKind::{Bool, Number, String as Str};
    if a.is_undefined() || b.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "an undefined value in '+'",
        ));
    }
    match (a.kind(), b.kind()) {
        (Str, Str) => {
            let (x, y) = (a.as_str().unwrap_or(""), b.as_str().unwrap_or(""));
            Ok(match (a.is_safe(), b.is_safe()) {
                (false, false) => Value::from([x, y].concat()),
                (true, true) => Value::from_safe_string([x, y].concat()),
                (true, false) => Value::from_safe_string([x, &html_escape(y)].concat()),
                (false, true) => Value::from_safe_string([&html_escape(x), y].concat()),
            })
        }
        (Number | Bool, Number | Bool) => {
            let int = |v: &Value| -> Option<i128> {
                if v.kind() == Bool {
                    Some(i128::from(v.is_true()))
                } else if v.is_integer() {
                    i128::try_from(v.clone()).ok()
                } else {
                    None
                }
            };
            match (int(&a), int(&b)) {
                (Some(x), Some(y)) => match x.checked_add(y) {
                    Some(z) => Ok(i64::try_from(z).map_or(Value::from(z), Value::from)),
                    None => Err(type_error("integer overflow in '+'")),
                },
                _ => {
                    let f = |v: &Value| match int(v) {
                        Some(i) => Ok(i as f64),
                        None => f64::try_from(v.clone()),
                    };
                    Ok(Value::from(f(&a)? + f(&b)?))
                }
            }
        }
        _ if is_list(&a) && is_list(&b) => Ok(Value::from(
            a.try_iter()?.chain(b.try_iter()?).collect::<Vec<Value>>(),
        )),
        (Str, _) => Err(type_error(format!(
            "can only concatenate str (not \"{}\") to str",
            py_type(&b)
        ))),
        _ if is_list(&a) => Err(type_error(format!(
            "can only concatenate list (not \"{}\") to list",
            py_type(&b)
        ))),
        _ => Err(type_error(format!(
            "unsupported operand type(s) for +: '{}' and '{}'",
            py_type(&a),
            py_type(&b)
        ))),
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in scientific notation below
/// 1e-4 and from 1e16 on.
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{f:e}"); // e.g. "-1.2345e17", "5e-1"
    let (mant, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            s.push_str("0.");
            s.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            s.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                s.push_str(&digits);
                s.extend(std::iter::repeat_n('0', int_len - digits.len()));
                s.push_str(".0");
            } else {
                s.push_str(&digits[..int_len]);
                s.push('.');
                s.push_str(&digits[int_len..]);
            }
        }
    } else {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let _ = write!(s, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    s
}

fn number_text(v: &Value) -> String {
    if v.is_integer() {
        v.to_string()
    } else {
        match f64::try_from(v.clone()) {
            Ok(f) => py_float(f),
            Err(_) => v.to_string(),
        }
    }
}

/// Python's `repr(str)`.
fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str(value)` (what `{{ value }}` prints): `None`, `True`, `[1, 'a']`, `{'k': 2.0}`.
pub fn py_str(v: &Value) -> Result<String, Error> {
    Ok(match v.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        _ => py_repr(v)?,
    })
}

fn py_repr(v: &Value) -> Result<String, Error> {
    Ok(match v.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => (if v.is_true() { "True" } else { "False" }).into(),
        ValueKind::Number => number_text(v),
        ValueKind::String => py_repr_str(v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable if !is_generator(v) => {
            let items: Result<Vec<String>, Error> = v.try_iter()?.map(|x| py_repr(&x)).collect();
            format!("[{}]", items?.join(", "))
        }
        ValueKind::Map => {
            let mut parts = Vec::new();
            for k in v.try_iter()? {
                let val = v.get_item(&k)?;
                parts.push(format!("{}: {}", py_repr(&k)?, py_repr(&val)?));
            }
            format!("{{{}}}", parts.join(", "))
        }
        _ => v.to_string(),
    })
}

/// Jinja's `join(d='', attribute=None)` with Python's `str()` of the items.
fn join(v: Value, args: Rest<Value>) -> Result<String, Error> {
    let (args, kwargs): (&[Value], Kwargs) = from_args(&args)?;
    let sep = match args.first() {
        Some(s) => py_str(s)?,
        None => kwargs.get::<Option<String>>("d")?.unwrap_or_default(),
    };
    let attr: Option<Value> = match args.get(1) {
        Some(a) => Some(a.clone()),
        None => kwargs.get("attribute")?,
    };
    kwargs.assert_all_used()?;
    if v.is_undefined() || v.is_none() {
        return Ok(String::new());
    }
    let mut parts = Vec::new();
    for item in v.try_iter()? {
        let item = match &attr {
            Some(a) => match a.as_str() {
                Some(path) => get_path(&item, path)?,
                None => item.get_item(a)?,
            },
            None => item,
        };
        parts.push(py_str(&item)?);
    }
    Ok(parts.join(&sep))
}

/// `a.b.0` as Jinja's attribute paths look it up.
fn get_path(v: &Value, path: &str) -> Result<Value, Error> {
    let mut cur = v.clone();
    for part in path.split('.') {
        cur = match part.parse::<i64>() {
            Ok(i) => cur.get_item(&Value::from(i))?,
            Err(_) => cur.get_attr(part)?,
        };
    }
    Ok(cur)
}

/// Options of `json.dumps` as transformers' `tojson` passes them.
struct JsonOpts {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, which is `json.dumps` with those arguments.
fn tojson(v: Value, args: Rest<Value>) -> Result<Value, Error> {
    let (args, kwargs): (&[Value], Kwargs) = from_args(&args)?;
    let arg = |i: usize, name: &str| -> Result<Option<Value>, Error> {
        Ok(match args.get(i) {
            Some(a) => Some(a.clone()),
            None => kwargs.get::<Option<Value>>(name)?,
        })
    };
    if args.len() > 4 {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    let ensure_ascii = arg(0, "ensure_ascii")?.is_some_and(|v| v.is_true());
    let indent = match arg(1, "indent")? {
        None => None,
        Some(i) if i.is_none() => None,
        Some(i) if i.is_integer() => {
            let n = i.as_i64().unwrap_or(0).max(0) as usize;
            Some(" ".repeat(n))
        }
        Some(i) if i.kind() == ValueKind::String => Some(i.as_str().unwrap_or("").to_string()),
        Some(i) => return Err(type_error(format!("tojson: bad indent {i}"))),
    };
    let (item_sep, key_sep) = match arg(2, "separators")? {
        Some(s) if !s.is_none() => {
            let parts: Vec<Value> = s.try_iter()?.collect();
            match (
                parts.first().and_then(|p| p.as_str()),
                parts.get(1).and_then(|p| p.as_str()),
            ) {
                (Some(a), Some(b)) if parts.len() == 2 => (a.to_string(), b.to_string()),
                _ => return Err(type_error("tojson: separators must be two strings")),
            }
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let sort_keys = arg(3, "sort_keys")?.is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;
    let opts = JsonOpts {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    write_json(&mut out, &v, &opts, 0)?;
    // Not marked safe: chat templates render without auto-escaping, so this prints as is.
    Ok(Value::from(out))
}

fn json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        py_float(f)
    }
}

/// A map key as `json.dumps` turns it into a string.
fn json_key(k: &Value) -> Result<String, Error> {
    Ok(match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_string(),
        ValueKind::None => "null".into(),
        ValueKind::Bool => (if k.is_true() { "true" } else { "false" }).into(),
        ValueKind::Number if k.is_integer() => k.to_string(),
        ValueKind::Number => json_float(f64::try_from(k.clone())?),
        _ => {
            return Err(type_error(format!(
                "keys must be str, int, float, bool or None, not {}",
                py_type(k)
            )))
        }
    })
}

fn newline_indent(out: &mut String, opts: &JsonOpts, depth: usize) {
    if let Some(ind) = &opts.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
}

fn write_json(out: &mut String, v: &Value, opts: &JsonOpts, depth: usize) -> Result<(), Error> {
    if depth > 500 {
        return Err(type_error("tojson: value nested too deeply"));
    }
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
        ValueKind::Number => out.push_str(&json_float(f64::try_from(v.clone())?)),
        ValueKind::String => json_str(out, v.as_str().unwrap_or_default(), opts.ensure_ascii),
        // `list + list` is a lazy iterable in minijinja, a list in Python.
        ValueKind::Seq | ValueKind::Iterable if !is_generator(v) => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline_indent(out, opts, depth + 1);
                write_json(out, item, opts, depth + 1)?;
            }
            newline_indent(out, opts, depth);
            out.push(']');
        }
        ValueKind::Map if v.as_object().is_none_or(|o| o.repr() == ObjectRepr::Map) => {
            let mut entries = Vec::new();
            for k in v.try_iter()? {
                let val = v.get_item(&k)?;
                entries.push((json_key(&k)?, val));
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline_indent(out, opts, depth + 1);
                json_str(out, k, opts.ensure_ascii);
                out.push_str(&opts.key_sep);
                write_json(out, val, opts, depth + 1)?;
            }
            newline_indent(out, opts, depth);
            out.push('}');
        }
        _ => {
            return Err(type_error(format!(
                "Object of type {} is not JSON serializable",
                py_type(v)
            )))
        }
    }
    Ok(())
}

/// The template source as minijinja can run it like jinja2:
/// - `{% generation %}`…`{% endgeneration %}` (transformers' tag marking the assistant's
///   tokens; it renders its body unchanged, in a scope of its own) become `{% with %}` …
///   `{% endwith %}` with the same whitespace control;
/// - `{% for x in EXPR … %}` iterates `(EXPR)|__lume_pyiter`, so that a loop over none fails
///   as in Python instead of running zero times.
///
/// Comments, `{{ … }}` and `{% raw %}` blocks are left alone.
pub fn rewrite_source(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 64);
    let mut rest = src;
    let mut raw = false;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        let (open, close) = if after.starts_with("{#") {
            ("{#", "#}")
        } else if after.starts_with("{%") {
            ("{%", "%}")
        } else if after.starts_with("{{") {
            ("{{", "}}")
        } else {
            out.push_str(&rest[..start + 1]);
            rest = &rest[start + 1..];
            continue;
        };
        out.push_str(&rest[..start]);
        let body_start = start + open.len();
        let Some(len) = tag_len(&rest[body_start..], close, open != "{#") else {
            // Unterminated: leave it for minijinja to report.
            out.push_str(&rest[start..]);
            return out;
        };
        let body = &rest[body_start..body_start + len];
        let whole = &rest[start..body_start + len + close.len()];
        rest = &rest[body_start + len + close.len()..];
        if open == "{#" || raw {
            if open == "{%" && split_ws_control(body).1.split_whitespace().eq(["endraw"]) {
                raw = false;
            }
            out.push_str(whole);
            continue;
        }
        let (lead, inner, trail) = split_ws_control(body);
        if open == "{{" {
            let _ = write!(out, "{{{{{lead}{}{trail}}}}}", rewrite_expr(inner));
            continue;
        }
        let words: Vec<&str> = inner.split_whitespace().collect();
        match words.first().copied() {
            Some("raw") if words.len() == 1 => {
                raw = true;
                out.push_str(whole);
            }
            Some("generation") if words.len() == 1 => {
                let _ = write!(out, "{{%{lead} with {trail}%}}");
            }
            Some("endgeneration") if words.len() == 1 => {
                let _ = write!(out, "{{%{lead} endwith {trail}%}}");
            }
            Some("for") => out.push_str(&rewrite_for(whole, lead, inner, trail)),
            Some(kw @ ("if" | "elif")) => {
                let expr = &inner[inner.find(kw).unwrap_or(0) + kw.len()..];
                let _ = write!(
                    out,
                    "{{%{lead}{}{kw}{}{trail}%}}",
                    &inner[..inner.find(kw).unwrap_or(0)],
                    rewrite_expr(expr)
                );
            }
            Some("set") => match top_level_assign(inner) {
                Some(eq) => {
                    let _ = write!(
                        out,
                        "{{%{lead}{}={}{trail}%}}",
                        &inner[..eq],
                        rewrite_expr(&inner[eq + 1..])
                    );
                }
                None => out.push_str(whole),
            },
            _ => out.push_str(whole),
        }
    }
    out.push_str(rest);
    out
}

/// A token of a Jinja expression, with the whitespace before it.
#[derive(Clone, Copy, Debug)]
struct Tok<'a> {
    ws: &'a str,
    text: &'a str,
}

impl Tok<'_> {
    fn is(&self, t: &str) -> bool {
        self.text == t
    }

    fn is_name(&self) -> bool {
        self.text
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
    }

    /// Ends an operand (so that a `+` or `-` after it is binary).
    fn ends_operand(&self) -> bool {
        let c = self.text.as_bytes()[0];
        (self.is_name() && !matches!(self.text, "is" | "not"))
            || c.is_ascii_digit()
            || c == b'\''
            || c == b'"'
    }
}

/// The tokens of `s`, or `None` when it does not lex (left alone then).
fn tokenize(s: &str) -> Option<Vec<Tok<'_>>> {
    let b = s.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let ws_start = i;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        let c = b[i];
        if c == b'\'' || c == b'"' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\\') => i += 2,
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
        } else if c >= 0x80 {
            return None;
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            i += if ["==", "!=", "<=", ">=", "//", "**"].contains(&two) {
                2
            } else {
                1
            };
        }
        toks.push(Tok {
            ws: &s[ws_start..start],
            text: s.get(start..i)?,
        });
    }
    Some(toks)
}

/// A token or a bracketed group of items.
#[derive(Debug)]
enum Item<'a> {
    Tok(Tok<'a>),
    Group(Tok<'a>, Vec<Item<'a>>, Tok<'a>),
}

impl Item<'_> {
    fn ends_operand(&self) -> bool {
        match self {
            Item::Tok(t) => t.ends_operand(),
            Item::Group(..) => true,
        }
    }

    fn tok(&self) -> Option<&Tok<'_>> {
        match self {
            Item::Tok(t) => Some(t),
            Item::Group(..) => None,
        }
    }
}

fn group<'a>(toks: &[Tok<'a>], i: &mut usize, close: Option<&str>) -> Option<Vec<Item<'a>>> {
    let mut items = Vec::new();
    while *i < toks.len() {
        let t = toks[*i];
        *i += 1;
        let closer = match t.text {
            "(" => ")",
            "[" => "]",
            "{" => "}",
            ")" | "]" | "}" => {
                return (close == Some(t.text)).then_some(items).map(|mut v| {
                    v.push(Item::Tok(t));
                    v
                });
            }
            _ => {
                items.push(Item::Tok(t));
                continue;
            }
        };
        let mut inner = group(toks, i, Some(closer))?;
        let Some(Item::Tok(end)) = inner.pop() else {
            return None;
        };
        items.push(Item::Group(t, inner, end));
    }
    close.is_none().then_some(items)
}

fn render_items(items: &[Item<'_>], out: &mut String) {
    for it in items {
        match it {
            Item::Tok(t) => {
                out.push_str(t.ws);
                out.push_str(t.text);
            }
            Item::Group(open, inner, close) => {
                out.push_str(open.ws);
                out.push_str(open.text);
                out.push_str(&rewrite_items(inner));
                out.push_str(close.ws);
                out.push_str(close.text);
            }
        }
    }
}

/// Items with every `a + b + c` chain turned into `__lume_add(__lume_add(a, b), c)`. A chain
/// is what lies between operators that bind less tightly than `+` in Jinja (comparisons, `in`,
/// `not`, `and`, `or`, `if`/`else`, `=`, `,`, `:`); chains that also subtract are left alone.
fn rewrite_items(items: &[Item<'_>]) -> String {
    let mut out = String::new();
    let mut seg: Vec<&Item<'_>> = Vec::new();
    let mut prev_is = false;
    let flush = |seg: &mut Vec<&Item<'_>>, out: &mut String| {
        out.push_str(&rewrite_chain(seg));
        seg.clear();
    };
    for it in items {
        let delim = it.tok().is_some_and(|t| {
            ["==", "!=", "<", ">", "<=", ">=", "=", ",", ":"].contains(&t.text)
                || ["and", "or", "in", "if", "else"].contains(&t.text)
                || (t.is("not") && !prev_is)
        });
        prev_is = it.tok().is_some_and(|t| t.is("is"));
        if delim {
            flush(&mut seg, &mut out);
            render_items(std::slice::from_ref(it), &mut out);
        } else {
            seg.push(it);
        }
    }
    flush(&mut seg, &mut out);
    out
}

fn rewrite_chain(seg: &[&Item<'_>]) -> String {
    let binary = |sym: &str| -> Vec<usize> {
        (1..seg.len())
            .filter(|&j| seg[j].tok().is_some_and(|t| t.is(sym)) && seg[j - 1].ends_operand())
            .collect()
    };
    let plus = binary("+");
    let render = |part: &[&Item<'_>]| {
        let mut s = String::new();
        for it in part {
            render_items(std::slice::from_ref(*it), &mut s);
        }
        s
    };
    if plus.is_empty() || !binary("-").is_empty() {
        return render(seg);
    }
    let lead = match seg[0] {
        Item::Tok(t) | Item::Group(t, ..) => t.ws,
    };
    let mut bounds = vec![0];
    for &j in &plus {
        bounds.push(j);
        bounds.push(j + 1);
    }
    bounds.push(seg.len());
    let mut acc = String::new();
    for (k, w) in bounds.chunks(2).enumerate() {
        let operand = render(&seg[w[0]..w[1]]);
        let operand = operand.trim();
        acc = if k == 0 {
            operand.to_string()
        } else {
            format!("{ADD_FUNCTION}({acc}, {operand})")
        };
    }
    format!("{lead}{acc}")
}

/// `expr` with Python's `+` (see [`rewrite_items`]); unchanged when it has no `+` or does not
/// lex.
fn rewrite_expr(expr: &str) -> String {
    if !expr.contains('+') {
        return expr.to_string();
    }
    let Some(toks) = tokenize(expr) else {
        return expr.to_string();
    };
    let mut i = 0;
    let Some(items) = group(&toks, &mut i, None) else {
        return expr.to_string();
    };
    let mut out = rewrite_items(&items);
    // The whitespace after the last token.
    out.push_str(&expr[expr.trim_end().len()..]);
    out
}

/// The first byte offset `i` of `s`, outside string literals and at bracket depth 0, where
/// `hit(bytes, i)` holds (never at a quote or a bracket).
fn find_top_level(s: &str, hit: impl Fn(&[u8], usize) -> bool) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0i32;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
        } else {
            match c {
                b'\'' | b'"' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                _ if depth == 0 && hit(b, i) => return Some(i),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The byte offset of the `=` of `set x = …` (not `==`, `!=`, `<=`, `>=`), outside strings and
/// brackets.
fn top_level_assign(s: &str) -> Option<usize> {
    find_top_level(s, |b, i| {
        let prev = if i > 0 { b[i - 1] } else { b' ' };
        let next = b.get(i + 1).copied().unwrap_or(b' ');
        b[i] == b'=' && !matches!(prev, b'=' | b'!' | b'<' | b'>') && next != b'='
    })
}

/// The length of a tag's body up to `close`, skipping quoted strings in expressions.
fn tag_len(s: &str, close: &str, quotes: bool) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
        } else if quotes && (c == b'\'' || c == b'"') {
            quote = Some(c);
        } else if b[i..].starts_with(close.as_bytes()) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// A tag body split into its leading whitespace-control mark, its text, its trailing mark.
fn split_ws_control(body: &str) -> (&str, &str, &str) {
    let (lead, rest) = match body.chars().next() {
        Some(c @ ('-' | '+')) => body.split_at(c.len_utf8()),
        _ => ("", body),
    };
    let (inner, trail) = match rest.chars().last() {
        Some(c @ ('-' | '+')) => rest.split_at(rest.len() - c.len_utf8()),
        _ => (rest, ""),
    };
    (lead, inner, trail)
}

/// `for TARGET in EXPR [if COND] [recursive]` with EXPR wrapped in the iteration check.
fn rewrite_for(whole: &str, lead: &str, inner: &str, trail: &str) -> String {
    let Some((target, iter_and_rest)) = split_top_level_keyword(inner, "in") else {
        return whole.to_string();
    };
    // The iterable ends at a top-level `if` (the loop filter) or `recursive`.
    let (iter, tail) = match split_top_level_keyword(iter_and_rest, "if") {
        Some((it, cond)) => (it, format!(" if {}", rewrite_expr(cond.trim()))),
        None => match split_top_level_keyword(iter_and_rest, "recursive") {
            Some((it, after)) => (it, format!(" recursive{}", after.trim_end())),
            None => (iter_and_rest, String::new()),
        },
    };
    format!(
        "{{%{lead}{} in ({}) | {ITER_FILTER}{tail} {trail}%}}",
        target.trim_end(),
        rewrite_expr(iter.trim())
    )
}

/// Splits `s` at the first occurrence of the word `kw` outside strings and brackets:
/// (before, after), the keyword itself dropped.
fn split_top_level_keyword<'a>(s: &'a str, kw: &str) -> Option<(&'a str, &'a str)> {
    let i = find_top_level(s, |b, i| {
        let end = i + kw.len();
        b[i..].starts_with(kw.as_bytes())
            && i > 0
            && b[i - 1].is_ascii_whitespace()
            && (end == b.len() || !is_ident(b[end]))
    })?;
    Some((&s[..i], &s[i + kw.len()..]))
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python() {
        for (f, s) in [
            (18.5, "18.5"),
            (2.0, "2.0"),
            (1e16, "1e+16"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456.789, "123456.789"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (-0.5, "-0.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e15, "1000000000000000.0"),
        ] {
            assert_eq!(py_float(f), s, "{f}");
        }
    }

    #[test]
    fn source_rewrites() {
        assert_eq!(
            rewrite_source("{%- generation -%}x{% endgeneration %}"),
            "{%- with -%}x{% endwith %}"
        );
        assert_eq!(
            rewrite_source("{% for m in messages if m.role != 'in' %}{{ '{% for' }}{% endfor %}"),
            "{% for m in (messages) | __lume_pyiter if m.role != 'in' %}{{ '{% for' }}{% endfor %}"
        );
        assert_eq!(
            rewrite_source("{%- for k, v in d.items() -%}{# {% for a in b %} #}"),
            "{%- for k, v in (d.items()) | __lume_pyiter -%}{# {% for a in b %} #}"
        );
        assert_eq!(
            rewrite_source("{% raw %}{% for a in b %}{% endraw %}"),
            "{% raw %}{% for a in b %}{% endraw %}"
        );
        assert_eq!(
            rewrite_source("{{- 'a' + b|upper ~ c + (d + e)[0] -}}{% set x = 1 + 2, 3 %}"),
            "{{- __lume_add(__lume_add('a', b|upper ~ c), (__lume_add(d, e))[0]) -}}\
             {% set x = __lume_add(1, 2), 3 %}"
        );
        assert_eq!(
            rewrite_source("{% if a + b is not none and c - d + e == f(g=h + i) %}"),
            "{% if __lume_add(a, b is not none) and c - d + e == f(g=__lume_add(h, i)) %}"
        );
        assert_eq!(
            rewrite_source("{% set x %}{{ 1 + 2 }}{% endset %}{% set y = x == 1 + 1 %}"),
            "{% set x %}{{ __lume_add(1, 2) }}{% endset %}{% set y = x == __lume_add(1, 1) %}"
        );
        assert_eq!(
            rewrite_source("{% for x in tree recursive %}"),
            "{% for x in (tree) | __lume_pyiter recursive %}"
        );
    }
}
