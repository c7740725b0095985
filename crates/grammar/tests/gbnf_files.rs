//! Every GBNF file in testdata/grammars (llama.cpp's own grammars) converts to Lark, compiles
//! with llguidance, accepts strings of its language to the end and rejects others.

mod common;

use std::path::PathBuf;

use llguidance::api::TopLevelGrammar;

/// Files that must be refused, with the construct the error must name. None so far.
const EXPECTED_REFUSED: &[(&str, &str)] = &[];

/// (file, strings in the language, strings outside it).
const CASES: &[(&str, &[&str], &[&str])] = &[
    (
        "arithmetic.gbnf",
        &[
            "1+2=3\n",
            "x=1\n",
            "(a +b)*c = x1\n",
            "a = b\nc=d\n",
            "foo_1 /2 =\t( 3 )\n",
        ],
        &["1+2=3", "=1\n", "1++2=3\n", "A=1\n", "(a=b\n", "a + b=1\n"],
    ),
    (
        "c.gbnf",
        &[
            "",
            "int main(){}",
            "int f(int x){return x;}",
            "int main(){int a = 1;a = a+2*3;while(a<=10){a = a+1;}}",
            "float g(){if(x==1){y = 2;}else{y = 3;}}",
            "int h(){// note\n/* block */foo (1, 2);}",
            "char c(){for(int i = 0; i<10; i = i+1){}}",
            "int k(){int = 5;}",
            "int m(){while (x);return (1);while(a<b){}}",
        ],
        &[
            "int main()",
            "main(){}",
            "int main(){x=1}",
            "int main(){return;}",
        ],
    ),
    (
        "chess.gbnf",
        &[
            "1. e4 e5\n2. Nf3 Nc6\n",
            "1. d4 d5\n2. c4 dxc4\n3. O-O O-O-O\n",
            "1. e4 e5\n12. Qxf7# Ke7\n",
            "1. e8=Q+ a1=N\n2. Rae1 Nbd7\n",
        ],
        &[
            "1. e4 e5\n",
            "1. e4 e5\n2. Zf3 Nc6\n",
            "2. e4 e5\n3. d4 d5\n",
            "1. e9 e5\n2. a3 a6\n",
        ],
    ),
    (
        "english.gbnf",
        &[
            "Hello, world!",
            "a",
            "two words\nand\tmore",
            "x [y] {z} \\ ~",
        ],
        &["", " leading", "trailing ", "two  spaces", "caf\u{e9}"],
    ),
    (
        "japanese.gbnf",
        &["こんにちは", "カタカナ 漢字", "日本語、テスト。\nです"],
        &["", "hello", "こんにちは ", "é"],
    ),
    (
        "json.gbnf",
        &[
            "{}",
            "{\"a\":1}",
            "{ \"a\": [1, 2.5, -3e19, true, false, null], \"b\": {\"c\": \"d\\n\\u00e9\"}}",
            "{\n  \"k\": \"v\"\n}\n",
            "{\"x\":\"caf\u{e9}\"} ",
        ],
        &[
            "[]",
            "{",
            "{\"a\"}",
            "{\"a\":01}",
            "{\"a\":tru}",
            "{'a':1}",
            "{\"a\":1}x",
        ],
    ),
    (
        "json_arr.gbnf",
        &["[\n]", "[\n1]", "[\n{\"a\": [true]},\n\"s\",\n2]"],
        &["[]", "[\n1,2]", "[\n1]\n", "{}"],
    ),
    (
        "list.gbnf",
        &["- one\n", "- one\n- two and more\n", "- x\u{e9}\n"],
        &["", "- \n", "one\n", "- one", "- a\rb\n"],
    ),
];

fn grammar_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/grammars")
}

#[test]
fn every_file_converts_compiles_and_constrains() {
    let mut files: Vec<String> = std::fs::read_dir(grammar_dir())
        .expect("testdata/grammars")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".gbnf"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "expected llama.cpp's grammar files, found {files:?}"
    );

    let mut failures = Vec::new();
    let (mut converted, mut compiled, mut refused) = (0, 0, 0);
    for file in &files {
        let text = std::fs::read_to_string(grammar_dir().join(file)).expect("read grammar");
        let expected_refusal = EXPECTED_REFUSED.iter().find(|(f, _)| f == file);
        let lark = match (grammar::gbnf::to_lark(&text), expected_refusal) {
            (Err(e), Some((_, what))) => {
                if !e.to_string().contains(what) {
                    failures.push(format!("{file}: refused, but '{e}' does not name '{what}'"));
                }
                refused += 1;
                continue;
            }
            (Err(e), None) => {
                failures.push(format!("{file}: conversion failed: {e}"));
                continue;
            }
            (Ok(_), Some((_, what))) => {
                failures.push(format!(
                    "{file}: expected a refusal naming '{what}', converted"
                ));
                continue;
            }
            (Ok(lark), None) => lark,
        };
        converted += 1;
        let grammar = TopLevelGrammar::from_lark(lark.clone());
        match common::matcher(grammar.clone()) {
            Err(e) => {
                failures.push(format!("{file}: llguidance refused the Lark: {e}\n{lark}"));
                continue;
            }
            Ok(mut m) => {
                let warnings = m.grammar_warnings();
                if !warnings.is_empty() {
                    failures.push(format!("{file}: llguidance warns: {warnings:?}\n{lark}"));
                }
            }
        }
        compiled += 1;
        let Some((_, good, bad)) = CASES.iter().find(|(f, _, _)| f == file) else {
            failures.push(format!("{file}: no examples in CASES"));
            continue;
        };
        assert!(
            !good.is_empty() && !bad.is_empty(),
            "{file}: needs examples both ways"
        );
        for s in *good {
            if let Err(e) = common::accepts(&grammar, s.as_bytes()) {
                failures.push(format!("{file}: should accept {s:?}: {e}\n{lark}"));
            }
        }
        for s in *bad {
            if common::accepts(&grammar, s.as_bytes()).is_ok() {
                failures.push(format!("{file}: should reject {s:?}\n{lark}"));
            }
        }
    }
    for (f, _, _) in CASES {
        assert!(
            files.iter().any(|x| x == f),
            "CASES names a missing file {f}"
        );
    }
    println!(
        "{} files: {converted} converted, {compiled} compiled, {refused} refused",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
