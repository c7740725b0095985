//! Fuzz target: the whole load path on a tiny valid model whose *metadata* the input edits.
//!
//! The base is `testdata/tiny/llama/model.f16.gguf` (the smallest tiny model, embedded). The
//! input is a list of edits, each `[key][op][payload...]`: `key` picks one of [`KEYS`] (hyper-
//! parameters under the current architecture's prefix, tokenizer arrays and ids, the chat
//! template, ...), `op` what to do to it (remove it, set a number / string / bool of some type,
//! change, drop, duplicate or append an array element, switch the architecture, build a chat
//! template from Jinja pieces). The edited metadata and the unchanged tensors are written back
//! with `gguf::GgufWriter`, then everything a load does runs: `gguf` parses the file,
//! `tokenizer::Tokenizer::from_gguf` builds the vocabulary and encodes / decodes a short text,
//! `engine::ChatTemplate` renders the template (as `lume chat` and the server do), and
//! `model::Model::from_gguf` reads the hyper-parameters and tensors; the KV cache is then
//! allocated as the engine does and the encoded text goes through one forward pass.
//!
//! Any `Err` is fine; a panic, an abort, running out of memory or time is a bug.
#![no_main]

use std::sync::OnceLock;

use engine::{ChatMessage, ChatTemplate};
use gguf::{GgmlType, GgufFile, GgufWriter, Value, ValueType};
use libfuzzer_sys::fuzz_target;
use model::{Batch, KvType, Model};
use tokenizer::Tokenizer;

static MODEL: &[u8] = include_bytes!("../../testdata/tiny/llama/model.f16.gguf");

/// Keys the edits address. A leading `.` means "under the architecture's prefix"
/// (`general.architecture`, `llama` in the base file).
const KEYS: &[&str] = &[
    ".block_count",
    ".context_length",
    ".embedding_length",
    ".feed_forward_length",
    ".attention.head_count",
    ".attention.head_count_kv",
    ".attention.key_length",
    ".attention.value_length",
    ".attention.layer_norm_rms_epsilon",
    ".attention.layer_norm_epsilon",
    ".attention.sliding_window",
    ".rope.dimension_count",
    ".rope.freq_base",
    ".rope.freq_base_swa",
    ".rope.scaling.type",
    ".rope.scaling.factor",
    ".vocab_size",
    ".expert_count",
    ".expert_used_count",
    ".expert_feed_forward_length",
    ".expert_weights_norm",
    ".attn_logit_softcapping",
    ".final_logit_softcapping",
    "general.architecture",
    "general.name",
    "general.alignment",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.seperator_token_id",
    "tokenizer.ggml.mask_token_id",
    "tokenizer.ggml.fim_pre_token_id",
    "tokenizer.ggml.fim_suf_token_id",
    "tokenizer.ggml.fim_mid_token_id",
    "tokenizer.ggml.fim_pad_token_id",
    "tokenizer.ggml.fim_rep_token_id",
    "tokenizer.ggml.fim_sep_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.chat_template",
];

/// Strings worth trying whole: architectures, tokenizer models, pre-tokenizers, RoPE scaling
/// types, special-token texts, malformed merges.
const WORDS: &[&str] = &[
    "llama",
    "qwen2",
    "qwen3",
    "qwen3moe",
    "phi3",
    "gemma2",
    "gemma3",
    "olmo2",
    "gpt2",
    "starcoder2",
    "mixtral",
    "bert",
    "spm",
    "default",
    "gpt-2",
    "llama-bpe",
    "llama3",
    "smollm",
    "none",
    "linear",
    "yarn",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<s>",
    "</s>",
    "<unk>",
    "<0x0A>",
    "<0xFF>",
    "▁",
    "Ġ",
    "h e",
    "a  b",
    " ",
    "",
    "Ġ t",
    "e l",
];

const FLOATS: &[f32] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    1e-6,
    1e-30,
    1e6,
    1e30,
    10000.0,
    f32::MAX,
    f32::MIN_POSITIVE,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
];

/// Pieces chat templates are made of.
const JINJA: &[&str] = &[
    "{% for message in messages %}",
    "{% endfor %}",
    "{% if add_generation_prompt %}",
    "{% if loop.first %}",
    "{% elif message['role'] == 'system' %}",
    "{% else %}",
    "{% endif %}",
    "{{ message['content'] }}",
    "{{ message.role }}",
    "{{ messages[0]['content'] | trim }}",
    "{{ '<|im_start|>' + message['role'] + '\n' }}",
    "{{ bos_token }}",
    "{{ eos_token }}",
    "{{ raise_exception('bad role') }}",
    "{{ message | tojson }}",
    "{{ message.content.strip() }}",
    "{{ message.content.split(' ') | length }}",
    "{% set ns = namespace(x=0) %}",
    "{% set ns.x = ns.x + 1 %}",
    "{% for i in range(10) %}",
    "{% for i in range(100000) %}",
    "{{ 'ab' * 1000 }}",
    "{{ messages | length }}",
    "{{ tools }}",
    "{% macro m(x) %}{{ x }}{% endmacro %}{{ m(1) }}",
    "{%- if true -%}",
    "{{",
    "}}",
    "{%",
    "%}",
    "text\n",
    "{# comment #}",
    "{% break %}",
    "{% continue %}",
    "{{ loop.index }}",
];

