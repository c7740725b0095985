//! The batch-invariant mode (`kernels::set_batch_invariant(true)`): a sequence's logits, every
//! row, are bit-identical however it is batched. Sequence A is computed
//! (a) alone in one pass, (b) in chunks of 1, 3, 7, 16 and 33 tokens, (c) in mixed batches
//! shared with other slots' prompt chunks and decode tokens (its own chunk sometimes split in
//! two parts with other tokens between them), (d) as a prompt followed by token-by-token
//! decoding (alone, then alongside other slots' decode tokens); every row of every variant must
//! equal (a) bit for bit. With f32 and f16 KV caches (and windowed caches where a model has
//! sliding-window layers), on the real smollm2-135m (quantized weights) and on every tiny
//! reference model of `testdata/tiny` (float weights, every registered architecture).
//!
//! Dispatch levels: this binary runs at the process's level (`LUME_CPU` or the best one), and
//! `every_level_in_a_child_process` runs the binary again once per other level this CPU has
//! (the level is fixed at the first kernel call, so each needs its own process).
//!
//! Every test switches the mode on first (none switches it off). Run in release (`cargo test
//! --release -p model --test batch_invariance`, about a minute); a debug build checks a
//! shorter smollm2 sequence.

mod common;

use common::{tiny_dir, tokens};
use model::{Batch, KvCache, KvType, Model};

/// Chunk sizes of (b).
const CHUNKS: [usize; 5] = [1, 3, 7, 16, 33];

fn invariant_on() {
    kernels::set_batch_invariant(true);
    assert!(kernels::batch_invariant());
}

/// Which cache a variant runs on.
#[derive(Clone, Copy, Debug)]
enum CacheKind {
    Plain(KvType),
    Windowed(KvType),
}

fn cache(m: &Model, kind: CacheKind, n_slots: usize, n_ctx: usize) -> KvCache {
    match kind {
        CacheKind::Plain(t) => m.new_cache_typed(n_slots, n_ctx, t),
        CacheKind::Windowed(t) => m.new_cache_windowed(n_slots, n_ctx, t),
    }
    .unwrap()
}

/// Runs `batch` (logits for every entry) and appends the rows of `slot` to `rows`.
fn run(m: &Model, c: &mut KvCache, batch: &Batch, slot: usize, rows: &mut Vec<f32>) {
    let vocab = m.info().vocab;
    let mut logits = Vec::new();
    m.forward(batch, c, &mut logits).unwrap();
    assert_eq!(logits.len(), batch.len() * vocab);
    for (j, &s) in batch.seq_ids.iter().enumerate() {
        if s == slot {
            rows.extend_from_slice(&logits[j * vocab..(j + 1) * vocab]);
        }
    }
}

/// Feeds `toks` to `slot` from position `start` in chunks of `chunk`, every row returned.
fn chunked(
    m: &Model,
    c: &mut KvCache,
    slot: usize,
    toks: &[u32],
    start: usize,
    chunk: usize,
) -> Vec<f32> {
    let mut rows = Vec::new();
    for (i, part) in toks.chunks(chunk).enumerate() {
        let b = Batch::from_tokens(part, (start + i * chunk) as u32, slot, true);
        run(m, c, &b, slot, &mut rows);
    }
    rows
}

/// The first row (of `vocab` values) where `got` and `want` differ in any bit.
fn first_diff(got: &[f32], want: &[f32], vocab: usize) -> Option<(usize, f32)> {
    assert_eq!(got.len(), want.len(), "row counts differ");
    let rows = got.len() / vocab;
    (0..rows).find_map(|r| {
        let (g, w) = (
            &got[r * vocab..(r + 1) * vocab],
            &want[r * vocab..(r + 1) * vocab],
        );
        let same = g.iter().zip(w).all(|(x, y)| x.to_bits() == y.to_bits());
        (!same).then(|| (r, common::max_abs_diff(g, w)))
    })
}

