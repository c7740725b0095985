//! The llama-style decoder shared by several architectures:
//!
//! ```text
//! x = token_embd[token]
//! per layer:  x += o( attention( rope(qk_norm(q(norm(x)))), rope(qk_norm(k(norm(x)))), v(norm(x)) ) )
//!             x += down( silu(gate(norm(x))) * up(norm(x)) )      (or a mixture of experts)
//! logits = output( norm(x) )          (output = token_embd when output.weight is absent)
//! ```
//!
//! Optional pieces are found by tensor name: biases on any projection (`blk.N.attn_q.bias`…),
//! q/k norms either per head (`[head_dim]`) or over the whole projection (`[n_head*head_dim]`),
//! fused projections (`attn_qkv` = q, k, v rows stacked; `ffn_up` of `2*n_ff` rows = gate rows
//! then up rows, when `ffn_gate` is absent: phi3), experts when `{arch}.expert_count` > 0
//! ([`crate::layers::moe`]: mixtral, qwen3moe).

use gguf::GgufFile;

use crate::arch::Architecture;
use crate::batch::Batch;
use crate::cache::Scratch;
use crate::error::{ModelError, Result};
use crate::hparams::HParams;
use crate::layers::attention::{attend_head, attend_tile, AttnParams, TILE_ROWS};
use crate::layers::ffn::swiglu;
use crate::layers::kv_cache::KvStore;
use crate::layers::moe::{MoeFfn, MoeParams};
use crate::layers::norm::{rms_norm, rms_norm_inplace};
use crate::layers::rope::{Rope, RopeStyle};
use crate::model::MAX_BATCH;
use crate::ops::{add_inplace, grow, par_for, SharedMut};
use crate::weights::{Linear, Loader, Matrix};

/// Largest vocabulary accepted (rows of `token_embd.weight`).
pub const MAX_VOCAB: usize = 1 << 22;

/// What differs between llama-like architectures.
#[derive(Clone, Debug)]
pub struct DecoderOptions {
    pub rope_style: RopeStyle,
    /// Fail at load when `attn_q_norm`/`attn_k_norm` are missing (qwen3).
    pub require_qk_norm: bool,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            rope_style: RopeStyle::Norm,
            require_qk_norm: false,
        }
    }
}

/// An RMSNorm on queries or keys: per head (qwen3, gemma3) or over the whole projection (olmo2).
#[derive(Clone, Debug)]
pub enum QkNorm {
    /// `[head_dim]`, applied to each head.
    PerHead(Vec<f32>),
    /// `[n_heads * head_dim]`, applied to the whole row.
    Whole(Vec<f32>),
}

impl QkNorm {
    fn load(ld: &Loader, name: &str, head_dim: usize, whole: usize) -> Result<Option<QkNorm>> {
        let Some(t) = ld.file.tensor_info(name) else {
            return Ok(None);
        };
        if t.dims == [whole as u64] && whole != head_dim {
            Ok(Some(QkNorm::Whole(ld.vector(name, whole)?)))
        } else {
            Ok(Some(QkNorm::PerHead(ld.vector(name, head_dim)?)))
        }
    }

    /// Normalises `x` (`[n, whole]`) in place.
    pub fn apply(&self, x: &mut [f32], eps: f32) {
        match self {
            QkNorm::PerHead(w) | QkNorm::Whole(w) => rms_norm_inplace(x, w, eps),
        }
    }
}

/// One transformer block.
#[derive(Clone, Debug)]
pub struct DecoderLayer {
    /// `[n_embd]`
    pub attn_norm: Vec<f32>,
    /// `[q_dim, n_embd]`, `[k_dim, n_embd]`, `[v_dim, n_embd]`, `[n_embd, n_head*head_dim_v]`
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub q_norm: Option<QkNorm>,
    pub k_norm: Option<QkNorm>,
    /// `[n_embd]`
    pub ffn_norm: Vec<f32>,
    pub ffn: Ffn,
}

