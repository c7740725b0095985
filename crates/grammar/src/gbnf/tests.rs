//! Unit tests: every syntax element (converted Lark compiled by llguidance and run against
//! examples), every error, and no panic on broken input.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use toktrie::{ApproximateTokEnv, TokRxInfo, TokTrie};

use super::{to_lark, MAX_REPETITION};
use crate::GrammarError;

const SPECIAL: u32 = 256;
const EOS: u32 = 257;

fn factory() -> ParserFactory {
    let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    words.push(b"\xFF<|special|>".to_vec());
    words.push(b"\xFF<|eos|>".to_vec());
    let info = TokRxInfo::new(words.len() as u32, EOS);
    let env = Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)));
    let mut f = ParserFactory::new_simple(&(env as toktrie::TokEnv)).unwrap();
    f.set_stderr_log_level(0);
    f
}

fn lark(g: &str) -> String {
    match to_lark(g) {
        Ok(s) => s,
        Err(e) => panic!("{g:?}: {e}"),
    }
}

/// Runs token ids through the grammar; true when all are allowed and EOS is allowed after.
fn run_tokens(g: &str, tokens: &[u32]) -> bool {
    let l = lark(g);
    let parser = factory()
        .create_parser(TopLevelGrammar::from_lark(l.clone()))
        .unwrap_or_else(|e| panic!("llguidance refused {l}: {e}"));
    let mut m = Matcher::new(Ok(parser));
    for &t in tokens {
        if m.is_stopped() {
            return false;
        }
        let mask = m.compute_mask().unwrap();
        if !mask.is_allowed(t) {
            return false;
        }
        m.consume_token(t).unwrap();
    }
    m.compute_mask_or_eos().unwrap().is_allowed(EOS)
}

fn accepts(g: &str, s: &str) -> bool {
    let toks: Vec<u32> = s.bytes().map(u32::from).collect();
    run_tokens(g, &toks)
}

fn check(g: &str, good: &[&str], bad: &[&str]) {
    for s in good {
        assert!(accepts(g, s), "{g:?} should accept {s:?}:\n{}", lark(g));
    }
    for s in bad {
        assert!(!accepts(g, s), "{g:?} should reject {s:?}:\n{}", lark(g));
    }
}