/// Every variant of sequence `a` against its one-pass rows; returns the failures.
fn check(m: &Model, name: &str, kind: CacheKind, a: &[u32]) -> Vec<String> {
    let vocab = m.info().vocab;
    let n = a.len();
    let n_ctx = n + 8;
    let mut fails = Vec::new();
    let mut expect = |what: String, got: &[f32], want: &[f32]| {
        if let Some((r, d)) = first_diff(got, want, vocab) {
            fails.push(format!(
                "{name} {kind:?} {}: {what}: row {r} differs (max |Δ| {d:.3e})",
                kernels::cpu::level()
            ));
        }
    };

    // (a) One pass, in slot 0 of a fresh single-slot cache.
    let mut c = cache(m, kind, 1, n_ctx);
    let want = chunked(m, &mut c, 0, a, 0, n);

    // (b) Chunks, in slot 2 of a 3-slot cache.
    for chunk in CHUNKS {
        let mut c = cache(m, kind, 3, n_ctx);
        let got = chunked(m, &mut c, 2, a, 0, chunk);
        expect(format!("chunks of {chunk}"), &got, &want);
    }

    // (c) Mixed batches: slot 1 holds A; slot 0 is a prompt read in chunks, slot 2 a sequence
    // that decodes one token per batch, slot 3 one that joins later with a long prompt.
    let others = [
        tokens(n + 20, vocab, 7),
        tokens(n + 20, vocab, 8),
        tokens(n + 20, vocab, 9),
    ];
    let mut c = cache(m, kind, 4, n_ctx + 20);
    // Slot 2 starts with a short prompt so it decodes from the first batch on.
    let mut rows = Vec::new();
    run(
        m,
        &mut c,
        &Batch::from_tokens(&others[1][..5], 0, 2, true),
        1,
        &mut rows,
    );
    let sizes = [5, 1, 12, 3, 9, 2, 17, 4, 1, 8];
    let mut next = [0usize, 0, 5, 0]; // next position per slot (slot 1 = A)
    let mut got = Vec::new();
    let mut step = 0;
    while next[1] < n {
        let k = sizes[step % sizes.len()].min(n - next[1]);
        let split = if k >= 2 && step % 3 != 1 { k / 2 } else { k };
        let mut b = Batch::new();
        let mut push = |b: &mut Batch, slot: usize, count: usize, toks: &[u32]| {
            let p = next[slot];
            let count = count.min(toks.len() - p);
            for i in 0..count {
                b.push(toks[p + i], (p + i) as u32, slot, true);
            }
            next[slot] += count;
        };
        push(&mut b, 0, 1 + step % 6, &others[0]);
        push(&mut b, 1, split, a);
        push(&mut b, 2, 1, &others[1]);
        push(&mut b, 1, k - split, a);
        if step >= 2 {
            push(&mut b, 3, if step == 2 { 20 } else { 1 }, &others[2]);
        }
        if step % 2 == 0 {
            push(&mut b, 0, 3, &others[0]);
        }
        run(m, &mut c, &b, 1, &mut got);
        step += 1;
    }
    expect("mixed batches".into(), &got, &want);

    // (d) A prompt of 2/3 of A in one pass, then token by token: alone in slot 0, and in
    // slot 3 of a 4-slot cache with the other slots decoding in the same batches.
    let p = 2 * n / 3;
    let mut c = cache(m, kind, 1, n_ctx);
    let mut got = chunked(m, &mut c, 0, &a[..p], 0, p);
    got.extend(chunked(m, &mut c, 0, &a[p..], p, 1));
    expect("prompt then decode".into(), &got, &want);

    let mut c = cache(m, kind, 4, n_ctx + 20);
    for (s, o) in others.iter().enumerate() {
        run(
            m,
            &mut c,
            &Batch::from_tokens(&o[..9 + 4 * s], 0, s, true),
            3,
            &mut Vec::new(),
        );
    }
    let mut got = Vec::new();
    run(
        m,
        &mut c,
        &Batch::from_tokens(&a[..p], 0, 3, true),
        3,
        &mut got,
    );
    for (i, &tok) in a.iter().enumerate().skip(p) {
        let mut b = Batch::new();
        for (s, o) in others.iter().enumerate() {
            let pos = c.len(s);
            if s == i % 3 {
                b.push(tok, i as u32, 3, true);
            }
            b.push(o[pos], pos as u32, s, true);
        }
        run(m, &mut c, &b, 3, &mut got);
    }
    expect("prompt then decode among other slots".into(), &got, &want);
    fails
}