/// The base file: its metadata, and its tensors (name, shape, type, bytes).
struct Base {
    meta: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        // One worker: the fuzzer runs on one core.
        kernels::set_num_threads(1);
        let f = GgufFile::from_bytes("base.gguf", MODEL.to_vec()).expect("the base parses");
        let tensors = f
            .tensors
            .iter()
            .map(|t| {
                let data = f.tensor_data(t).to_vec();
                (t.name.clone(), t.dims.clone(), t.ty, data)
            })
            .collect();
        Base {
            meta: f.metadata.clone(),
            tensors,
        }
    })
}

/// The fuzz input, read front to back; past the end everything reads as zero.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// A short string: a length byte (at most 63) and that many bytes, lossily UTF-8.
    fn string(&mut self) -> String {
        let n = (self.u8() & 63) as usize;
        let n = n.min(self.data.len());
        let (s, rest) = self.data.split_at(n);
        self.data = rest;
        String::from_utf8_lossy(s).into_owned()
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.u8() as usize % items.len()]
    }
}

/// A scalar value of the type `ty` (strings and arrays become strings), from the input.
fn scalar(ty: ValueType, inp: &mut Input) -> Value {
    let x = inp.u32();
    match ty {
        ValueType::U8 => Value::U8(x as u8),
        ValueType::I8 => Value::I8(x as i8),
        ValueType::U16 => Value::U16(x as u16),
        ValueType::I16 => Value::I16(x as i16),
        ValueType::U32 => Value::U32(x),
        ValueType::I32 => Value::I32(x as i32),
        ValueType::U64 => Value::U64(x as u64 | ((x as u64) << 40)),
        ValueType::I64 => Value::I64(-(x as i64)),
        ValueType::F32 => Value::F32(f32::from_bits(x)),
        ValueType::F64 => Value::F64(f32::from_bits(x) as f64),
        ValueType::Bool => Value::Bool(x & 1 == 1),
        ValueType::String | ValueType::Array => Value::String(inp.string()),
    }
}

const TYPES: &[ValueType] = &[
    ValueType::U8,
    ValueType::I8,
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::U64,
    ValueType::I64,
    ValueType::F32,
    ValueType::F64,
    ValueType::Bool,
    ValueType::String,
];

/// An element for an array of `ty`: mostly of that type, sometimes a word or another type.
fn element(ty: ValueType, inp: &mut Input) -> Value {
    match inp.u8() % 8 {
        0 => Value::String(inp.pick(WORDS).to_string()),
        1 => scalar(inp.pick(TYPES), inp),
        _ => scalar(ty, inp),
    }
}

fn arch_of(meta: &[(String, Value)]) -> String {
    meta.iter()
        .find(|(k, _)| k == "general.architecture")
        .and_then(|(_, v)| v.as_str())
        .unwrap_or("llama")
        .to_string()
}

