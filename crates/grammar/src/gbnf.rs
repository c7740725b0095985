//! llama.cpp's GBNF grammars, converted to llguidance's Lark syntax.
//!
//! # The input: GBNF as llama.cpp parses it
//!
//! A grammar is a list of rules `name ::= alternatives`, one per line; rule names are
//! `[a-zA-Z0-9-]+`. A newline ends a rule, except right after `::=` or `|`, or inside a
//! parenthesised group, where newlines are white space. `#` starts a comment up to the end of
//! the line. Items: `"literal"`, `[class]` / `[^class]` (single characters and `a-z` ranges),
//! `.` (any character, newline included), a rule name, `( … )`, and token references
//! `<[id]>`, `!<[id]>`, `<text>`. Postfix operators `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}` apply
//! to the item before them. Escapes in literals and classes: `\n \r \t \\ \" \[ \] \-` and
//! `\xHH`, `\uHHHH`, `\UHHHHHHHH` (code points, not bytes: `\xFF` is `ÿ`).
//! The rule `root` is where the language starts.
//!
//! # The output, and why it has this shape
//!
//! GBNF is character-level: a grammar is one context-free language over characters.
//! llguidance instead splits the input into *lexemes* (Lark terminals: strings, `/regex/`, and
//! rules with UPPERCASE names, all compiled to regexes) and runs an Earley parser over them.
//! Its lexer is greedy and never backtracks: once the bytes read so far match a lexeme, it
//! keeps reading as long as some allowed lexeme can still grow, and only cuts when the next
//! byte cannot extend any of them. So a boundary between two lexemes is only found where the
//! first cannot continue. A naive one-lexeme-per-literal translation therefore loses strings:
//! in `root ::= [a-z]* x`, `x ::= "b" x | "c"`, a lexeme `/[a-z]*/` would swallow the `b` that
//! `x` needs.
//!
//! The translation keeps as few boundaries as possible:
//! - A rule is *regular* when it does not reach itself through references (no recursion) and
//!   everything it references is regular. Each regular rule becomes one UPPERCASE terminal
//!   (llguidance folds terminals referencing terminals into a single regex). If `root` is
//!   regular, the whole grammar is a single lexeme: `start: ROOT`, and the language is exactly
//!   GBNF's, since one regex has no internal boundaries.
//! - Recursive rules stay lowercase Lark rules. Inside them, every maximal run of consecutive
//!   regular items of a sequence (literals, classes, `.`, references to regular rules, regular
//!   groups and repetitions) becomes *one* terminal (`C_1`, `C_2`, …). For json.gbnf,
//!   `"{" ws` is one lexeme, and so is `string ":" ws`. Lexeme boundaries are then left only
//!   next to references to recursive rules, group edges, and token references.
//! - Overrun check: the greedy lexer loses strings where, after a complete match of one lexeme,
//!   the next character both continues some allowed lexeme and begins what the grammar wants
//!   next. The converter computes, over characters, FIRST and FOLLOW sets of the GBNF grammar,
//!   and over lexemes, which lexemes can start the grammar and which can follow each lexeme
//!   (so which lexemes the parser can allow at the same point). A run is then checked
//!   - against itself: can a complete match continue with a character that can follow it?
//!   - against each lexeme allowed at the same point: can a complete match of one be a proper
//!     prefix of the other, continued by a character that can follow the first?
//!
//!   Both questions are answered exactly with derivre (llguidance's regex engine:
//!   `B ∩ A·[follow]·.*` non-empty), after cheap character-set filters; where a budget runs
//!   out the answer is "yes". A run that fails is written at *character level*: one lexeme per
//!   character or class, regular rules copied as lowercase `name_chars` rules, so every split is
//!   left to the Earley parser; lexemes that could overrun such one-character pieces go to
//!   character level too, until nothing changes. llama.cpp's `arithmetic.gbnf` needs this
//!   (`num ::= [0-9]+ ws` followed by `"\n"`, which `ws` also matches), and so does the
//!   statement rule of `c.gbnf` (`"while" "("` against a call `while (…)`); JSON keeps its
//!   merged lexemes. A false alarm costs speed (more, shorter lexemes), never strings.
//! - What remains approximate: the lexemes allowed together are taken as "those that can
//!   follow the same lexeme"; two parses of one prefix that end in *different* lexemes matching
//!   the same text are not cross-checked. None of llama.cpp's grammar files has that shape.
//!
//! Token references map to llguidance's special-token syntax: `<[12]>` stays, `!<[12]>`
//! becomes `<[^12]>`, `<text>` stays (llguidance looks the token up by its text). `!<text>`
//! has no llguidance equivalent and is refused.
//!
//! Names: rules become lowercase (`r_`-prefixed when they do not start with a letter),
//! terminals UPPERCASE; generated names contain `_`, which GBNF names cannot, so they never
//! clash with a grammar's own; `root` becomes `start`, and a GBNF rule named `start` is renamed.
//!
//! Limits (so no input makes the converter or llguidance allocate without bound): repetition
//! counts at most [`MAX_REPETITION`], also multiplied through nested repetitions; groups nested
//! at most [`MAX_NESTING`] deep.

use std::collections::{HashMap, HashSet};

use crate::GrammarError;

/// Largest count allowed in `{m}`, `{m,}`, `{m,n}` (llama.cpp's own limit), and largest product
/// of the counts of repetitions nested inside each other.
pub const MAX_REPETITION: u32 = 2000;

/// Deepest nesting of parenthesised groups accepted.
pub const MAX_NESTING: usize = 100;

/// Most repetition operators stacked on one item (`x*?+…`).
pub const MAX_STACKED: usize = 8;