fn cache_kinds(m: &Model) -> Vec<CacheKind> {
    let mut v = vec![CacheKind::Plain(KvType::F32), CacheKind::Plain(KvType::F16)];
    // A windowed cache differs from a plain one only where some layer has a sliding window.
    let plain = m.new_cache(1, 4096).unwrap().kv_bytes();
    if m.new_cache_windowed(1, 4096, KvType::F32)
        .unwrap()
        .kv_bytes()
        < plain
    {
        v.push(CacheKind::Windowed(KvType::F16));
    }
    v
}

#[test]
fn smollm2_logits_do_not_depend_on_batching() {
    invariant_on();
    let m = common::real_model("smollm2-135m");
    // 70 tokens: tiles of several sizes in the prompt kernels, two key blocks of 64 (40 with
    // the slow scalar kernels; the tiny models cover several key blocks there).
    // An unoptimised build is ~50x slower: there 34 tokens (chunks of 33 still split it).
    let n = if cfg!(debug_assertions) {
        34
    } else if kernels::cpu::level() == kernels::Level::Scalar {
        40
    } else {
        70
    };
    let a = tokens(n, m.info().vocab, 1);
    let mut fails = Vec::new();
    for kind in [CacheKind::Plain(KvType::F32), CacheKind::Plain(KvType::F16)] {
        fails.extend(check(&m, "smollm2-135m", kind, &a));
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

#[test]
fn tiny_models_logits_do_not_depend_on_batching() {
    invariant_on();
    let root = tiny_dir("");
    let mut folders: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.f32.gguf").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut fails = Vec::new();
    let mut done = Vec::new();
    for folder in &folders {
        for file in ["model.f32.gguf", "model.f16.gguf"] {
            let path = tiny_dir(folder).join(file);
            if !path.is_file() {
                continue;
            }
            let m = match Model::load(&path) {
                Ok(m) => m,
                Err(model::ModelError::UnsupportedArch { .. }) => continue,
                Err(e) => panic!("{}: {e}", path.display()),
            };
            if !m.info().lm_head {
                continue; // an encoder (bert): no logits; tests/bert.rs covers its batching
            }
            let a = tokens(100, m.info().vocab, 2);
            for kind in cache_kinds(&m) {
                fails.extend(check(&m, &format!("{folder}/{file}"), kind, &a));
            }
            done.push(format!("{folder}/{file}"));
        }
    }
    println!("checked: {}", done.join(", "));
    for need in ["llama", "qwen2", "gemma3", "gpt2"] {
        assert!(
            done.iter().any(|d| d.starts_with(&format!("{need}/"))),
            "no tiny {need} model checked"
        );
    }
    assert!(fails.is_empty(), "{}", fails.join("\n"));
}

/// Runs this test binary again at every other dispatch level the CPU has.
#[test]
fn every_level_in_a_child_process() {
    if std::env::var_os("LUME_BI_CHILD").is_some() {
        return;
    }
    invariant_on();
    let here = kernels::cpu::level();
    let exe = std::env::current_exe().unwrap();
    for level in kernels::Level::ALL {
        if !level.available() || level == here {
            continue;
        }
        let out = std::process::Command::new(&exe)
            .args(["--test-threads", "2"])
            .env("LUME_BI_CHILD", "1")
            .env("LUME_CPU", level.name())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        println!(
            "LUME_CPU={level}: {}",
            text.lines()
                .filter(|l| l.contains("test "))
                .collect::<Vec<_>>()
                .join("; ")
        );
        assert!(
            out.status.success() && text.contains("test result: ok"),
            "LUME_CPU={level} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The level this process runs at is the one asked for (children included).
#[test]
fn level_is_the_one_asked_for() {
    if let Ok(v) = std::env::var("LUME_CPU") {
        assert_eq!(kernels::cpu::level().name(), v);
    }
}
