//! The one decoder every architecture runs: a layer loop driven by a [`DecoderDesc`]
//! (see [`crate::desc`] for the block it describes).
//!
//! ```text
//! x = token_embd[token] · embd_scale (+ position_embd[pos]) (+ token_types[type])
//! x = token_embd_norm?(x)
//! per layer (BlockDesc):
//!     h = attn_norm?(x);  q, k, v = proj(h);  q, k = rope?(qk_norm?(q, k));  store k, v
//!     x += residual_scale · post_attn_norm?( o( attention(q, cached k, cached v) ) )
//!     x = attn_output_norm?(x)                        (NormAt::PostResidual, BERT)
//!     h = ffn_norm?(x);   x += residual_scale · post_ffn_norm?( ffn(h) )
//!     x = layer_output_norm?(x)                       (NormAt::PostResidual, BERT)
//! logits = softcap?( output( output_norm(x) ) )      (output = token_embd when output.weight is absent)
//! hidden = output_norm?(x)                            (Architecture::forward_hidden: every row)
//! score = cls.output( tanh( cls(hidden[first row]) ) )   (Architecture::classify: a
//!         sequence-classification head, BERT cross-encoders; `cls` optional)
//! ```
//!
//! [`Decoder::load`] reads the tensors the description names (checking shapes and types);
//! the forward pass ([`Architecture::forward`]) is the loop above, with every buffer taken
//! from [`Scratch`] (no allocation per token). Adding a block kind is one variant in
//! [`crate::desc`], its loading in [`Decoder::load`] and its step in the loop.

use gguf::GgufFile;

use crate::architecture::Architecture;
use crate::batch::{Batch, MAX_BATCH};
use crate::cache::Scratch;
use crate::desc::{Act, DecoderDesc, FfnKind, Layout, Mask, NormKind, QkNormKind};
use crate::error::{ModelError, Result};
use crate::hparams::{HParams, MAX_DIM};
use crate::layers::attention::{attend_head, attend_tile, AttnParams, TILE_ROWS};
use crate::layers::ffn::{
    gated_quick_gelu, geglu_erf, geglu_tanh, gelu_erf_inplace, gelu_tanh_inplace,
    quick_gelu_inplace, silu_inplace, swiglu,
};
use crate::layers::kv_cache::KvStore;
use crate::layers::moe::{MoeFfn, MoeParams};
use crate::layers::norm::{layer_norm, rms_norm, rms_norm_inplace};
use crate::layers::rope::Rope;
use crate::ops::{add_inplace, grow, par_for, SharedMut};
use crate::weights::{Linear, Loader, Matrix};

/// Largest vocabulary accepted (rows of `token_embd.weight`).
pub const MAX_VOCAB: usize = 1 << 22;

/// A loaded norm: RMSNorm (`[n_embd]` weight) or LayerNorm (`[n_embd]` weight and bias).
#[derive(Clone, Debug)]
pub enum Norm {
    Rms(Vec<f32>),
    Layer { w: Vec<f32>, b: Vec<f32> },
}

impl Norm {
    fn load(ld: &Loader, kind: NormKind, prefix: &str, d: usize) -> Result<Norm> {
        let w = ld.vector(&format!("{prefix}.weight"), d)?;
        Ok(match kind {
            NormKind::Rms => Norm::Rms(w),
            NormKind::Layer => Norm::Layer {
                w,
                b: ld.vector(&format!("{prefix}.bias"), d)?,
            },
        })
    }

    /// Normalises every row of `x` (`[n, n_embd]`) into `out`.
    pub fn apply(&self, x: &[f32], eps: f32, out: &mut [f32]) {
        match self {
            Norm::Rms(w) => rms_norm(x, w, eps, out),
            Norm::Layer { w, b } => layer_norm(x, w, Some(b), eps, out),
        }
    }

    /// Normalises every row of `x` in place; `tmp` (as long as `x`) is scratch.
    fn apply_inplace(&self, x: &mut [f32], eps: f32, tmp: &mut [f32]) {
        match self {
            Norm::Rms(w) => rms_norm_inplace(x, w, eps),
            Norm::Layer { w, b } => {
                layer_norm(x, w, Some(b), eps, tmp);
                x.copy_from_slice(tmp);
            }
        }
    }
}