/// Applies one edit to `meta`.
fn edit(meta: &mut Vec<(String, Value)>, inp: &mut Input) {
    let key = inp.pick(KEYS);
    let key = match key.strip_prefix('.') {
        Some(suffix) => format!("{}.{suffix}", arch_of(meta)),
        None => key.to_string(),
    };
    let slot = meta.iter().position(|(k, _)| *k == key);
    let set = |meta: &mut Vec<(String, Value)>, v: Value| match slot {
        Some(i) => meta[i].1 = v,
        None => meta.push((key.clone(), v)),
    };
    match inp.u8() % 16 {
        0 => {
            if let Some(i) = slot {
                meta.remove(i);
            }
        }
        1 => set(meta, Value::U32(inp.u8() as u32)),
        2 => set(meta, Value::U32(inp.u32())),
        3 => set(meta, Value::F32(inp.pick(FLOATS))),
        4 => {
            let ty = inp.pick(TYPES);
            set(meta, scalar(ty, inp));
        }
        5 => set(meta, Value::String(inp.pick(WORDS).to_string())),
        6 => set(meta, Value::String(inp.string())),
        // Array edits; on a key that is not an array they do nothing.
        7..=11 => {
            let Some(Value::Array(ty, items)) = slot.map(|i| &mut meta[i].1) else {
                return;
            };
            let ty = *ty;
            let n = items.len();
            match inp.u8() % 5 {
                // change one element
                0 if n > 0 => {
                    let i = inp.u16() as usize % n;
                    items[i] = element(ty, inp);
                }
                // truncate
                1 => items.truncate(inp.u16() as usize % (n + 1)),
                // append
                2 => {
                    let e = element(ty, inp);
                    items.push(e);
                }
                // copy one element over another (duplicate tokens, repeated merges)
                3 if n > 0 => {
                    let (a, b) = (inp.u16() as usize % n, inp.u16() as usize % n);
                    items[b] = items[a].clone();
                }
                // remove one element (shifts every later id / rank)
                4 if n > 0 => {
                    items.remove(inp.u16() as usize % n);
                }
                _ => {}
            }
        }
        12 => {
            let ty = inp.pick(TYPES);
            let n = (inp.u8() % 4) as usize;
            let items = (0..n).map(|_| scalar(ty, inp)).collect();
            set(meta, Value::Array(ty, items));
        }
        // Switch the architecture, moving every `{old}.` key to the new prefix.
        13 => {
            let old = format!("{}.", arch_of(meta));
            let new = inp.pick(WORDS);
            for (k, _) in meta.iter_mut() {
                if let Some(rest) = k.strip_prefix(&old) {
                    *k = format!("{new}.{rest}");
                }
            }
            let i = meta.iter().position(|(k, _)| k == "general.architecture");
            let v = Value::String(new.to_string());
            match i {
                Some(i) => meta[i].1 = v,
                None => meta.push(("general.architecture".into(), v)),
            }
        }
        // Append Jinja pieces to the chat template (whatever `key` was).
        _ => {
            let i = meta
                .iter()
                .position(|(k, _)| k == "tokenizer.chat_template");
            let mut s = match i.map(|i| &meta[i].1) {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            for _ in 0..1 + inp.u8() % 4 {
                if inp.u8() % 4 == 0 {
                    s.push_str(&inp.string());
                } else {
                    s.push_str(inp.pick(JINJA));
                }
            }
            let v = Value::String(s);
            match i {
                Some(i) => meta[i].1 = v,
                None => meta.push(("tokenizer.chat_template".into(), v)),
            }
        }
    }
}

const TEXT: &str = "Hello, world! <|endoftext|> é 🍕 123\n";

fuzz_target!(|data: &[u8]| {
    let base = base();
    let mut meta = base.meta.clone();
    let mut inp = Input { data };
    // At most 64 edits; each takes at least two bytes.
    for _ in 0..64 {
        if inp.data.is_empty() {
            break;
        }
        edit(&mut meta, &mut inp);
    }

    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add(k, v);
    }
    for (name, dims, ty, bytes) in &base.tensors {
        w.add_tensor(name.clone(), dims, *ty, bytes.clone())
            .expect("the base tensors are consistent");
    }
    let Ok(file) = GgufFile::from_bytes("fuzz.gguf", w.to_bytes()) else {
        return;
    };

    // The tokenizer, and a round trip through it.
    let tok = Tokenizer::from_gguf(&file).ok();
    let mut ids = Vec::new();
    if let Some(tok) = &tok {
        ids = tok.encode(TEXT, true, true);
        let plain = tok.encode(TEXT, false, false);
        let mut acc = tok.decode(&ids).len() + tok.decode_string(&plain).len();
        let mut stream = engine::text::TextStream::new(&["</s>".to_string()]);
        let mut out = String::new();
        for &id in ids.iter().chain(&plain) {
            acc += tok.token_text(id).len() + tok.is_eog(id) as usize;
            stream.push(tok.token_bytes(id), &mut out);
        }
        stream.finish(&mut out);
        std::hint::black_box(acc + out.len());
    }

    // The chat template, rendered as `lume chat` and the server do.
    if let Ok(t) = ChatTemplate::from_gguf(&file) {
        let msgs = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello"),
            ChatMessage::new("user", "Bye"),
        ];
        let _ = t.render(&msgs, true);
    }

    // The model: hyper-parameters and tensors, the KV cache as the engine sizes it (the
    // model's context capped at engine::DEFAULT_MAX_CTX, f16), one forward pass.
    let Ok(model) = Model::from_gguf(file) else {
        return;
    };
    let n_ctx = model.info().n_ctx_train.clamp(1, engine::DEFAULT_MAX_CTX);
    let Ok(mut cache) = model.new_cache_typed(1, n_ctx, KvType::F16) else {
        return;
    };
    // A few tokens are enough to reach every layer; more only slow the fuzzer down.
    ids.truncate(n_ctx.min(3));
    if ids.is_empty() {
        ids.push(0);
    }
    let batch = Batch::from_tokens(&ids, 0, 0, false);
    let mut logits = Vec::new();
    if model.forward(&batch, &mut cache, &mut logits).is_ok() {
        std::hint::black_box(logits.iter().sum::<f32>());
    }
});
