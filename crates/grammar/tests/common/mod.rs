//! A byte-level tokenizer environment and helpers that drive an llguidance matcher byte by byte.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};

/// Token ids 0..=255 are the single bytes; then one special token `<|special|>`; the last id is
/// EOS (`<|eos|>`). Special tokens are marked with a leading 0xFF byte, as toktrie expects.
pub const SPECIAL: u32 = 256;
pub const EOS: u32 = 257;

pub fn tok_env() -> TokEnv {
    let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    words.push(b"\xFF<|special|>".to_vec());
    words.push(b"\xFF<|eos|>".to_vec());
    let info = TokRxInfo::new(words.len() as u32, EOS);
    Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)))
}

pub fn factory() -> &'static ParserFactory {
    static F: OnceLock<ParserFactory> = OnceLock::new();
    F.get_or_init(|| {
        let mut f = ParserFactory::new_simple(&tok_env()).expect("parser factory");
        f.set_stderr_log_level(0);
        f
    })
}

/// Compiles a grammar into a matcher; the error is llguidance's message.
pub fn matcher(grammar: TopLevelGrammar) -> Result<Matcher, String> {
    let parser = factory()
        .create_parser(grammar)
        .map_err(|e| format!("{e:#}"))?;
    let m = Matcher::new(Ok(parser));
    match m.get_error() {
        Some(e) => Err(e),
        None => Ok(m),
    }
}

/// Feeds `input` one byte token at a time, checking each against the mask, then checks that
/// EOS is allowed. Ok means the whole string is in the language.
pub fn run(m: &mut Matcher, input: &[u8]) -> Result<(), String> {
    for (i, &b) in input.iter().enumerate() {
        if m.is_stopped() {
            return Err(format!(
                "the grammar is finished after {:?}, byte {i} is too many",
                String::from_utf8_lossy(&input[..i])
            ));
        }
        let mask = m.compute_mask().map_err(|e| format!("{e:#}"))?;
        if !mask.is_allowed(b as u32) {
            return Err(format!(
                "byte {i} ({:?}) is not allowed after {:?}",
                b as char,
                String::from_utf8_lossy(&input[..i])
            ));
        }
        m.consume_token(b as u32).map_err(|e| format!("{e:#}"))?;
    }
    let mask = m.compute_mask_or_eos().map_err(|e| format!("{e:#}"))?;
    if !mask.is_allowed(EOS) {
        return Err(format!(
            "EOS is not allowed after the whole input {:?}",
            String::from_utf8_lossy(input)
        ));
    }
    Ok(())
}

/// Compiles `grammar` freshly and runs `input` through it.
pub fn accepts(grammar: &TopLevelGrammar, input: &[u8]) -> Result<(), String> {
    let mut m = matcher(grammar.clone())?;
    run(&mut m, input)
}