/// The feed-forward of a block, loaded.
#[derive(Clone, Debug)]
pub enum Ffn {
    /// `down(act(gate(x)) · up(x))`; `[n_ff, n_embd]`, `[n_ff, n_embd]`, `[n_embd, n_ff]`.
    Gated {
        act: Act,
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    /// `down(act(up(x)))`; `[n_ff, n_embd]`, `[n_embd, n_ff]`.
    Mlp { act: Act, up: Linear, down: Linear },
    /// Mixture of SwiGLU experts.
    Moe(MoeFfn),
}

/// One block, loaded.
#[derive(Clone, Debug)]
pub struct Layer {
    /// `[n_embd]` norms before and after each sub-layer (as the block description places them).
    pub attn_norm: Option<Norm>,
    pub post_attn_norm: Option<Norm>,
    pub ffn_norm: Option<Norm>,
    pub post_ffn_norm: Option<Norm>,
    /// `[n_embd]` norms of the residual stream after each sub-layer's add (BERT's post-LN).
    pub attn_res_norm: Option<Norm>,
    pub ffn_res_norm: Option<Norm>,
    /// `[q_dim, n_embd]`, `[k_dim, n_embd]`, `[v_dim, n_embd]`, `[n_embd, n_head*head_dim_v]`
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// RMSNorm weights of q and k: `[head_dim]` per head, or `[q_dim]`/`[k_dim]` whole.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// Shape, scale, soft-cap and window of this layer's attention.
    pub attn: AttnParams,
    pub mask: Mask,
    /// Index into [`Decoder::ropes`].
    pub rope: Option<usize>,
    pub ffn: Ffn,
}

/// A sequence-classification head (llama.cpp's names): `cls` (`[n_embd, n_embd]` + bias, then
/// tanh: BERT's pooler) when present, then `cls.output` (`[n_labels, n_embd]` + bias).
#[derive(Clone, Debug)]
pub struct ClsHead {
    pub pooler: Option<Linear>,
    pub out: Linear,
}

/// A loaded decoder.
#[derive(Clone, Debug)]
pub struct Decoder {
    pub hp: HParams,
    pub desc: DecoderDesc,
    pub vocab: usize,
    /// `[vocab, n_embd]`
    pub tok_embd: Matrix,
    /// `[n_pos, n_embd]` learned positions
    pub pos_embd: Option<Matrix>,
    /// `[n_types, n_embd]` the token-type embeddings (BERT)
    pub type_embd: Option<Vec<f32>>,
    /// Sequence-classification head, when the description allows one and the file has it.
    pub cls: Option<ClsHead>,
    /// Norm of the summed embeddings (BERT's `token_embd_norm`)
    pub embd_norm: Option<Norm>,
    pub ropes: Vec<Rope>,
    pub layers: Vec<Layer>,
    /// `None` without a final norm (BERT)
    pub output_norm: Option<Norm>,
    /// `[vocab, n_embd]` (a copy of `tok_embd`'s info when tied); `None` without an LM head
    pub output: Option<Linear>,
    /// Width of the dense feed-forwards (0 when every layer is a mixture of experts).
    pub n_ff: usize,
    /// Width of the gate activations (0 when no layer has a gated feed-forward).
    pub n_gate: usize,
}

fn bad(key: String, msg: impl Into<String>) -> ModelError {
    ModelError::BadHparam {
        key,
        msg: msg.into(),
    }
}

impl Decoder {
    /// Loads and validates every tensor `desc` names (`desc.layers` has one entry per layer).
    pub fn load(file: &GgufFile, hp: HParams, desc: DecoderDesc) -> Result<Decoder> {
        let ld = Loader::new(file);
        let d = hp.n_embd;
        let arch = hp.arch.clone();
        if desc.layers.len() != hp.n_layer {
            return Err(bad(
                format!("{arch}.block_count"),
                format!(
                    "{} layers, but the architecture describes {}",
                    hp.n_layer,
                    desc.layers.len()
                ),
            ));
        }
        let any_moe = desc.layers.iter().any(|b| b.ffn == FfnKind::Moe);
        let any_dense = desc.layers.iter().any(|b| b.ffn != FfnKind::Moe);
        let moe = if any_moe {
            match MoeParams::read(file, &arch)? {
                Some(m) => Some(m),
                None => {
                    return Err(bad(
                        format!("{arch}.expert_count"),
                        format!("missing or zero (a {arch} model has experts)"),
                    ))
                }
            }
        } else {
            None
        };
        if any_dense && hp.n_ff == 0 {
            return Err(bad(
                format!("{arch}.feed_forward_length"),
                "missing or zero",
            ));
        }
        for (i, b) in desc.layers.iter().enumerate() {
            if b.rope.is_some_and(|r| r >= desc.ropes.len()) {
                return Err(bad(
                    format!("{arch}.rope"),
                    format!("layer {i}: no such RoPE"),
                ));
            }
            if b.attn.window == Some(0) {
                return Err(bad(
                    format!("{arch}.attention.sliding_window"),
                    "a sliding window of 0 positions",
                ));
            }
            if b.attn.mask == Mask::Bidirectional && b.attn.window.is_some() {
                return Err(bad(
                    format!("{arch}.attention.sliding_window"),
                    format!("layer {i}: a sliding window on bidirectional attention"),
                ));
            }
        }
        let tok_embd = ld.matrix_any_rows("token_embd.weight", d, MAX_VOCAB)?;
        let vocab = tok_embd.rows;
        let output = if desc.lm_head {
            Some(match ld.linear_opt("output", vocab, d)? {
                Some(l) => l,
                None => Linear {
                    w: tok_embd.clone(),
                    b: None,
                },
            })
        } else {
            None
        };
        let output_norm = if desc.lm_head || desc.final_norm {
            Some(Norm::load(&ld, desc.output_norm, "output_norm", d)?)
        } else {
            None
        };
        let type_embd = if desc.token_types {
            let t = ld.matrix_any_rows("token_types.weight", d, MAX_DIM)?;
            let mut rows = vec![0.0; t.rows * d]; // [n_types, n_embd]
            for (r, row) in rows.chunks_exact_mut(d).enumerate() {
                t.row_f32(file, r, row);
            }
            Some(rows)
        } else {
            None
        };
        let cls = if desc.class_head && ld.has("cls.output.weight") {
            let w = ld.matrix_any_rows("cls.output.weight", d, MAX_DIM)?;
            let b = ld.vector_opt("cls.output.bias", w.rows)?;
            Some(ClsHead {
                pooler: ld.linear_opt("cls", d, d)?,
                out: Linear { w, b },
            })
        } else {
            None
        };
        let embd_norm = desc
            .embd_norm
            .map(|k| Norm::load(&ld, k, "token_embd_norm", d))
            .transpose()?;
        let pos_embd = if desc.learned_positions {
            Some(ld.matrix_any_rows("position_embd.weight", d, MAX_DIM)?)
        } else {
            None
        };
        let ropes = desc
            .ropes
            .iter()
            .map(|r| {
                let rope = Rope::new(r.style, hp.n_rot, r.base);
                match r.linear_scale {
                    Some(f) => rope.with_linear_scaling(f),
                    None => rope,
                }
            })
            .collect();
        let att_out = hp.n_head * hp.head_dim_v;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for (i, b) in desc.layers.iter().enumerate() {
            let p = |s: &str| format!("blk.{i}.{s}");
            let norm = |at: bool, name: &str| -> Result<Option<Norm>> {
                at.then(|| Norm::load(&ld, b.norm, &p(name), d)).transpose()
            };
            let (q_norm, k_norm) = match b.qk_norm {
                QkNormKind::None => (None, None),
                QkNormKind::PerHead => (
                    Some(ld.vector(&p("attn_q_norm.weight"), hp.head_dim)?),
                    Some(ld.vector(&p("attn_k_norm.weight"), hp.head_dim)?),
                ),
                QkNormKind::Whole => (
                    Some(ld.vector(&p("attn_q_norm.weight"), hp.q_dim())?),
                    Some(ld.vector(&p("attn_k_norm.weight"), hp.k_dim())?),
                ),
            };
            let fused = |layout: Layout, fused: &str, separate: &str| match layout {
                Layout::Separate => false,
                Layout::Fused => true,
                Layout::FusedOrSeparate => {
                    ld.has(&p(&format!("{fused}.weight")))
                        && !ld.has(&p(&format!("{separate}.weight")))
                }
            };
            let (q, k, v) = if fused(b.qkv, "attn_qkv", "attn_q") {
                let dims = [hp.q_dim(), hp.k_dim(), hp.v_dim()];
                let [q, k, v]: [Linear; 3] = ld
                    .linear_split(&p("attn_qkv"), &dims, d)?
                    .try_into()
                    .expect("three parts");
                (q, k, v)
            } else {
                (
                    ld.linear(&p("attn_q"), hp.q_dim(), d)?,
                    ld.linear(&p("attn_k"), hp.k_dim(), d)?,
                    ld.linear(&p("attn_v"), hp.v_dim(), d)?,
                )
            };
            let ff = hp.n_ff;
            let ffn = match b.ffn {
                FfnKind::Moe => Ffn::Moe(MoeFfn::load(&ld, i, d, moe.as_ref().expect("read"))?),
                FfnKind::Gated { act, gate_up } => {
                    let (gate, up) = if fused(gate_up, "ffn_up", "ffn_gate") {
                        let [g, u]: [Linear; 2] = ld
                            .linear_split(&p("ffn_up"), &[ff, ff], d)?
                            .try_into()
                            .expect("two parts");
                        (g, u)
                    } else {
                        (
                            ld.linear(&p("ffn_gate"), ff, d)?,
                            ld.linear(&p("ffn_up"), ff, d)?,
                        )
                    };
                    let down = ld.linear(&p("ffn_down"), d, ff)?;
                    Ffn::Gated {
                        act,
                        gate,
                        up,
                        down,
                    }
                }
                FfnKind::Mlp { act } => Ffn::Mlp {
                    act,
                    up: ld.linear(&p("ffn_up"), ff, d)?,
                    down: ld.linear(&p("ffn_down"), d, ff)?,
                },
            };
            layers.push(Layer {
                attn_norm: norm(b.attn_norm.pre(), "attn_norm")?,
                post_attn_norm: norm(b.attn_norm.post(), "post_attention_norm")?,
                ffn_norm: norm(b.ffn_norm.pre(), "ffn_norm")?,
                post_ffn_norm: norm(b.ffn_norm.post(), "post_ffw_norm")?,
                attn_res_norm: norm(b.attn_norm.residual(), "attn_output_norm")?,
                ffn_res_norm: norm(b.ffn_norm.residual(), "layer_output_norm")?,
                q,
                k,
                v,
                o: ld.linear(&p("attn_output"), d, att_out)?,
                q_norm,
                k_norm,
                attn: AttnParams {
                    n_head: hp.n_head,
                    n_head_kv: hp.n_head_kv,
                    head_dim: hp.head_dim,
                    head_dim_v: hp.head_dim_v,
                    scale: b
                        .attn
                        .scale
                        .unwrap_or_else(|| 1.0 / (hp.head_dim as f32).sqrt()),
                    softcap: b.attn.softcap,
                    window: b.attn.window,
                },
                mask: b.attn.mask,
                rope: b.rope,
                ffn,
            });
        }
        let n_ff = if any_dense { hp.n_ff } else { 0 };
        let any_gated = desc
            .layers
            .iter()
            .any(|b| matches!(b.ffn, FfnKind::Gated { .. }));
        let n_gate = if any_gated { hp.n_ff } else { 0 };
        Ok(Decoder {
            hp,
            desc,
            vocab,
            tok_embd,
            pos_embd,
            type_embd,
            cls,
            embd_norm,
            ropes,
            layers,
            output_norm,
            output,
            n_ff,
            n_gate,
        })
    }
}

/// Runs the attention of every batch token against its slot (keys/values already stored).
///
/// Every run of at least [`TILE_MIN`] consecutive batch entries of one slot at consecutive
/// positions (a prompt, or a prompt chunk within a continuous-batching batch; SIMD levels)
/// goes through [`attend_tile`]: one task per (KV head, tile of tokens), latest tiles first
/// (they see the most keys). Every other token is one task per (token, head) with
/// [`attend_head`]. All tasks run as one pool job.
///
/// In the batch-invariant mode ([`kernels::batch_invariant`]) every token goes through
/// [`attend_tile`], whatever its run's length and at every level (tiles of one token use the
/// narrow tile kernels): a query row's tile result depends only on its own query, position and
/// cached keys/values, never on the rest of its tile, so a token gets the same bits alone, in
/// a prompt chunk, or among other slots' tokens. (Tiles rather than `attend_head` because
/// they cost the same or less per token. 2026-12-01, smollm2 Q4_1, 2 threads, AVX2, f16 cache,
/// invariant mode: pp512 ~330 t/s with tiles vs ~220 with `attend_head`; decoding 1024 tokens
/// 56–58 vs 48 t/s, a single token's tile reading each key and value once per KV head instead
/// of once per query head.)
///
/// Bidirectional attention (`ends` given: `ends[slot]` is one past the last position of
/// `slot`, the slot lengths after this batch) lets every token see every cached position of
/// its slot up to the slot's last token in the batch; at the SIMD levels (or in the invariant
/// mode) every such token goes through [`attend_tile`] (tiles of one token included), at the
/// scalar level one per (token, head) through [`attend_head`].
///
/// `q`: `[n, n_head*head_dim]` → `att`: `[n, n_head*head_dim_v]`.
pub fn attention_batch(
    p: &AttnParams,
    kv: &KvStore,
    layer: usize,
    batch: &Batch,
    ends: Option<&[usize]>,
    q: &[f32],
    att: &mut [f32],
) {
    let (qd, od) = (p.n_head * p.head_dim, p.n_head * p.head_dim_v);
    let n = batch.len();
    assert!(att.len() >= n * od && q.len() >= n * qd);
    let out = SharedMut::new(att);
    // Tokens attend only to cached keys, never to each other here: batches larger than the
    // fixed task tables (possible only by calling this directly) go in parts.
    let mut c0 = 0;
    while c0 < n {
        let c1 = (c0 + MAX_BATCH).min(n);
        attention_part(p, kv, layer, batch, ends, q, &out, c0..c1);
        c0 = c1;
    }
}

/// [`attention_batch`] of the batch entries `range` (at most [`MAX_BATCH`]), as one pool job.
#[allow(clippy::too_many_arguments)]
fn attention_part(
    p: &AttnParams,
    kv: &KvStore,
    layer: usize,
    batch: &Batch,
    ends: Option<&[usize]>,
    q: &[f32],
    out: &SharedMut,
    range: std::ops::Range<usize>,
) {
    let od = p.n_head * p.head_dim_v;
    let group = p.n_head / p.n_head_kv;
    // The scalar level is the reference: there (outside the invariant mode) every token goes
    // through `attend_head`, so batching never changes a result bit (`tests/real_scalar.rs`).
    // Batch-invariant mode: every token goes through tiles (a lone token is a tile of its
    // own), at every level; a row's tile result depends on nothing but its own query and
    // position (`attend_tile`), and tiles beat `attend_head` here even for one token.
    // Bidirectional attention (`ends`) tiles every token too (runs of one token included), so
    // how a sequence's tokens are cut into runs (a batch cut into parts) never matters.
    let invariant = kernels::batch_invariant();
    let tiled =
        group <= TILE_ROWS && (invariant || kernels::cpu::level() != kernels::Level::Scalar);
    let min_run = if invariant || ends.is_some() {
        1
    } else {
        TILE_MIN
    };
    // Tiles `(t0, t1)` of the runs, and the tokens outside runs (no allocation: a part has
    // at most MAX_BATCH tokens, so at most MAX_BATCH tiles).
    let mut tiles = [(0u32, 0u32); MAX_BATCH];
    let mut singles = [0u32; MAX_BATCH];
    let (mut n_tiles, mut n_singles) = (0, 0);
    let tq = (TILE_ROWS / group).max(1);
    let mut t = range.start;
    while t < range.end {
        // The maximal run from t: one slot, consecutive positions.
        let slot = batch.seq_ids[t];
        let mut end = t + 1;
        while end < range.end
            && batch.seq_ids[end] == slot
            && batch.positions[end] == batch.positions[end - 1] + 1
        {
            end += 1;
        }
        if tiled && end - t >= min_run {
            for t0 in (t..end).step_by(tq) {
                tiles[n_tiles] = (t0 as u32, (t0 + tq).min(end) as u32);
                n_tiles += 1;
            }
        } else {
            for u in t..end {
                singles[n_singles] = u as u32;
                n_singles += 1;
            }
        }
        t = end;
    }
    let tiles = &mut tiles[..n_tiles];
    // Latest tiles first: they see the most keys.
    tiles.sort_unstable_by_key(|&(_, t1)| std::cmp::Reverse(batch.positions[t1 as usize - 1]));
    let singles = &singles[..n_singles];
    let tile_tasks = n_tiles * p.n_head_kv;
    par_for(tile_tasks + n_singles * p.n_head, &|task| {
        if task < tile_tasks {
            let (t0, t1) = tiles[task / p.n_head_kv];
            let (t0, t1) = (t0 as usize, t1 as usize);
            let kvh = task % p.n_head_kv;
            let slot = batch.seq_ids[t0];
            attend_tile(
                p,
                kvh,
                q,
                &batch.positions,
                t0,
                t1,
                kv.keys(layer, slot),
                kv.values(layer, slot),
                ends.map(|e| e[slot] - 1),
                &mut |t, h, o| {
                    // SAFETY: (t, h) belongs to this task's tile and KV head only; the caller
                    // holds `att` mutably for the whole call.
                    unsafe { out.slice(t * od + h * p.head_dim_v, p.head_dim_v) }.copy_from_slice(o)
                },
            );
        } else {
            let j = task - tile_tasks;
            let (t, h) = (singles[j / p.n_head] as usize, j % p.n_head);
            attend_one(p, kv, layer, batch, ends, q, out, t, h);
        }
    });
}

/// [`attend_head`] of token `t`, head `h`, into its part of `out`: causal, or up to the end of
/// the slot with `ends`.
#[allow(clippy::too_many_arguments)]
fn attend_one(
    p: &AttnParams,
    kv: &KvStore,
    layer: usize,
    batch: &Batch,
    ends: Option<&[usize]>,
    q: &[f32],
    out: &SharedMut,
    t: usize,
    h: usize,
) {
    let (qd, od) = (p.n_head * p.head_dim, p.n_head * p.head_dim_v);
    let slot = batch.seq_ids[t];
    // SAFETY: only the task of (t, h) writes att[t*od + h*hdv ..][..hdv]; the caller holds
    // `att` mutably for the whole call.
    let out_h = unsafe { out.slice(t * od + h * p.head_dim_v, p.head_dim_v) };
    attend_head(
        p,
        h,
        &q[t * qd..(t + 1) * qd],
        kv.keys(layer, slot),
        kv.values(layer, slot),
        ends.map_or(batch.positions[t] as usize, |e| e[slot] - 1),
        out_h,
    );
}

/// Fewest tokens of one run that go through the tiled attention.
pub const TILE_MIN: usize = 4;

/// Copies the rows of `x` (`[n, d]`) whose logits are wanted into `out` (`[n_out, d]`).
pub fn gather_outputs(batch: &Batch, x: &[f32], d: usize, out: &mut [f32]) -> usize {
    let mut j = 0;
    for (t, &want) in batch.logits.iter().enumerate() {
        if want {
            out[j * d..(j + 1) * d].copy_from_slice(&x[t * d..(t + 1) * d]);
            j += 1;
        }
    }
    j
}

/// `x += scale · y` (`x += y` without a scale).
fn residual_add(x: &mut [f32], y: &[f32], scale: Option<f32>) {
    match scale {
        None => add_inplace(x, y),
        Some(s) => {
            for (a, b) in x.iter_mut().zip(y) {
                *a += s * b;
            }
        }
    }
}

/// `cap · tanh(x / cap)` on every value.
pub fn softcap_inplace(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in x.iter_mut() {
        *v = cap * (*v * inv).tanh();
    }
}

impl Architecture for Decoder {
    fn hparams(&self) -> &HParams {
        &self.hp
    }