fn err(g: &str) -> (usize, usize, String) {
    match to_lark(g) {
        Ok(s) => panic!("{g:?} converted to {s:?}, expected an error"),
        Err(GrammarError::Gbnf { line, col, msg }) => (line, col, msg),
        #[allow(unreachable_patterns)]
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn err_has(g: &str, line: usize, col: usize, what: &str) {
    let (l, c, msg) = err(g);
    assert!(msg.contains(what), "{g:?}: message {msg:?} lacks {what:?}");
    assert_eq!((l, c), (line, col), "{g:?}: {msg}");
}

// Syntax elements.

#[test]
fn literal_and_sequence() {
    check(
        "root ::= \"ab\" \"c\"",
        &["abc"],
        &["ab", "abcd", "", "acb"],
    );
    check("root ::= \"\"", &[""], &["a"]);
}

#[test]
fn escapes() {
    check(
        r#"root ::= "\n\r\t\\\"\[\]\-" "\x41\u00e9\U0001F600""#,
        &["\n\r\t\\\"[]-A\u{e9}\u{1F600}"],
        &["\n\r\t\\\"[]-A\u{e9}", "nrt"],
    );
    // \xHH is a code point: \xFF is ÿ (two bytes in UTF-8), not the byte 0xFF.
    check(r#"root ::= "\xFF""#, &["\u{ff}"], &["a"]);
}

#[test]
fn character_classes() {
    check("root ::= [a-cx]", &["a", "b", "c", "x"], &["d", "", "ab"]);
    check("root ::= [^a-c]", &["d", "\n", "\u{e9}"], &["a", "c", ""]);
    check(r#"root ::= [\]\[\-^]"#, &["]", "[", "-", "^"], &["a"]);
    check("root ::= [a-]", &["a", "-"], &["b"]);
    check("root ::= [ぁ-ゟ]+", &["こんにちは"], &["カ"]);
    // Ranges are clamped to scalar values; surrogates never occur in text.
    check(
        r#"root ::= [\x00-\U0010FFFF]"#,
        &["a", "\u{10FFFF}"],
        &["ab"],
    );
}

#[test]
fn any_char_includes_newline() {
    check("root ::= . .", &["ab", "\n\u{e9}"], &["a", "abc"]);
}

#[test]
fn groups_and_alternatives() {
    check(
        "root ::= (\"a\" | \"b\" \"c\") \"d\" | \"e\"",
        &["ad", "bcd", "e"],
        &["bd", "ade", "d"],
    );
    check("root ::= (\"a\" | ) \"b\"", &["ab", "b"], &["a"]);
}

#[test]
fn repetitions() {
    check("root ::= \"a\"*", &["", "a", "aaaa"], &["b"]);
    check("root ::= \"ab\"+", &["ab", "abab"], &["", "aba"]);
    check("root ::= \"a\"? \"b\"", &["ab", "b"], &["aab"]);
    check("root ::= [0-9]{3}", &["123"], &["12", "1234"]);
    check("root ::= [0-9]{2,}", &["12", "12345"], &["1"]);
    check("root ::= [0-9]{1,3}", &["1", "123"], &["", "1234"]);
    check("root ::= [0-9]{0}", &[""], &["1"]);
    check("root ::= [0-9] { 2 , 3 }", &["123"], &["1"]);
    check("root ::= (\"a\" \"b\"?)+", &["a", "ab", "aab"], &["b"]);
    check("root ::= \"a\"*?", &["", "aa"], &["b"]);
}

#[test]
fn comments_and_newlines() {
    let g = "# leading comment\nroot ::= x | # trailing comment\n  y\n\nx ::= \"a\" # more\ny ::= (\n  \"b\"\n  | \"c\"\n)\n";
    check(g, &["a", "b", "c"], &["", "ab"]);
    // A newline ends a rule; the next line is a new rule.
    check("root ::= \"a\"\nb ::= \"b\"", &["a"], &["ab"]);
    // CRLF line ends.
    check("root ::= x\r\nx ::= \"a\"\r\n", &["a"], &["b"]);
    // ::= may be followed by a newline.
    check("root ::=\n  \"a\"", &["a"], &[""]);
}

#[test]
fn recursive_rules() {
    let g = "root ::= expr\nexpr ::= term (\"+\" term)*\nterm ::= [0-9]+ | \"(\" expr \")\"";
    check(g, &["1", "1+2", "(1+(2+3))+4"], &["", "1+", "(1", "1)"]);
}

#[test]
fn greedy_lexer_boundaries() {
    // A lexeme [a-z]* followed by a recursive rule starting with a letter.
    let g = "root ::= [a-z]* x\nx ::= \"b\" x | \"c\"";
    check(g, &["c", "bc", "abbc", "zzc"], &["b", "", "cb"]);
    // Trailing white space inside a terminal, followed by a literal the white space matches
    // (llama.cpp's arithmetic.gbnf has this shape).
    let g = "root ::= t \"\\n\"\nt ::= \"(\" t \")\" ws | \"a\" ws\nws ::= [ \\n]*";
    check(g, &["a\n", "a \n", "(a) \n", "a\n\n"], &["a", "(a\n"]);
    // A lexeme that is a prefix of a sibling lexeme, where the character after it also starts
    // what follows it.
    let g = "root ::= x\nx ::= \"a\" y | \"ab\"\ny ::= \"b\" y | \"c\"";
    check(g, &["abc", "ab", "abbc", "ac"], &["a", "abb", "abcb"]);
    let g = "root ::= (x \";\")+\nx ::= \"int\" ws \"=\" x | [a-z]+ | \"(\" x \")\"\nws ::= [ ]*";
    check(
        g,
        &["int =in;", "int;", "integer;", "int  =int =(x);"],
        &["int =;", "int", "int = in;"],
    );
    // Lexemes that stay merged: no overlap with what follows.
    let l = lark("root ::= \"{\" ws v \"}\"\nv ::= \"x\" | \"{\" ws v \"}\"\nws ::= [ ]*");
    assert!(l.contains("C_1: \"{\" WS"), "{l}");
}

#[test]
fn whole_grammar_regular_is_one_terminal() {
    let l = lark("root ::= a b\na ::= [a-z]+\nb ::= [a-z0-9]*");
    assert!(
        l.starts_with("// converted from GBNF\nstart: ROOT\n"),
        "{l}"
    );
    check(
        "root ::= a b\na ::= [a-z]+\nb ::= [a-z]*",
        &["ab", "a"],
        &["", "1"],
    );
}

#[test]
fn token_references() {
    assert!(lark("root ::= x\nx ::= <[5]> x | \"a\"").contains("<[5]>"));
    assert!(lark("root ::= !<[5]> \"a\"").contains("<[^5]>"));
    assert!(lark("root ::= <think> \"a\"").contains("<think>"));
    assert!(run_tokens(
        "root ::= \"a\" <[256]>",
        &[b'a' as u32, SPECIAL]
    ));
    assert!(!run_tokens(
        "root ::= \"a\" <[256]>",
        &[b'a' as u32, b'b' as u32]
    ));
    assert!(run_tokens(
        "root ::= <|special|> \"a\"",
        &[SPECIAL, b'a' as u32]
    ));
    assert!(run_tokens(
        "root ::= !<[256]> \"a\"",
        &[b'x' as u32, b'a' as u32]
    ));
    assert!(!run_tokens(
        "root ::= !<[256]> \"a\"",
        &[SPECIAL, b'a' as u32]
    ));
}

#[test]
fn names() {
    // GBNF names may start with a digit, differ only by case, or be "start".
    let g = "root ::= 1st start dataType datatype\n1st ::= \"a\"\nstart ::= \"b\"\ndataType ::= \"c\"\ndatatype ::= \"d\"";
    check(g, &["abcd"], &["abdc"]);
    let g = "root ::= x-y x-y\nx-y ::= \"(\" root \")\" | \"e\"";
    check(g, &["ee", "(ee)e"], &["e"]);
}

// Errors: line and column of the problem, and what it is.

#[test]
fn error_undefined_rule() {
    err_has(
        "root ::= b\n\nb ::= \"x\" undefined-one",
        3,
        11,
        "undefined rule 'undefined-one'",
    );
}

#[test]
fn error_missing_root() {
    let (_, _, msg) = err("a ::= \"x\"\n");
    assert!(msg.contains("no 'root' rule"), "{msg}");
}

#[test]
fn error_bad_escapes() {
    err_has(r#"root ::= "a\q""#, 1, 12, "unknown escape '\\q'");
    err_has(r#"root ::= "\x4""#, 1, 11, "needs 2 hex digits");
    err_has(r#"root ::= [\u12]"#, 1, 11, "needs 4 hex digits");
    err_has(
        r#"root ::= "\UFFFFFFFF""#,
        1,
        11,
        "not a Unicode scalar value",
    );
    err_has(r#"root ::= "\uD800""#, 1, 11, "not a Unicode scalar value");
    err_has("root ::= \"\\", 1, 11, "unterminated escape");
}

#[test]
fn error_unterminated() {
    // A raw newline is part of a literal (as in llama.cpp): the string closes on line 2.
    err_has(
        "root ::= \"abc\nx ::= \"y\"",
        2,
        9,
        "unterminated string literal",
    );
    err_has("root ::= \"abc", 1, 10, "unterminated string literal");
    err_has("root ::= [abc", 1, 10, "unterminated character class");
    err_has("root ::= [a-", 1, 10, "unterminated character class");
    err_has("root ::= (\"a\" \"b\"", 1, 18, "expected ')'");
    err_has("root ::= <think", 1, 10, "unterminated token reference");
}

#[test]
fn error_classes() {
    err_has("root ::= []", 1, 10, "empty character class");
    err_has("root ::= [z-a]", 1, 11, "reversed");
    err_has("root ::= [\\uD800-\\uDFFF]", 1, 10, "empty character class");
}

#[test]
fn error_rule_syntax() {
    err_has("root = \"a\"", 1, 6, "expected '::='");
    err_has("root ::= \"a\" )", 1, 14, "unexpected ')'");
    err_has("::= \"a\"", 1, 1, "expected a rule name");
    err_has("root ::= \"a\"\nroot ::= \"b\"", 2, 1, "defined twice");
}

#[test]
fn error_repetitions() {
    err_has("root ::= * \"a\"", 1, 10, "no item before it");
    err_has("root ::= \"a\" | + \"a\"", 1, 16, "no item before it");
    err_has("root ::= \"a\"{2001}", 1, 14, "above the limit");
    err_has(
        "root ::= \"a\"{99999999999999999999999999}",
        1,
        14,
        "above the limit",
    );
    err_has("root ::= \"a\"{1,3000}", 1, 16, "above the limit");
    err_has("root ::= \"a\"{3,2}", 1, 13, "below the minimum");
    err_has("root ::= \"a\"{x}", 1, 14, "expected a number");
    err_has("root ::= \"a\"{1;}", 1, 15, "expected ',' or '}'");
    err_has("root ::= \"a\"{1,2", 1, 17, "expected '}'");
    err_has("root ::= (\"a\"{100}){100}", 1, 20, "over 2000 copies");
    err_has("root ::= \"a\"?????????", 1, 21, "stacked");
    assert!(to_lark(&format!("root ::= \"a\"{{{MAX_REPETITION}}}")).is_ok());
}

#[test]
fn error_nesting() {
    let deep = format!("root ::= {}\"a\"{}", "(".repeat(200), ")".repeat(200));
    let (_, _, msg) = err(&deep);
    assert!(msg.contains("nested more than"), "{msg}");
}

#[test]
fn error_tokens() {
    err_has("root ::= !<think>", 1, 10, "negated token by text");
    err_has("root ::= <[12]", 1, 14, "expected ']>'");
    err_has("root ::= <[99999999999]>", 1, 12, "token id");
    err_has("root ::= !\"a\"", 1, 11, "expected '<'");
}

#[test]
fn no_panic_on_broken_input() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/grammars");
    let mut seed: u64 = 0x9E3779B97F4A7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces = [
        "\"", "[", "]", "(", ")", "\\", "\\x", "\\u", "{", "}", "{9", ",", "|", "*", "\n", "::=",
        "<", ">", "!", "<[", "#", "^", "-", ".", "é",
    ];
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let idx: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        for &i in &idx {
            let _ = to_lark(&text[..i]);
        }
        for _ in 0..300 {
            let at = idx[next() as usize % idx.len()];
            let piece = pieces[next() as usize % pieces.len()];
            let mutated = format!("{}{}{}", &text[..at], piece, &text[at..]);
            let _ = to_lark(&mutated);
            let cut = idx[next() as usize % idx.len()];
            let removed = format!("{}{}", &text[..at.min(cut)], &text[at.max(cut)..]);
            let _ = to_lark(&removed);
        }
    }
}

#[test]
fn large_grammars_convert_quickly() {
    // 3000 mutually recursive rules, and 3000 regular ones in a chain.
    let mut g = String::from("root ::= r0\n");
    for k in 0..3000 {
        g.push_str(&format!("r{k} ::= \"x\" r{} | \"y{k}\"\n", (k + 1) % 3000));
    }
    for k in 0..3000 {
        g.push_str(&format!("t{k} ::= \"z\" t{} | \"w\"\n", k + 1));
    }
    g.push_str("t3000 ::= \"end\"\n");
    let start = std::time::Instant::now();
    let l = lark(&g);
    assert!(l.contains("r0"), "{}", &l[..200]);
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
}