/// Converts a llama.cpp GBNF grammar to llguidance's Lark syntax (start rule `start`, from GBNF `root`).
pub fn to_lark(gbnf: &str) -> Result<String, GrammarError> {
    let rules = Parser::new(gbnf).parse_grammar()?;
    Converter::new(gbnf, &rules)?.emit()
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

#[derive(Debug, Clone)]
enum Expr {
    Literal(Vec<char>),
    /// Ranges of code points, inclusive; already clamped to Unicode scalar values.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Any,
    Ref {
        name: String,
        pos: usize,
    },
    Token(String),
    Group(Vec<Vec<Expr>>),
    Repeat {
        inner: Box<Expr>,
        min: u32,
        max: Option<u32>,
    },
}

#[derive(Debug)]
struct Rule {
    name: String,
    pos: usize,
    alts: Vec<Vec<Expr>>,
}

fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(src.len());
    let before = &src[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn err_at(src: &str, pos: usize, msg: impl Into<String>) -> GrammarError {
    let (line, col) = line_col(src, pos);
    GrammarError::Gbnf {
        line,
        col,
        msg: msg.into(),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

fn show(c: Option<char>) -> String {
    match c {
        None => "the end of the grammar".to_string(),
        Some('\n') => "a newline".to_string(),
        Some(c) => format!("{c:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser { src, pos: 0 }
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> GrammarError {
        err_at(self.src, pos, msg)
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => {
                    self.bump();
                }
                '\r' | '\n' if newlines => {
                    self.bump();
                }
                '#' => {
                    while let Some(c) = self.peek() {
                        if c == '\r' || c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    fn parse_grammar(mut self) -> Result<Vec<Rule>, GrammarError> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        self.skip_space(true);
        while self.peek().is_some() {
            let rule = self.parse_rule()?;
            if let Some(&first) = seen.get(&rule.name) {
                let (line, _) = line_col(self.src, first);
                return Err(self.err(
                    rule.pos,
                    format!(
                        "rule '{}' is defined twice (first on line {line})",
                        rule.name
                    ),
                ));
            }
            seen.insert(rule.name.clone(), rule.pos);
            rules.push(rule);
        }
        Ok(rules)
    }

    fn parse_name(&mut self) -> Result<String, GrammarError> {
        let start = self.pos;
        while self.peek().is_some_and(is_word_char) {
            self.bump();
        }
        if self.pos == start {
            return Err(self.err(
                start,
                format!("expected a rule name, found {}", show(self.peek())),
            ));
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn parse_rule(&mut self) -> Result<Rule, GrammarError> {
        let pos = self.pos;
        let name = self.parse_name()?;
        self.skip_space(false);
        if !self.src[self.pos..].starts_with("::=") {
            return Err(self.err(
                self.pos,
                format!(
                    "expected '::=' after rule name '{name}', found {}",
                    show(self.peek())
                ),
            ));
        }
        self.pos += 3;
        self.skip_space(true);
        let alts = self.parse_alternates(false, 0)?;
        match self.peek() {
            None => {}
            Some('\r') => {
                self.bump();
                if self.peek() == Some('\n') {
                    self.bump();
                }
            }
            Some('\n') => {
                self.bump();
            }
            Some(c) => {
                return Err(self.err(
                    self.pos,
                    format!(
                        "unexpected {} in rule '{name}' (expected an item, '|', or the end of the line)",
                        show(Some(c))
                    ),
                ))
            }
        }
        self.skip_space(true);
        Ok(Rule { name, pos, alts })
    }

    fn parse_alternates(
        &mut self,
        nested: bool,
        depth: usize,
    ) -> Result<Vec<Vec<Expr>>, GrammarError> {
        let mut alts = vec![self.parse_sequence(nested, depth)?];
        while self.peek() == Some('|') {
            self.bump();
            self.skip_space(true);
            alts.push(self.parse_sequence(nested, depth)?);
        }
        Ok(alts)
    }

    fn parse_sequence(&mut self, nested: bool, depth: usize) -> Result<Vec<Expr>, GrammarError> {
        let mut seq: Vec<Expr> = Vec::new();
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                '"' => {
                    self.bump();
                    let mut chars = Vec::new();
                    loop {
                        match self.peek() {
                            None => return Err(self.err(start, "unterminated string literal")),
                            Some('"') => {
                                self.bump();
                                break;
                            }
                            Some(_) => chars.push(self.parse_char_scalar()?),
                        }
                    }
                    seq.push(Expr::Literal(chars));
                }
                '[' => {
                    seq.push(self.parse_class()?);
                }
                '.' => {
                    self.bump();
                    seq.push(Expr::Any);
                }
                '<' | '!' => {
                    seq.push(self.parse_token()?);
                }
                '(' => {
                    if depth >= MAX_NESTING {
                        return Err(
                            self.err(start, format!("groups nested more than {MAX_NESTING} deep"))
                        );
                    }
                    self.bump();
                    self.skip_space(true);
                    let alts = self.parse_alternates(true, depth + 1)?;
                    if self.peek() != Some(')') {
                        let (line, col) = line_col(self.src, start);
                        return Err(self.err(
                            self.pos,
                            format!(
                                "expected ')' to close the group opened at line {line} column {col}, found {}",
                                show(self.peek())
                            ),
                        ));
                    }
                    self.bump();
                    seq.push(Expr::Group(alts));
                }
                '*' | '+' | '?' => {
                    self.bump();
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.apply_repeat(&mut seq, start, c.to_string(), min, max)?;
                }
                '{' => {
                    self.bump();
                    self.skip_space(nested);
                    let min = self.parse_count()?;
                    self.skip_space(nested);
                    let max = match self.peek() {
                        Some('}') => Some(min),
                        Some(',') => {
                            self.bump();
                            self.skip_space(nested);
                            let max = if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                                Some(self.parse_count()?)
                            } else {
                                None
                            };
                            self.skip_space(nested);
                            if self.peek() != Some('}') {
                                return Err(self.err(
                                    self.pos,
                                    format!(
                                        "expected '}}' to end the repetition, found {}",
                                        show(self.peek())
                                    ),
                                ));
                            }
                            max
                        }
                        other => {
                            return Err(self.err(
                                self.pos,
                                format!(
                                    "expected ',' or '}}' in the repetition, found {}",
                                    show(other)
                                ),
                            ))
                        }
                    };
                    self.bump(); // '}'
                    if let Some(max) = max {
                        if max < min {
                            return Err(self.err(
                                start,
                                format!(
                                    "repetition {{{min},{max}}}: the maximum is below the minimum"
                                ),
                            ));
                        }
                    }
                    let text = self.src[start..self.pos].to_string();
                    self.apply_repeat(&mut seq, start, text, min, max)?;
                }
                c if is_word_char(c) => {
                    let name = self.parse_name()?;
                    seq.push(Expr::Ref { name, pos: start });
                }
                _ => break,
            }
            self.skip_space(nested);
        }
        Ok(seq)
    }

    fn apply_repeat(
        &self,
        seq: &mut Vec<Expr>,
        pos: usize,
        op: String,
        min: u32,
        max: Option<u32>,
    ) -> Result<(), GrammarError> {
        let Some(inner) = seq.pop() else {
            return Err(self.err(pos, format!("'{op}' has no item before it to repeat")));
        };
        let mut depth = 0;
        let mut e = &inner;
        while let Expr::Repeat { inner, .. } = e {
            depth += 1;
            e = inner;
        }
        if depth >= MAX_STACKED {
            return Err(self.err(
                pos,
                format!("more than {MAX_STACKED} repetition operators stacked on one item"),
            ));
        }
        let factor = max.unwrap_or(min).max(1) as u64;
        let product = factor * repeat_weight(&inner);
        if product > MAX_REPETITION as u64 {
            return Err(self.err(
                pos,
                format!(
                    "repetition '{op}' nested in other repetitions makes over {MAX_REPETITION} copies"
                ),
            ));
        }
        seq.push(Expr::Repeat {
            inner: Box::new(inner),
            min,
            max,
        });
        Ok(())
    }

    /// A repetition count: digits, at most [`MAX_REPETITION`]; never parsed into an unbounded
    /// number.
    fn parse_count(&mut self) -> Result<u32, GrammarError> {
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(c) = self.peek().filter(|c| c.is_ascii_digit()) {
            self.bump();
            value = (value * 10 + c.to_digit(10).unwrap_or(0) as u64).min(u64::MAX / 100);
        }
        if self.pos == start {
            return Err(self.err(
                start,
                format!(
                    "expected a number in the repetition, found {}",
                    show(self.peek())
                ),
            ));
        }
        if value > MAX_REPETITION as u64 {
            return Err(self.err(
                start,
                format!(
                    "repetition count {} is above the limit of {MAX_REPETITION}",
                    &self.src[start..self.pos]
                ),
            ));
        }
        Ok(value as u32)
    }

    /// One character of a literal or class, escapes decoded, as a code point (may be a
    /// surrogate or above U+10FFFF: callers decide).
    fn parse_char(&mut self) -> Result<u32, GrammarError> {
        let start = self.pos;
        match self.bump() {
            None => Err(self.err(start, "unexpected end of the grammar")),
            Some('\\') => {
                let Some(e) = self.bump() else {
                    return Err(self.err(start, "unterminated escape at the end of the grammar"));
                };
                let digits = match e {
                    'n' => return Ok('\n' as u32),
                    'r' => return Ok('\r' as u32),
                    't' => return Ok('\t' as u32),
                    '\\' | '"' | '[' | ']' | '-' => return Ok(e as u32),
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    other => {
                        return Err(self.err(
                            start,
                            format!("unknown escape '\\{other}' (known: \\n \\r \\t \\\\ \\\" \\[ \\] \\- \\xHH \\uHHHH \\UHHHHHHHH)"),
                        ))
                    }
                };
                let mut value: u32 = 0;
                for _ in 0..digits {
                    match self.peek().and_then(|c| c.to_digit(16)) {
                        Some(d) => {
                            self.bump();
                            value = (value << 4) | d;
                        }
                        None => {
                            return Err(self.err(
                                start,
                                format!("bad escape: '\\{e}' needs {digits} hex digits"),
                            ))
                        }
                    }
                }
                Ok(value)
            }
            Some(c) => Ok(c as u32),
        }
    }

    fn parse_char_scalar(&mut self) -> Result<char, GrammarError> {
        let start = self.pos;
        let v = self.parse_char()?;
        char::from_u32(v).ok_or_else(|| {
            self.err(
                start,
                format!("bad escape: U+{v:X} is not a Unicode scalar value (a surrogate or above U+10FFFF), so it can never match"),
            )
        })
    }

    fn parse_class(&mut self) -> Result<Expr, GrammarError> {
        let start = self.pos;
        self.bump(); // '['
        let negated = if self.peek() == Some('^') {
            self.bump();
            true
        } else {
            false
        };
        let mut ranges = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err(start, "unterminated character class")),
                Some(']') => {
                    self.bump();
                    break;
                }
                Some(_) => {}
            }
            let lo_pos = self.pos;
            let lo = self.parse_char()?;
            if self.peek() == Some('-') && self.peek2().is_some_and(|c| c != ']') {
                self.bump();
                let hi = self.parse_char()?;
                if hi < lo {
                    return Err(self.err(
                        lo_pos,
                        format!("character range U+{lo:X}-U+{hi:X} is reversed"),
                    ));
                }
                // Keep the scalar values of the range: surrogates and values above U+10FFFF
                // cannot occur in text.
                for (a, b) in [(lo, hi.min(0xD7FF)), (lo.max(0xE000), hi.min(0x10FFFF))] {
                    if a <= b {
                        if let (Some(a), Some(b)) = (char::from_u32(a), char::from_u32(b)) {
                            ranges.push((a, b));
                        }
                    }
                }
            } else {
                match char::from_u32(lo) {
                    Some(c) => ranges.push((c, c)),
                    None => {
                        return Err(self.err(
                            lo_pos,
                            format!("bad escape: U+{lo:X} is not a Unicode scalar value (a surrogate or above U+10FFFF), so it can never match"),
                        ))
                    }
                }
            }
        }
        if ranges.is_empty() {
            return Err(self.err(start, "empty character class"));
        }
        Ok(Expr::Class { negated, ranges })
    }

    fn parse_token(&mut self) -> Result<Expr, GrammarError> {
        let start = self.pos;
        let negated = if self.peek() == Some('!') {
            self.bump();
            true
        } else {
            false
        };
        if self.peek() != Some('<') {
            return Err(self.err(
                self.pos,
                format!(
                    "expected '<' of a token reference, found {}",
                    show(self.peek())
                ),
            ));
        }
        self.bump();
        if self.peek() == Some('[') {
            self.bump();
            let digits_start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
            let digits = &self.src[digits_start..self.pos];
            let id: u32 = digits.parse().map_err(|_| {
                self.err(
                    digits_start,
                    "token reference <[id]>: expected a token id (a number below 2^32)",
                )
            })?;
            if !self.src[self.pos..].starts_with("]>") {
                return Err(self.err(
                    self.pos,
                    format!(
                        "token reference <[id]>: expected ']>', found {}",
                        show(self.peek())
                    ),
                ));
            }
            self.pos += 2;
            let neg = if negated { "^" } else { "" };
            return Ok(Expr::Token(format!("<[{neg}{id}]>")));
        }
        let text_start = self.pos;
        let Some(len) = self.src[self.pos..].find('>') else {
            return Err(self.err(start, "unterminated token reference (no closing '>')"));
        };
        let text = &self.src[text_start..text_start + len];
        self.pos = text_start + len + 1;
        if negated {
            return Err(self.err(
                start,
                format!("negated token by text '!<{text}>' cannot be converted: llguidance negates only token ids; write !<[id]>"),
            ));
        }
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c == '<') {
            return Err(self.err(
                start,
                format!("token reference '<{text}>' cannot be converted: llguidance token names have no spaces or '<'"),
            ));
        }
        Ok(Expr::Token(format!("<{text}>")))
    }
}

/// How many copies nested repetitions inside `e` make (used to bound their product).
fn repeat_weight(e: &Expr) -> u64 {
    match e {
        Expr::Repeat { inner, min, max } => {
            max.unwrap_or(*min).max(1) as u64 * repeat_weight(inner)
        }
        Expr::Group(alts) => alts.iter().flatten().map(repeat_weight).max().unwrap_or(1),
        _ => 1,
    }
}

// ---------------------------------------------------------------------------------------------
// Character sets (inclusive code-point ranges, sorted, disjoint)

#[derive(Debug, Clone, Default, PartialEq)]
struct CharSet(Vec<(u32, u32)>);

impl CharSet {
    fn all() -> Self {
        CharSet(vec![(0, 0x10FFFF)])
    }

    fn from_ranges(negated: bool, ranges: &[(char, char)]) -> Self {
        let mut s = CharSet::default();
        for &(a, b) in ranges {
            s.add(a as u32, b as u32);
        }
        if negated {
            s.complement()
        } else {
            s
        }
    }

    fn add(&mut self, a: u32, b: u32) {
        self.0.push((a, b));
        self.normalize();
    }

    fn normalize(&mut self) {
        self.0.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(self.0.len());
        for &(a, b) in &self.0 {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        self.0 = out;
    }

    fn union(&mut self, other: &CharSet) -> bool {
        let before = self.0.clone();
        self.0.extend_from_slice(&other.0);
        self.normalize();
        self.0 != before
    }

    fn complement(&self) -> CharSet {
        let mut out = Vec::new();
        let mut next = 0u32;
        for &(a, b) in &self.0 {
            if a > next {
                out.push((next, a - 1));
            }
            next = b.saturating_add(1);
        }
        if next <= 0x10FFFF {
            out.push((next, 0x10FFFF));
        }
        CharSet(out)
    }

    fn intersects(&self, other: &CharSet) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = self.0[i];
            let (c, d) = other.0[j];
            if b < c {
                i += 1;
            } else if d < a {
                j += 1;
            } else {
                return true;
            }
        }
        false
    }
}

/// What the lexer-boundary analysis knows about an expression, as a language over characters.
#[derive(Debug, Clone, Default)]
struct Info {
    nullable: bool,
    /// First characters of non-empty matches.
    first: CharSet,
    /// Every character that occurs in some match.
    chars: CharSet,
    /// Characters `c` with `w` and `wc…` both matches-or-prefixes: after a complete match the
    /// greedy lexer could keep going on `c`. Empty means prefix-free. Over-approximated.
    cont: CharSet,
}

// ---------------------------------------------------------------------------------------------
// Conversion

/// Rounds of the fixpoint computations (FIRST sets, FOLLOW sets) before giving up and assuming
/// the worst (every character), which only makes the translation more conservative.
const MAX_ROUNDS: usize = 200;

struct Converter<'a> {
    rules: &'a [Rule],
    index: HashMap<&'a str, usize>,
    regular: Vec<bool>,
    /// Per rule; exact for regular rules, nullable/first over-approximated for the others.
    info: Vec<Info>,
    /// Characters that can follow each non-regular rule.
    follow: Vec<CharSet>,
    /// Lark name of each rule (lowercase for rules, UPPERCASE for terminals).
    names: Vec<String>,
    /// Lark names of the character-level copies of regular rules, made on demand.
    char_names: Vec<Option<String>>,
    taken: HashSet<String>,
    /// Extra definitions: run terminals and character-level rules.
    extra: Vec<(String, String)>,
    /// Runs (address of their first item) to write at character level.
    char_mode: HashSet<usize>,
}

impl<'a> Converter<'a> {
    fn new(src: &'a str, rules: &'a [Rule]) -> Result<Self, GrammarError> {
        let mut index = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            index.insert(r.name.as_str(), i);
        }
        // Every reference must name a rule.
        let mut refs: Vec<Vec<usize>> = Vec::with_capacity(rules.len());
        let mut has_token = vec![false; rules.len()];
        for (i, r) in rules.iter().enumerate() {
            let mut out = Vec::new();
            let mut stack: Vec<&Expr> = r.alts.iter().flatten().collect();
            while let Some(e) = stack.pop() {
                match e {
                    Expr::Ref { name, pos } => match index.get(name.as_str()) {
                        Some(&j) => out.push(j),
                        None => {
                            return Err(err_at(
                                src,
                                *pos,
                                format!("undefined rule '{name}' (used in rule '{}')", r.name),
                            ))
                        }
                    },
                    Expr::Token(_) => has_token[i] = true,
                    Expr::Group(alts) => stack.extend(alts.iter().flatten()),
                    Expr::Repeat { inner, .. } => stack.push(inner),
                    _ => {}
                }
            }
            out.sort_unstable();
            out.dedup();
            refs.push(out);
        }
        if !index.contains_key("root") {
            return Err(err_at(src, src.len(), "the grammar has no 'root' rule"));
        }
        // Regular rules: no token references, and all references regular (rules on a cycle
        // never qualify). Worklist over reverse edges: linear, no recursion; the order in which
        // rules become regular is a topological order (references first).
        let mut pending: Vec<usize> = refs.iter().map(|r| r.len()).collect();
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); rules.len()];
        for (i, r) in refs.iter().enumerate() {
            for &j in r {
                users[j].push(i);
            }
        }
        let mut regular = vec![false; rules.len()];
        let mut topo = Vec::new();
        let mut work: Vec<usize> = (0..rules.len())
            .filter(|&i| pending[i] == 0 && !has_token[i])
            .collect();
        while let Some(i) = work.pop() {
            regular[i] = true;
            topo.push(i);
            for &u in &users[i] {
                pending[u] -= 1;
                if pending[u] == 0 && !has_token[u] {
                    work.push(u);
                }
            }
        }
        let mut conv = Converter {
            rules,
            index,
            regular,
            info: vec![Info::default(); rules.len()],
            follow: vec![CharSet::default(); rules.len()],
            names: Vec::new(),
            char_names: vec![None; rules.len()],
            taken: HashSet::new(),
            extra: Vec::new(),
            char_mode: HashSet::new(),
        };
        conv.compute_info(&topo);
        conv.compute_follow();
        conv.assign_names();
        Ok(conv)
    }

    fn rule_of(&self, name: &str) -> usize {
        self.index[name]
    }

    fn is_regular(&self, e: &Expr) -> bool {
        match e {
            Expr::Literal(_) | Expr::Class { .. } | Expr::Any => true,
            Expr::Ref { name, .. } => self.regular[self.rule_of(name)],
            Expr::Token(_) => false,
            Expr::Group(alts) => alts.iter().flatten().all(|e| self.is_regular(e)),
            Expr::Repeat { inner, .. } => self.is_regular(inner),
        }
    }

    // Analysis.

    fn compute_info(&mut self, topo: &[usize]) {
        // Nullable and FIRST of every rule: fixpoint.
        let mut converged = false;
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for i in 0..self.rules.len() {
                let new = self.alts_info(&self.rules[i].alts);
                let old = &mut self.info[i];
                if new.nullable && !old.nullable {
                    old.nullable = true;
                    changed = true;
                }
                changed |= old.first.union(&new.first);
            }
            if !changed {
                converged = true;
                break;
            }
        }
        if !converged {
            for info in &mut self.info {
                info.nullable = true;
                info.first = CharSet::all();
            }
        }
        for info in self.info.iter_mut() {
            info.chars = CharSet::all();
            info.cont = CharSet::all();
        }
        // Regular rules exactly, references first.
        for &i in topo {
            self.info[i] = self.alts_info(&self.rules[i].alts);
        }
    }

    fn expr_info(&self, e: &Expr) -> Info {
        match e {
            Expr::Literal(chars) => {
                let mut set = CharSet::default();
                for &c in chars {
                    set.0.push((c as u32, c as u32));
                }
                set.normalize();
                Info {
                    nullable: chars.is_empty(),
                    first: chars
                        .first()
                        .map_or(CharSet::default(), |&c| CharSet(vec![(c as u32, c as u32)])),
                    chars: set,
                    cont: CharSet::default(),
                }
            }
            Expr::Class { negated, ranges } => {
                let set = CharSet::from_ranges(*negated, ranges);
                Info {
                    nullable: false,
                    first: set.clone(),
                    chars: set,
                    cont: CharSet::default(),
                }
            }
            Expr::Any => Info {
                nullable: false,
                first: CharSet::all(),
                chars: CharSet::all(),
                cont: CharSet::default(),
            },
            Expr::Ref { name, .. } => self.info[self.rule_of(name)].clone(),
            Expr::Token(_) => Info::default(),
            Expr::Group(alts) => self.alts_info(alts),
            Expr::Repeat { inner, min, max } => {
                if *max == Some(0) {
                    return Info {
                        nullable: true,
                        ..Info::default()
                    };
                }
                let x = self.expr_info(inner);
                // As a sequence X X …: when X's own continuations never start another X,
                // each copy ends where the next begins.
                let cont = if !x.cont.intersects(&x.first) {
                    let mut c = x.cont.clone();
                    if *max != Some(*min) {
                        c.union(&x.first);
                    }
                    c
                } else {
                    x.chars.clone()
                };
                Info {
                    nullable: *min == 0 || x.nullable,
                    first: x.first,
                    chars: x.chars,
                    cont,
                }
            }
        }
    }

    fn seq_info(&self, seq: &[Expr]) -> Info {
        let mut acc = Info {
            nullable: true,
            ..Info::default()
        };
        let mut only_empty = true;
        for e in seq.iter().rev() {
            let x = self.expr_info(e);
            // X then the rest B: if no continuation of X can start B, the split of a match
            // between X and B is unique, and the match continues only as B does (or as X
            // does, when B matched nothing).
            let cont = if only_empty {
                x.cont.clone()
            } else if !x.cont.intersects(&acc.first) {
                let mut c = acc.cont.clone();
                if acc.nullable {
                    c.union(&x.cont);
                }
                c
            } else {
                let mut c = x.chars.clone();
                c.union(&acc.chars);
                c
            };
            let mut first = x.first.clone();
            if x.nullable {
                first.union(&acc.first);
            }
            let mut chars = x.chars;
            chars.union(&acc.chars);
            acc = Info {
                nullable: x.nullable && acc.nullable,
                first,
                chars,
                cont,
            };
            only_empty = false;
        }
        acc
    }

    fn alts_info(&self, alts: &[Vec<Expr>]) -> Info {
        let mut out = Info::default();
        let mut overlap = false;
        for seq in alts {
            let x = self.seq_info(seq);
            if out.first.intersects(&x.first) {
                overlap = true;
            }
            out.nullable |= x.nullable;
            out.first.union(&x.first);
            out.chars.union(&x.chars);
            out.cont.union(&x.cont);
        }
        // One alternative's match followed by more of another's.
        if out.nullable {
            let first = out.first.clone();
            out.cont.union(&first);
        }
        if overlap {
            let chars = out.chars.clone();
            out.cont.union(&chars);
        }
        out
    }

    /// The follow set of each item of `seq`, when `after` follows the whole sequence.
    fn item_follows(&self, seq: &[Expr], after: &CharSet) -> Vec<CharSet> {
        let mut out = vec![CharSet::default(); seq.len()];
        let mut acc = after.clone();
        for (i, e) in seq.iter().enumerate().rev() {
            out[i] = acc.clone();
            let x = self.expr_info(e);
            if x.nullable {
                acc.union(&x.first);
            } else {
                acc = x.first;
            }
        }
        out
    }

    fn compute_follow(&mut self) {
        let mut converged = false;
        for _ in 0..MAX_ROUNDS {
            let mut updates: Vec<(usize, CharSet)> = Vec::new();
            for i in 0..self.rules.len() {
                if self.regular[i] {
                    continue;
                }
                let after = self.follow[i].clone();
                for seq in &self.rules[i].alts {
                    self.follow_walk(seq, &after, &mut updates);
                }
            }
            let mut changed = false;
            for (j, set) in updates {
                changed |= self.follow[j].union(&set);
            }
            if !changed {
                converged = true;
                break;
            }
        }
        if !converged {
            for f in &mut self.follow {
                *f = CharSet::all();
            }
        }
    }

    fn follow_walk(&self, seq: &[Expr], after: &CharSet, out: &mut Vec<(usize, CharSet)>) {
        let follows = self.item_follows(seq, after);
        for (e, f) in seq.iter().zip(&follows) {
            self.follow_item(e, f, out);
        }
    }

    fn follow_item(&self, e: &Expr, f: &CharSet, out: &mut Vec<(usize, CharSet)>) {
        if self.is_regular(e) {
            return;
        }
        match e {
            Expr::Ref { name, .. } => out.push((self.rule_of(name), f.clone())),
            Expr::Group(alts) => {
                for seq in alts {
                    self.follow_walk(seq, f, out);
                }
            }
            Expr::Repeat { inner, max, .. } => {
                let mut f = f.clone();
                if max.is_none_or(|m| m > 1) {
                    f.union(&self.expr_info(inner).first);
                }
                self.follow_item(inner, &f, out);
            }
            _ => {}
        }
    }

    // Names.

    fn fresh(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut n = 2;
        while self.taken.contains(&name.to_ascii_lowercase()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.taken.insert(name.to_ascii_lowercase());
        name
    }

    fn assign_names(&mut self) {
        self.taken.insert("start".to_string());
        self.taken.insert("root".to_string());
        for i in 0..self.rules.len() {
            let r = &self.rules[i];
            let name = if r.name == "root" {
                if self.regular[i] {
                    "ROOT".to_string()
                } else {
                    "start".to_string()
                }
            } else {
                let mut base = if self.regular[i] {
                    r.name.to_ascii_uppercase()
                } else {
                    r.name.to_ascii_lowercase()
                };
                if !base.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    base = if self.regular[i] {
                        format!("R_{base}")
                    } else {
                        format!("r_{base}")
                    };
                }
                self.fresh(base)
            };
            self.names.push(name);
        }
    }

    // Output.

    fn emit(mut self) -> Result<String, GrammarError> {
        // Emit only what `root` reaches.
        let root = self.rule_of("root");
        let mut reach = vec![false; self.rules.len()];
        let mut order = Vec::new();
        let mut stack = vec![root];
        reach[root] = true;
        while let Some(i) = stack.pop() {
            order.push(i);
            let mut exprs: Vec<&Expr> = self.rules[i].alts.iter().flatten().collect();
            while let Some(e) = exprs.pop() {
                match e {
                    Expr::Ref { name, .. } => {
                        let j = self.rule_of(name);
                        if !reach[j] {
                            reach[j] = true;
                            stack.push(j);
                        }
                    }
                    Expr::Group(alts) => exprs.extend(alts.iter().flatten()),
                    Expr::Repeat { inner, .. } => exprs.push(inner),
                    _ => {}
                }
            }
        }
        order.sort_unstable();
        self.plan_lexemes(&reach);
        let mut out = String::from("// converted from GBNF\n");
        if self.regular[root] {
            out.push_str("start: ROOT\n");
        }
        let rules = self.rules;
        for i in order {
            let rule = &rules[i];
            let body = if self.regular[i] {
                self.terminal_alts(&rule.alts)
            } else {
                let after = self.follow[i].clone();
                self.rule_alts(&rule.alts, &after)
            };
            out.push_str(&format!("{}: {}\n", self.names[i], body));
        }
        for (name, body) in &self.extra {
            out.push_str(&format!("{name}: {body}\n"));
        }
        Ok(out)
    }

    // Terminal (regex) context.

    fn terminal_alts(&self, alts: &[Vec<Expr>]) -> String {
        alts.iter()
            .map(|seq| self.terminal_seq(seq))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn terminal_seq(&self, seq: &[Expr]) -> String {
        if seq.is_empty() {
            return "\"\"".to_string();
        }
        seq.iter()
            .map(|e| self.terminal_item(e))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn terminal_item(&self, e: &Expr) -> String {
        match e {
            Expr::Literal(chars) => lark_string(chars),
            Expr::Class { negated, ranges } => class_regex(*negated, ranges),
            Expr::Any => "/(?s:.)/".to_string(),
            Expr::Ref { name, .. } => self.names[self.rule_of(name)].clone(),
            Expr::Token(t) => t.clone(), // not reached: tokens are never regular
            Expr::Group(alts) => format!("({})", self.terminal_alts(alts)),
            Expr::Repeat { inner, min, max } => {
                repeat(self.terminal_item(inner), inner, *min, *max)
            }
        }
    }

    // Rule context: each run of regular items becomes one terminal, unless the greedy lexer
    // could run past its end into what follows; then it is spelled out character by character.

    fn rule_alts(&mut self, alts: &[Vec<Expr>], after: &CharSet) -> String {
        alts.iter()
            .map(|seq| self.rule_seq(seq, after))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn rule_seq(&mut self, seq: &[Expr], after: &CharSet) -> String {
        if seq.is_empty() {
            return "\"\"".to_string();
        }
        let follows = self.item_follows(seq, after);
        let mut parts = Vec::new();
        let mut i = 0;
        while i < seq.len() {
            if self.is_regular(&seq[i]) {
                let mut j = i;
                while j < seq.len() && self.is_regular(&seq[j]) {
                    j += 1;
                }
                let run = &seq[i..j];
                if self.char_mode.contains(&(run.as_ptr() as usize)) {
                    let s = run
                        .iter()
                        .map(|e| self.char_item(e))
                        .collect::<Vec<_>>()
                        .join(" ");
                    parts.push(s);
                } else {
                    parts.push(self.chunk(run));
                }
                i = j;
            } else {
                let s = self.rule_item(&seq[i], &follows[i]);
                parts.push(s);
                i += 1;
            }
        }
        parts.join(" ")
    }

    fn chunk(&mut self, run: &[Expr]) -> String {
        if let [single] = run {
            match single {
                Expr::Literal(_) | Expr::Class { .. } | Expr::Any | Expr::Ref { .. } => {
                    return self.terminal_item(single)
                }
                _ => {}
            }
        }
        let body = self.terminal_seq(run);
        let name = self.fresh(format!("C_{}", self.extra.len() + 1));
        self.extra.push((name.clone(), body));
        name
    }

    fn rule_item(&mut self, e: &Expr, follow: &CharSet) -> String {
        match e {
            Expr::Ref { name, .. } => self.names[self.rule_of(name)].clone(),
            Expr::Token(t) => t.clone(),
            Expr::Group(alts) => format!("({})", self.rule_alts(alts, follow)),
            Expr::Repeat { inner, min, max } => {
                let mut f = follow.clone();
                if max.is_none_or(|m| m > 1) {
                    f.union(&self.expr_info(inner).first);
                }
                let s = if self.is_regular(inner) {
                    self.rule_seq(std::slice::from_ref(inner.as_ref()), &f)
                } else {
                    self.rule_item(inner, &f)
                };
                let s = if matches!(inner.as_ref(), Expr::Group(_)) && !s.starts_with('(') {
                    format!("({s})")
                } else {
                    s
                };
                repeat(s, inner, *min, *max)
            }
            other => self.terminal_item(other),
        }
    }

    /// Character level: one lexeme per character or class, regular rules as Lark rules.
    fn char_item(&mut self, e: &Expr) -> String {
        match e {
            Expr::Ref { name, .. } => {
                let i = self.rule_of(name);
                if let Some(n) = &self.char_names[i] {
                    return n.clone();
                }
                let mut base = format!("{}_chars", self.rules[i].name.to_ascii_lowercase());
                if !base.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    base = format!("r_{base}");
                }
                let n = self.fresh(base);
                self.char_names[i] = Some(n.clone());
                let rules = self.rules;
                let body = rules[i]
                    .alts
                    .iter()
                    .map(|seq| {
                        if seq.is_empty() {
                            "\"\"".to_string()
                        } else {
                            seq.iter()
                                .map(|e| self.char_item(e))
                                .collect::<Vec<_>>()
                                .join(" ")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" | ");
                self.extra.push((n.clone(), body));
                n
            }
            Expr::Group(alts) => {
                let body = alts
                    .iter()
                    .map(|seq| {
                        if seq.is_empty() {
                            "\"\"".to_string()
                        } else {
                            seq.iter()
                                .map(|e| self.char_item(e))
                                .collect::<Vec<_>>()
                                .join(" ")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" | ");
                format!("({body})")
            }
            Expr::Repeat { inner, min, max } => {
                let s = self.char_item(inner);
                repeat(s, inner, *min, *max)
            }
            Expr::Literal(chars) if chars.len() > 1 => {
                let s = chars
                    .iter()
                    .map(|&c| lark_string(&[c]))
                    .collect::<Vec<_>>()
                    .join(" ");
                format!("({s})")
            }
            other => self.terminal_item(other),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexeme planning: which runs of regular items may stay one lexeme

/// Most lexeme occurrences analysed pairwise; above it every run is written at character level.
const MAX_OCCURRENCES: usize = 2000;
/// Most pairs of lexemes checked with derivre; above it the remaining pairs count as conflicts.
const MAX_PAIR_CHECKS: usize = 20_000;
/// derivre's budget for one emptiness check; running out counts as a conflict.
const DERIVRE_FUEL: u64 = 200_000;
/// Longest regex written for one lexeme; longer counts as a conflict.
const MAX_REGEX_LEN: usize = 200_000;

/// A lexeme occurrence in a non-regular rule: a run of regular items, or a token reference.
struct Occurrence<'e> {
    run: &'e [Expr],
    is_token: bool,
    /// Characters that can follow the lexeme.
    follow: CharSet,
    /// Lexeme occurrences that can come right after it.
    next: Vec<usize>,
}

struct Planner<'c, 'a> {
    conv: &'c Converter<'a>,
    occ: Vec<Occurrence<'a>>,
    by_ptr: HashMap<usize, usize>,
    /// Per rule: lexemes that can start it, lexemes that can follow it.
    first_lex: Vec<Vec<usize>>,
    follow_lex: Vec<Vec<usize>>,
}

fn merge(into: &mut Vec<usize>, from: &[usize]) -> bool {
    let before = into.len();
    into.extend_from_slice(from);
    into.sort_unstable();
    into.dedup();
    into.len() != before
}

impl<'c, 'a> Planner<'c, 'a> {
    /// Lexeme occurrences of a sequence, in order: (start index, end index) of each run, and
    /// single non-regular items as (i, i + 1) with a flag saying whether it is a run.
    fn pieces(&self, seq: &[Expr]) -> Vec<(usize, usize, bool)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < seq.len() {
            if self.conv.is_regular(&seq[i]) {
                let mut j = i;
                while j < seq.len() && self.conv.is_regular(&seq[j]) {
                    j += 1;
                }
                out.push((i, j, true));
                i = j;
            } else {
                out.push((i, i + 1, false));
                i += 1;
            }
        }
        out
    }

    fn collect(&mut self, seq: &'a [Expr]) {
        for (i, j, is_run) in self.pieces(seq) {
            if is_run {
                let id = self.occ.len();
                self.by_ptr.insert(&seq[i] as *const Expr as usize, id);
                self.occ.push(Occurrence {
                    run: &seq[i..j],
                    is_token: false,
                    follow: CharSet::default(),
                    next: Vec::new(),
                });
            } else {
                self.collect_item(&seq[i]);
            }
        }
    }

    fn collect_item(&mut self, e: &'a Expr) {
        match e {
            Expr::Token(_) => {
                let id = self.occ.len();
                self.by_ptr.insert(e as *const Expr as usize, id);
                self.occ.push(Occurrence {
                    run: std::slice::from_ref(e),
                    is_token: true,
                    follow: CharSet::default(),
                    next: Vec::new(),
                });
            }
            Expr::Group(alts) => {
                for seq in alts {
                    self.collect(seq);
                }
            }
            Expr::Repeat { inner, .. } => {
                if self.conv.is_regular(inner) {
                    self.collect(std::slice::from_ref(inner.as_ref()));
                } else {
                    self.collect_item(inner);
                }
            }
            _ => {}
        }
    }

    fn id_of(&self, e: &Expr) -> usize {
        self.by_ptr[&(e as *const Expr as usize)]
    }

    /// Lexemes that can start `seq`, and whether it can match nothing.
    fn first_of_seq(&self, seq: &[Expr]) -> (Vec<usize>, bool) {
        let mut out = Vec::new();
        for (i, j, is_run) in self.pieces(seq) {
            let (f, nullable) = if is_run {
                (
                    vec![self.id_of(&seq[i])],
                    self.conv.seq_info(&seq[i..j]).nullable,
                )
            } else {
                self.first_of_item(&seq[i])
            };
            merge(&mut out, &f);
            if !nullable {
                return (out, false);
            }
        }
        (out, true)
    }

    fn first_of_item(&self, e: &Expr) -> (Vec<usize>, bool) {
        match e {
            Expr::Ref { name, .. } => {
                let r = self.conv.rule_of(name);
                (self.first_lex[r].clone(), self.conv.info[r].nullable)
            }
            Expr::Token(_) => (vec![self.id_of(e)], false),
            Expr::Group(alts) => {
                let mut out = Vec::new();
                let mut nullable = false;
                for seq in alts {
                    let (f, n) = self.first_of_seq(seq);
                    merge(&mut out, &f);
                    nullable |= n;
                }
                (out, nullable)
            }
            Expr::Repeat { inner, min, max } => {
                if *max == Some(0) {
                    return (Vec::new(), true);
                }
                let (f, n) = if self.conv.is_regular(inner) {
                    self.first_of_seq(std::slice::from_ref(inner.as_ref()))
                } else {
                    self.first_of_item(inner)
                };
                (f, n || *min == 0)
            }
            _ => (Vec::new(), true),
        }
    }

    /// Walks `seq` followed by (`after_lex`, `after_chars`), recording follow sets of rules
    /// (returned as updates) and, when `record`, of lexeme occurrences.
    fn walk(
        &mut self,
        seq: &[Expr],
        after_lex: &[usize],
        after_chars: &CharSet,
        record: bool,
        updates: &mut Vec<(usize, Vec<usize>)>,
    ) {
        let pieces = self.pieces(seq);
        let char_follows = self.conv.item_follows(seq, after_chars);
        // Lexemes that can follow each piece.
        let mut lex_follows = vec![Vec::new(); pieces.len()];
        let mut acc = after_lex.to_vec();
        for (k, &(i, j, is_run)) in pieces.iter().enumerate().rev() {
            lex_follows[k] = acc.clone();
            let (f, nullable) = if is_run {
                (
                    vec![self.id_of(&seq[i])],
                    self.conv.seq_info(&seq[i..j]).nullable,
                )
            } else {
                self.first_of_item(&seq[i])
            };
            if nullable {
                merge(&mut acc, &f);
            } else {
                acc = f;
            }
        }
        for (k, &(i, j, is_run)) in pieces.iter().enumerate() {
            let chars = &char_follows[j - 1];
            if is_run {
                if record {
                    let id = self.id_of(&seq[i]);
                    merge(&mut self.occ[id].next, &lex_follows[k]);
                    self.occ[id].follow.union(chars);
                }
            } else {
                self.walk_item(&seq[i], &lex_follows[k], chars, record, updates);
            }
        }
    }

    fn walk_item(
        &mut self,
        e: &Expr,
        after_lex: &[usize],
        after_chars: &CharSet,
        record: bool,
        updates: &mut Vec<(usize, Vec<usize>)>,
    ) {
        match e {
            Expr::Ref { name, .. } => updates.push((self.conv.rule_of(name), after_lex.to_vec())),
            Expr::Token(_) if record => {
                let id = self.id_of(e);
                merge(&mut self.occ[id].next, after_lex);
            }
            Expr::Group(alts) => {
                for seq in alts {
                    self.walk(seq, after_lex, after_chars, record, updates);
                }
            }
            Expr::Repeat { inner, max, .. } => {
                let mut lex = after_lex.to_vec();
                let mut chars = after_chars.clone();
                if max.is_none_or(|m| m > 1) {
                    let (f, _) = self.first_of_item(e);
                    merge(&mut lex, &f);
                    chars.union(&self.conv.expr_info(inner).first);
                }
                if self.conv.is_regular(inner) {
                    self.walk(
                        std::slice::from_ref(inner.as_ref()),
                        &lex,
                        &chars,
                        record,
                        updates,
                    );
                } else {
                    self.walk_item(inner, &lex, &chars, record, updates);
                }
            }
            _ => {}
        }
    }

    /// Can the greedy lexer, having matched `a` completely, run on into `b` with a character
    /// that could also start what follows `a`? Precise (derivre) where the budget allows.
    fn overruns(&self, a: &[Expr], b: &[Expr], follow: &CharSet) -> bool {
        if follow.0.is_empty() {
            return false;
        }
        let ia = self.conv.seq_info(a);
        let ib = self.conv.seq_info(b);
        if !ia.nullable && !ia.first.intersects(&ib.first) {
            return false;
        }
        let (Some(ra), Some(rb)) = (self.conv.regex_of(a), self.conv.regex_of(b)) else {
            return true;
        };
        let mut f = String::from("[");
        for &(lo, hi) in &follow.0 {
            for c in [lo, hi] {
                f.push_str(&format!("\\x{{{c:X}}}"));
                if lo == hi {
                    break;
                }
                if c == lo {
                    f.push('-');
                }
            }
        }
        f.push(']');
        let longer = format!("(?:{ra}){f}(?s:.)*");
        let mut builder = llguidance::derivre::RegexBuilder::new();
        let Ok(e) = builder.mk_regex_and(&[rb.as_str(), longer.as_str()]) else {
            return true;
        };
        match builder.into_regex_limited(e, DERIVRE_FUEL) {
            Ok(mut rx) => !rx.always_empty(),
            Err(_) => true,
        }
    }
}

/// A run that can only ever match one character.
fn single_char(run: &[Expr]) -> bool {
    matches!(run, [Expr::Class { .. } | Expr::Any])
        || matches!(run, [Expr::Literal(c)] if c.len() == 1)
}

impl Converter<'_> {
    /// The regex (Rust syntax) of a run of regular items, or None when it would be too long.
    fn regex_of(&self, run: &[Expr]) -> Option<String> {
        let mut out = String::new();
        for e in run {
            self.regex_item(e, &mut out)?;
        }
        Some(out)
    }

    fn regex_item(&self, e: &Expr, out: &mut String) -> Option<()> {
        if out.len() > MAX_REGEX_LEN {
            return None;
        }
        match e {
            Expr::Literal(chars) => {
                for &c in chars {
                    regex_char(c, out);
                }
            }
            Expr::Class { negated, ranges } => {
                let s = class_regex(*negated, ranges);
                out.push_str(&s[1..s.len() - 1]);
            }
            Expr::Any => out.push_str("(?s:.)"),
            Expr::Ref { name, .. } => {
                out.push_str("(?:");
                self.regex_alts(&self.rules[self.rule_of(name)].alts, out)?;
                out.push(')');
            }
            Expr::Token(_) => return None,
            Expr::Group(alts) => {
                out.push_str("(?:");
                self.regex_alts(alts, out)?;
                out.push(')');
            }
            Expr::Repeat { inner, min, max } => {
                out.push_str("(?:");
                self.regex_item(inner, out)?;
                out.push(')');
                match max {
                    None => out.push_str(&format!("{{{min},}}")),
                    Some(m) => out.push_str(&format!("{{{min},{m}}}")),
                }
            }
        }
        Some(())
    }

    fn regex_alts(&self, alts: &[Vec<Expr>], out: &mut String) -> Option<()> {
        for (k, seq) in alts.iter().enumerate() {
            if k > 0 {
                out.push('|');
            }
            for e in seq {
                self.regex_item(e, out)?;
            }
        }
        Some(())
    }

    /// Decides which runs are written at character level (keys: address of the run's first
    /// item). A run goes to character level when the greedy lexer could overrun its end: into
    /// itself (it can continue with a character that could begin what follows), or into
    /// another lexeme allowed at the same point.
    fn plan_lexemes(&mut self, reach: &[bool]) {
        let mut p = Planner {
            conv: self,
            occ: Vec::new(),
            by_ptr: HashMap::new(),
            first_lex: vec![Vec::new(); self.rules.len()],
            follow_lex: vec![Vec::new(); self.rules.len()],
        };
        let rules = self.rules;
        for (i, rule) in rules.iter().enumerate() {
            if reach[i] && !self.regular[i] {
                for seq in &rule.alts {
                    p.collect(seq);
                }
            }
        }
        let n = p.occ.len();
        let all_runs = |p: &Planner| -> HashSet<usize> {
            p.occ
                .iter()
                .filter(|o| !o.is_token)
                .map(|o| o.run.as_ptr() as usize)
                .collect()
        };
        if n > MAX_OCCURRENCES {
            self.char_mode = all_runs(&p);
            return;
        }
        // Lexemes that can start each rule: fixpoint.
        let mut converged = false;
        for _ in 0..MAX_ROUNDS {
            let mut changed = false;
            for i in 0..rules.len() {
                if !reach[i] || self.regular[i] {
                    continue;
                }
                let mut f = Vec::new();
                for seq in &rules[i].alts {
                    merge(&mut f, &p.first_of_seq(seq).0);
                }
                changed |= merge(&mut p.first_lex[i], &f);
            }
            if !changed {
                converged = true;
                break;
            }
        }
        // Lexemes that can follow each rule: fixpoint, then one recording pass.
        for round in 0..=MAX_ROUNDS {
            let record = converged || round == MAX_ROUNDS;
            let mut updates = Vec::new();
            for i in 0..rules.len() {
                if !reach[i] || self.regular[i] {
                    continue;
                }
                let after = p.follow_lex[i].clone();
                let chars = self.follow[i].clone();
                for seq in &rules[i].alts {
                    p.walk(seq, &after, &chars, record, &mut updates);
                }
            }
            if record {
                break;
            }
            let mut changed = false;
            for (r, set) in updates {
                changed |= merge(&mut p.follow_lex[r], &set);
            }
            if !changed {
                converged = true;
            }
        }
        if !converged {
            self.char_mode = all_runs(&p);
            return;
        }
        // Groups of lexemes allowed at the same point: what can start the grammar, and what can
        // follow each lexeme.
        let root = self.rule_of("root");
        let mut groups: Vec<Vec<usize>> = vec![p.first_lex[root].clone()];
        groups.extend(p.occ.iter().map(|o| o.next.clone()));
        let mut char_mode: HashSet<usize> = HashSet::new();
        let mut checks = 0usize;
        let mut checked: HashMap<(usize, usize), bool> = HashMap::new();
        // Overrun into itself.
        for (id, o) in p.occ.iter().enumerate() {
            if o.is_token {
                continue;
            }
            let cont = self.seq_info(o.run).cont;
            if cont.intersects(&o.follow) && p.overruns(o.run, o.run, &o.follow) {
                char_mode.insert(id);
            }
        }
        // Overrun into a sibling, until nothing changes.
        loop {
            let mut changed = false;
            for g in &groups {
                for &a in g {
                    for &b in g {
                        if a == b || p.occ[a].is_token || p.occ[b].is_token {
                            continue;
                        }
                        if char_mode.contains(&b) || single_char(p.occ[b].run) {
                            continue;
                        }
                        let hazard = if char_mode.contains(&a) {
                            // `a` is one-character lexemes now: `b` starting like `a` may
                            // run on past `a`'s first character.
                            let ia = self.seq_info(p.occ[a].run);
                            ia.first.intersects(&self.seq_info(p.occ[b].run).first)
                        } else if let Some(&h) = checked.get(&(a, b)) {
                            h
                        } else {
                            checks += 1;
                            let h = checks > MAX_PAIR_CHECKS
                                || p.overruns(p.occ[a].run, p.occ[b].run, &p.occ[a].follow);
                            checked.insert((a, b), h);
                            h
                        };
                        if hazard {
                            char_mode.insert(b);
                            changed = true;
                        }
                    }
                }
            }
            // Lexemes right after a character-level run are allowed together with the pieces
            // that continue it.
            for a in 0..n {
                if !char_mode.contains(&a) {
                    continue;
                }
                let ia = self.seq_info(p.occ[a].run);
                for &b in &p.occ[a].next {
                    if p.occ[b].is_token || char_mode.contains(&b) || single_char(p.occ[b].run) {
                        continue;
                    }
                    if ia.cont.intersects(&self.seq_info(p.occ[b].run).first) {
                        char_mode.insert(b);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        self.char_mode = char_mode
            .into_iter()
            .map(|id| p.occ[id].run.as_ptr() as usize)
            .collect();
    }
}

fn repeat(s: String, inner: &Expr, min: u32, max: Option<u32>) -> String {
    if max == Some(0) {
        return "\"\"".to_string();
    }
    let atom = match inner {
        Expr::Group(_) => s,
        _ => format!("({s})"),
    };
    match (min, max) {
        (0, None) => format!("{atom}*"),
        (1, None) => format!("{atom}+"),
        (0, Some(1)) => format!("{atom}?"),
        (m, None) => format!("{atom}{{{m},}}"),
        (m, Some(n)) if m == n => format!("{atom}{{{m}}}"),
        (m, Some(n)) => format!("{atom}{{{m},{n}}}"),
    }
}

/// A Lark string literal (JSON escapes; control characters as `\uXXXX`).
fn lark_string(chars: &[char]) -> String {
    let mut s = String::from("\"");
    for &c in chars {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                s.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn regex_char(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        out.push_str(&format!("\\x{{{:X}}}", c as u32));
    }
}

fn class_regex(negated: bool, ranges: &[(char, char)]) -> String {
    let mut s = String::from("/[");
    if negated {
        s.push('^');
    }
    for &(a, b) in ranges {
        regex_char(a, &mut s);
        if a != b {
            s.push('-');
            regex_char(b, &mut s);
        }
    }
    s.push_str("]/");
    s
}

#[cfg(test)]
mod tests;