    fn vocab(&self) -> usize {
        self.vocab
    }

    fn kv_window(&self, layer: usize) -> Option<usize> {
        self.layers.get(layer).and_then(|l| l.attn.window)
    }

    fn forward(
        &self,
        file: &GgufFile,
        batch: &Batch,
        kv: &mut KvStore,
        s: &mut Scratch,
        logits: &mut [f32],
    ) -> Result<()> {
        self.run(file, batch, kv, s, Out::Logits(logits), &mut |_, _| {})
    }

    fn has_lm_head(&self) -> bool {
        self.output.is_some()
    }

    fn n_labels(&self) -> usize {
        self.cls.as_ref().map_or(0, |c| c.out.rows())
    }

    fn classify(
        &self,
        file: &GgufFile,
        rows: &[f32],
        n: usize,
        tmp: &mut Vec<f32>,
        out: &mut [f32],
    ) -> Result<()> {
        let Some(head) = &self.cls else {
            return Err(ModelError::BadBatch(format!(
                "this {} model has no classification head (cls.output.weight)",
                self.hp.arch
            )));
        };
        let d = self.hp.n_embd;
        let x = match &head.pooler {
            Some(p) => {
                grow(tmp, n * d);
                let t = &mut tmp[..n * d]; // [n, n_embd]
                p.forward(file, rows, n, t);
                for v in t.iter_mut() {
                    *v = v.tanh();
                }
                &tmp[..n * d]
            }
            None => rows,
        };
        head.out.forward(file, x, n, out);
        Ok(())
    }