/// The feed-forward of a block.
#[derive(Clone, Debug)]
pub enum Ffn {
    /// SwiGLU: `down(silu(gate(x)) · up(x))`; `[n_ff, n_embd]`, `[n_ff, n_embd]`, `[n_embd, n_ff]`.
    Dense {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    /// Mixture of SwiGLU experts.
    Moe(MoeFfn),
}

/// A loaded llama-like model.
#[derive(Clone, Debug)]
pub struct Decoder {
    pub hp: HParams,
    pub opts: DecoderOptions,
    pub vocab: usize,
    /// `[vocab, n_embd]`
    pub tok_embd: Matrix,
    pub layers: Vec<DecoderLayer>,
    /// `[n_embd]`
    pub output_norm: Vec<f32>,
    /// `[vocab, n_embd]` (a copy of `tok_embd`'s info when tied)
    pub output: Linear,
    pub rope: Rope,
    pub attn: AttnParams,
}

impl Decoder {
    /// Loads and validates every tensor of a llama-like model.
    pub fn load(file: &GgufFile, hp: HParams, opts: DecoderOptions) -> Result<Decoder> {
        let ld = Loader::new(file);
        let d = hp.n_embd;
        let moe = MoeParams::read(file, &hp.arch)?;
        if hp.n_ff == 0 && moe.is_none() {
            return Err(ModelError::BadHparam {
                key: format!("{}.feed_forward_length", hp.arch),
                msg: "missing or zero".into(),
            });
        }
        let tok_embd = ld.matrix_any_rows("token_embd.weight", d, MAX_VOCAB)?;
        let vocab = tok_embd.rows;
        let output = match ld.linear_opt("output", vocab, d)? {
            Some(l) => l,
            None => Linear {
                w: tok_embd.clone(),
                b: None,
            },
        };
        let output_norm = ld.vector("output_norm.weight", d)?;
        let att_out = hp.n_head * hp.head_dim_v;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let q_norm = QkNorm::load(&ld, &p("attn_q_norm.weight"), hp.head_dim, hp.q_dim())?;
            let k_norm = QkNorm::load(&ld, &p("attn_k_norm.weight"), hp.head_dim, hp.k_dim())?;
            if opts.require_qk_norm && (q_norm.is_none() || k_norm.is_none()) {
                let missing = if q_norm.is_none() {
                    "attn_q_norm"
                } else {
                    "attn_k_norm"
                };
                return Err(gguf::GgufError::MissingTensor {
                    path: file.path().to_path_buf(),
                    tensor: p(&format!("{missing}.weight")),
                }
                .into());
            }
            let (q, k, v) = if ld.has(&p("attn_qkv.weight")) && !ld.has(&p("attn_q.weight")) {
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
            let ffn = match &moe {
                Some(mp) => Ffn::Moe(MoeFfn::load(&ld, i, d, mp)?),
                None => {
                    let ff = hp.n_ff;
                    let fused = !ld.has(&p("ffn_gate.weight"))
                        && ld
                            .file
                            .tensor_info(&p("ffn_up.weight"))
                            .map(|t| t.dims.clone())
                            == Some(vec![d as u64, 2 * ff as u64]);
                    let (gate, up) = if fused {
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
                    Ffn::Dense { gate, up, down }
                }
            };
            layers.push(DecoderLayer {
                attn_norm: ld.vector(&p("attn_norm.weight"), d)?,
                q,
                k,
                v,
                o: ld.linear(&p("attn_output"), d, att_out)?,
                q_norm,
                k_norm,
                ffn_norm: ld.vector(&p("ffn_norm.weight"), d)?,
                ffn,
            });
        }
        let rope = Rope::new(opts.rope_style, hp.n_rot, hp.rope_base);
        let attn = AttnParams {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            head_dim_v: hp.head_dim_v,
            scale: 1.0 / (hp.head_dim as f32).sqrt(),
            softcap: None,
            window: None,
        };
        Ok(Decoder {
            hp,
            opts,
            vocab,
            tok_embd,
            layers,
            output_norm,
            output,
            rope,
            attn,
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
/// `q`: `[n, n_head*head_dim]` → `att`: `[n, n_head*head_dim_v]`.
pub fn attention_batch(
    p: &AttnParams,
    kv: &KvStore,
    layer: usize,
    batch: &Batch,
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
        attention_part(p, kv, layer, batch, q, &out, c0..c1);
        c0 = c1;
    }
}

/// [`attention_batch`] of the batch entries `range` (at most [`MAX_BATCH`]), as one pool job.
fn attention_part(
    p: &AttnParams,
    kv: &KvStore,
    layer: usize,
    batch: &Batch,
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
    let invariant = kernels::batch_invariant();
    let tiled =
        group <= TILE_ROWS && (invariant || kernels::cpu::level() != kernels::Level::Scalar);
    let min_run = if invariant { 1 } else { TILE_MIN };
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
                &mut |t, h, o| {
                    // SAFETY: (t, h) belongs to this task's tile and KV head only; the caller
                    // holds `att` mutably for the whole call.
                    unsafe { out.slice(t * od + h * p.head_dim_v, p.head_dim_v) }.copy_from_slice(o)
                },
            );
        } else {
            let j = task - tile_tasks;
            let (t, h) = (singles[j / p.n_head] as usize, j % p.n_head);
            attend_one(p, kv, layer, batch, q, out, t, h);
        }
    });
}

/// [`attend_head`] of token `t`, head `h`, into its part of `out`.
#[allow(clippy::too_many_arguments)]
fn attend_one(
    p: &AttnParams,
    kv: &KvStore,
    layer: usize,
    batch: &Batch,
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
        batch.positions[t] as usize,
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

impl Architecture for Decoder {
    fn hparams(&self) -> &HParams {
        &self.hp
    }

    fn vocab(&self) -> usize {
        self.vocab
    }

    fn kv_window(&self, _layer: usize) -> Option<usize> {
        self.attn.window
    }

    fn forward(
        &self,
        file: &GgufFile,
        batch: &Batch,
        kv: &mut KvStore,
        s: &mut Scratch,
        logits: &mut [f32],
    ) -> Result<()> {
        let hp = &self.hp;
        let n = batch.len();
        let d = hp.n_embd;
        let (qd, kd, vd) = (hp.q_dim(), hp.k_dim(), hp.v_dim());
        let od = hp.n_head * hp.head_dim_v;
        // Dense feed-forward width (MoE layers use their own buffers in `s.extra`).
        let ff = if self
            .layers
            .iter()
            .any(|l| matches!(l.ffn, Ffn::Dense { .. }))
        {
            hp.n_ff
        } else {
            0
        };
        let half = self.rope.half();
        grow(&mut s.x, n * d);
        grow(&mut s.xn, n * d);
        grow(&mut s.q, n * qd);
        grow(&mut s.k, n * kd);
        grow(&mut s.v, n * vd);
        grow(&mut s.att, n * od);
        grow(&mut s.proj, n * d);
        grow(&mut s.gate, n * ff);
        grow(&mut s.up, n * ff);
        grow(&mut s.cos, n * half);
        grow(&mut s.sin, n * half);
        // Views of exactly this batch's size.
        let x = &mut s.x[..n * d]; // [n, n_embd]
        let xn = &mut s.xn[..n * d]; // [n, n_embd]
        let q = &mut s.q[..n * qd]; // [n, q_dim]
        let k = &mut s.k[..n * kd]; // [n, k_dim]
        let v = &mut s.v[..n * vd]; // [n, v_dim]
        let att = &mut s.att[..n * od]; // [n, n_head*head_dim_v]
        let proj = &mut s.proj[..n * d]; // [n, n_embd]
        let gate = &mut s.gate[..n * ff]; // [n, n_ff]
        let up = &mut s.up[..n * ff]; // [n, n_ff]
        let cos = &mut s.cos[..n * half]; // [n, n_rot/2]
        let sin = &mut s.sin[..n * half]; // [n, n_rot/2]

        for (t, &tok) in batch.tokens.iter().enumerate() {
            self.tok_embd
                .row_f32(file, tok as usize, &mut x[t * d..(t + 1) * d]);
        }
        self.rope.tables(&batch.positions, cos, sin);

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            rms_norm(x, &layer.attn_norm, hp.norm_eps, xn);
            Linear::forward_many([&layer.q, &layer.k, &layer.v], file, xn, n, [q, k, v]);
            if let Some(qn) = &layer.q_norm {
                qn.apply(q, hp.norm_eps);
            }
            if let Some(kn) = &layer.k_norm {
                kn.apply(k, hp.norm_eps);
            }
            self.rope.apply(q, hp.n_head, hp.head_dim, cos, sin);
            self.rope.apply(k, hp.n_head_kv, hp.head_dim, cos, sin);
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
            attention_batch(&self.attn, kv, l, batch, q, att);
            layer.o.forward(file, att, n, proj);
            add_inplace(x, proj);

            // Feed-forward block.
            rms_norm(x, &layer.ffn_norm, hp.norm_eps, xn);
            match &layer.ffn {
                Ffn::Dense {
                    gate: wg,
                    up: wu,
                    down: wd,
                } => {
                    Linear::forward_many([wg, wu], file, xn, n, [gate, up]);
                    swiglu(gate, up);
                    wd.forward(file, gate, n, proj);
                }
                Ffn::Moe(moe) => moe.forward(file, xn, n, proj, &mut s.extra),
            }
            add_inplace(x, proj);
        }

        // Final norm and output projection, only for the rows that want logits.
        let n_out = batch.n_outputs();
        if n_out == 0 {
            return Ok(());
        }
        grow(&mut s.out_x, n_out * d);
        let out_x = &mut s.out_x[..n_out * d]; // [n_out, n_embd]
        gather_outputs(batch, x, d, out_x);
        let normed = &mut xn[..n_out * d]; // [n_out, n_embd]
        rms_norm(out_x, &self.output_norm, hp.norm_eps, normed);
        self.output.forward(file, normed, n_out, logits);
        Ok(())
    }
}