    fn forward_hidden(
        &self,
        file: &GgufFile,
        batch: &Batch,
        kv: &mut KvStore,
        s: &mut Scratch,
        after_layer: &mut dyn FnMut(usize, &[f32]),
        hidden: &mut [f32],
    ) -> Result<()> {
        self.run(file, batch, kv, s, Out::Hidden(hidden), after_layer)
    }
}

/// What a forward pass writes: logits of the flagged rows, or the hidden state of every row.
enum Out<'a> {
    /// `[n_out, vocab]`
    Logits(&'a mut [f32]),
    /// `[n, n_embd]`
    Hidden(&'a mut [f32]),
}

impl Decoder {
    /// The layer loop of the module notes; `out` says what leaves it, and `after_layer(l, x)`
    /// sees the residual stream `x` (`[n, n_embd]`) after each layer `l`.
    fn run(
        &self,
        file: &GgufFile,
        batch: &Batch,
        kv: &mut KvStore,
        s: &mut Scratch,
        out: Out,
        after_layer: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()> {
        let hp = &self.hp;
        let eps = hp.norm_eps;
        let n = batch.len();
        let d = hp.n_embd;
        // Learned positions exist only up to the table's length: check before writing anything.
        if let Some(pe) = &self.pos_embd {
            if let Some(i) = batch.positions.iter().position(|&p| p as usize >= pe.rows) {
                return Err(ModelError::BadBatch(format!(
                    "token {i}: position {} is beyond the model's {} learned positions",
                    batch.positions[i], pe.rows
                )));
            }
        }
        let n_types = self.type_embd.as_ref().map_or(1, |te| te.len() / d);
        if let Some(i) = batch.types.iter().position(|&t| t as usize >= n_types) {
            return Err(ModelError::BadBatch(format!(
                "token {i}: token type {} but this {} model has {n_types} token type(s)",
                batch.types[i], hp.arch
            )));
        }
        let (qd, kd, vd) = (hp.q_dim(), hp.k_dim(), hp.v_dim());
        let od = hp.n_head * hp.head_dim_v;
        let (ff, gf) = (self.n_ff, self.n_gate);
        grow(&mut s.x, n * d);
        grow(&mut s.xn, n * d);
        grow(&mut s.q, n * qd);
        grow(&mut s.k, n * kd);
        grow(&mut s.v, n * vd);
        grow(&mut s.att, n * od);
        grow(&mut s.proj, n * d);
        grow(&mut s.gate, n * gf);
        grow(&mut s.up, n * ff);
        if s.rope.len() < self.ropes.len() {
            s.rope.resize_with(self.ropes.len(), Default::default);
        }
        // Views of exactly this batch's size.
        let x = &mut s.x[..n * d]; // [n, n_embd]
        let xn = &mut s.xn[..n * d]; // [n, n_embd]
        let q = &mut s.q[..n * qd]; // [n, q_dim]
        let k = &mut s.k[..n * kd]; // [n, k_dim]
        let v = &mut s.v[..n * vd]; // [n, v_dim]
        let att = &mut s.att[..n * od]; // [n, n_head*head_dim_v]
        let proj = &mut s.proj[..n * d]; // [n, n_embd]
        let gate = &mut s.gate[..n * gf]; // [n, n_ff] (gated layers only)
        let up = &mut s.up[..n * ff]; // [n, n_ff]
                                      // Slot lengths after this batch (filled by the batch validation): bidirectional ends.
        let ends = &s.next_pos[..];

        for (t, &tok) in batch.tokens.iter().enumerate() {
            self.tok_embd
                .row_f32(file, tok as usize, &mut x[t * d..(t + 1) * d]);
        }
        if let Some(scale) = self.desc.embd_scale {
            for val in x.iter_mut() {
                *val *= scale;
            }
        }
        if let Some(pe) = &self.pos_embd {
            // xn is free until the first norm: use it for the position rows.
            for (t, &p) in batch.positions.iter().enumerate() {
                pe.row_f32(file, p as usize, &mut xn[t * d..(t + 1) * d]);
            }
            add_inplace(x, xn);
        }
        if let Some(te) = &self.type_embd {
            if batch.types.is_empty() {
                for row in x.chunks_exact_mut(d) {
                    add_inplace(row, &te[..d]);
                }
            } else {
                for (row, &ty) in x.chunks_exact_mut(d).zip(&batch.types) {
                    let ty = ty as usize;
                    add_inplace(row, &te[ty * d..(ty + 1) * d]);
                }
            }
        }
        if let Some(norm) = &self.embd_norm {
            norm.apply_inplace(x, eps, xn);
        }
        // [n, n_rot/2] cosines and sines of each RoPE, shared by its layers and heads.
        for (rope, tab) in self.ropes.iter().zip(&mut s.rope) {
            let half = rope.half();
            grow(&mut tab.cos, n * half);
            grow(&mut tab.sin, n * half);
            rope.tables(
                &batch.positions,
                &mut tab.cos[..n * half],
                &mut tab.sin[..n * half],
            );
        }
        let res = self.desc.residual_scale;

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            match &layer.attn_norm {
                Some(norm) => norm.apply(x, eps, xn),
                None => xn.copy_from_slice(x),
            }
            Linear::forward_many([&layer.q, &layer.k, &layer.v], file, xn, n, [q, k, v]);
            if let Some(w) = &layer.q_norm {
                rms_norm_inplace(q, w, eps);
            }
            if let Some(w) = &layer.k_norm {
                rms_norm_inplace(k, w, eps);
            }
            if let Some(r) = layer.rope {
                let (rope, tab) = (&self.ropes[r], &s.rope[r]);
                let half = rope.half();
                let (cos, sin) = (&tab.cos[..n * half], &tab.sin[..n * half]);
                rope.apply(q, hp.n_head, hp.head_dim, cos, sin);
                rope.apply(k, hp.n_head_kv, hp.head_dim, cos, sin);
            }
            for t in 0..n {
                let (slot, pos) = (batch.seq_ids[t], batch.positions[t] as usize);
                kv.write(
                    l,
                    slot,
                    pos,
                    &k[t * kd..(t + 1) * kd],
                    &v[t * vd..(t + 1) * vd],
                );
            }
            let bidir = (layer.mask == Mask::Bidirectional).then_some(ends);
            attention_batch(&layer.attn, kv, l, batch, bidir, q, att);
            layer.o.forward(file, att, n, proj);
            if let Some(norm) = &layer.post_attn_norm {
                norm.apply_inplace(proj, eps, xn);
            }
            residual_add(x, proj, res);
            if let Some(norm) = &layer.attn_res_norm {
                norm.apply_inplace(x, eps, xn);
            }

            // Feed-forward block.
            match &layer.ffn_norm {
                Some(norm) => norm.apply(x, eps, xn),
                None => xn.copy_from_slice(x),
            }
            match &layer.ffn {
                Ffn::Gated {
                    act,
                    gate: wg,
                    up: wu,
                    down: wd,
                } => {
                    Linear::forward_many([wg, wu], file, xn, n, [gate, up]);
                    match act {
                        Act::Silu => swiglu(gate, up),
                        Act::GeluTanh => geglu_tanh(gate, up),
                        Act::GeluErf => geglu_erf(gate, up),
                        Act::QuickGelu => gated_quick_gelu(gate, up),
                    }
                    wd.forward(file, gate, n, proj);
                }
                Ffn::Mlp {
                    act,
                    up: wu,
                    down: wd,
                } => {
                    wu.forward(file, xn, n, up);
                    match act {
                        Act::Silu => silu_inplace(up),
                        Act::GeluTanh => gelu_tanh_inplace(up),
                        Act::GeluErf => gelu_erf_inplace(up),
                        Act::QuickGelu => quick_gelu_inplace(up),
                    }
                    wd.forward(file, up, n, proj);
                }
                Ffn::Moe(moe) => moe.forward(file, xn, n, proj, &mut s.moe),
            }
            if let Some(norm) = &layer.post_ffn_norm {
                norm.apply_inplace(proj, eps, xn);
            }
            residual_add(x, proj, res);
            if let Some(norm) = &layer.ffn_res_norm {
                norm.apply_inplace(x, eps, xn);
            }
            after_layer(l, x);
        }

        let logits = match out {
            Out::Hidden(hidden) => {
                // Every row, through the final norm when the model has one.
                let hidden = &mut hidden[..n * d]; // [n, n_embd]
                match &self.output_norm {
                    Some(norm) => norm.apply(x, eps, hidden),
                    None => hidden.copy_from_slice(x),
                }
                return Ok(());
            }
            Out::Logits(logits) => logits,
        };
        // Final norm and output projection, only for the rows that want logits.
        let n_out = batch.n_outputs();
        if n_out == 0 {
            return Ok(());
        }
        let (Some(output_norm), Some(output)) = (&self.output_norm, &self.output) else {
            return Err(ModelError::BadBatch(format!(
                "{n_out} rows ask for logits, but this {} model has no LM head (it gives \
                 hidden states: Model::forward_hidden)",
                hp.arch
            )));
        };
        grow(&mut s.out_x, n_out * d);
        let out_x = &mut s.out_x[..n_out * d]; // [n_out, n_embd]
        gather_outputs(batch, x, d, out_x);
        let normed = &mut xn[..n_out * d]; // [n_out, n_embd]
        output_norm.apply(out_x, eps, normed);
        output.forward(file, normed, n_out, logits);
        if let Some(cap) = self.desc.output_softcap {
            softcap_inplace(logits, cap);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softcap_values() {
        let mut x = [0.0f32, 1.0, -100.0, 5.0];
        softcap_inplace(&mut x, 5.0);
        assert_eq!(x[0], 0.0);
        assert!((x[1] - 5.0 * 0.2f32.tanh()).abs() < 1e-6);
        assert!((x[2] + 5.0).abs() < 1e-5);
        assert!((x[3] - 5.0 * 1f32.tanh()).abs() < 1e-6);
    }

    #[test]
    fn residual_scale() {
        let mut x = [1.0f32, 2.0];
        residual_add(&mut x, &[1.0, 1.0], None);
        assert_eq!(x, [2.0, 3.0]);
        residual_add(&mut x, &[2.0, 4.0], Some(0.5));
        assert_eq!(x, [3.0, 5.0]);
    }
}
