//! The "sandwich" decoder: blocks with a norm on the *output* of each sub-layer, before the
//! residual add (gemma2, gemma3, olmo2), optionally with the usual pre-norms as well:
//!
//! ```text
//! x = token_embd[token] · embd_scale                     (gemma: sqrt(n_embd); olmo2: 1)
//! per layer:  h = attn_norm(x)                           (pre-norm; olmo2 has none: h = x)
//!             h = o( attention( rope(qk_norm(q(h))), rope(qk_norm(k(h))), v(h) ) )
//!             x += post_attn_norm(h)
//!             h = ffn_norm(x)                            (pre-norm; olmo2 has none)
//!             x += post_ffw_norm( down( act(gate(h)) · up(h) ) )   (act: gelu_tanh or silu)
//! logits = softcap( output( output_norm(x) ) )           (output = token_embd when tied)
//! ```
//!
//! Sliding-window layers: with [`Swa`], layer `i` attends to the last `window` positions only
//! when `i % pattern < pattern - 1` (gemma2: pattern 2, even layers slide; gemma3: pattern 6,
//! every 6th layer is global), and may use its own RoPE base (gemma3's `rope.freq_base_swa`).
//! A plain KV cache keeps every position of those layers (the window is a mask); a windowed one
//! ([`crate::Model::new_cache_windowed`]) keeps only the window, in a ring buffer.

use gguf::GgufFile;

use crate::arch::Architecture;
use crate::batch::Batch;
use crate::cache::Scratch;
use crate::decoder::{attention_batch, gather_outputs, QkNorm, MAX_VOCAB};
use crate::error::{ModelError, Result};
use crate::hparams::HParams;
use crate::layers::attention::AttnParams;
use crate::layers::ffn::{geglu_tanh, swiglu};
use crate::layers::kv_cache::KvStore;
use crate::layers::norm::{rms_norm, rms_norm_inplace};
use crate::layers::rope::{Rope, RopeStyle};
use crate::ops::{add_inplace, grow};
use crate::weights::{Linear, Loader, Matrix};

/// Activation of the gated feed-forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// `silu(gate) · up` (olmo2)
    Silu,
    /// `gelu_tanh(gate) · up` (gemma)
    GeluTanh,
}

/// Sliding-window attention layout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Swa {
    /// Positions a sliding layer's query sees, its own included.
    pub window: usize,
    /// Layer `i` slides when `i % pattern < pattern - 1`.
    pub pattern: usize,
    /// RoPE base of the sliding layers (the global layers use `rope.freq_base`).
    pub rope_base: f32,
}

impl Swa {
    /// Whether layer `i` is a sliding-window layer.
    pub fn slides(&self, i: usize) -> bool {
        i % self.pattern < self.pattern - 1
    }
}

/// What differs between sandwich architectures.
#[derive(Clone, Debug)]
pub struct SandwichOptions {
    pub rope_style: RopeStyle,
    /// Whether blocks have pre-norms (`attn_norm`, `ffn_norm`): gemma yes, olmo2 no.
    pub pre_norms: bool,
    pub act: Act,
    /// Multiply the embeddings by `sqrt(n_embd)` (gemma).
    pub scale_embeddings: bool,
    /// Attention logit soft-cap, `cap · tanh(s / cap)` (gemma2).
    pub attn_softcap: Option<f32>,
    /// Soft-cap of the output logits (gemma2).
    pub final_softcap: Option<f32>,
    pub swa: Option<Swa>,
    /// Fail at load when `attn_q_norm`/`attn_k_norm` are missing (gemma3, olmo2).
    pub require_qk_norm: bool,
    /// Multiplies `q·k`; `None`: `1/sqrt(head_dim)`.
    pub attn_scale: Option<f32>,
    /// Linear RoPE scaling factor of the global (non-sliding) layers (gemma3 4B and up).
    pub rope_linear_global: Option<f32>,
}

/// One block.
#[derive(Clone, Debug)]
pub struct SandwichLayer {
    /// `[n_embd]` pre-norms (absent without pre-norms)
    pub attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Option<Vec<f32>>,
    /// `[q_dim, n_embd]`, `[k_dim, n_embd]`, `[v_dim, n_embd]`, `[n_embd, n_head*head_dim_v]`
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub q_norm: Option<QkNorm>,
    pub k_norm: Option<QkNorm>,
    /// `[n_embd]` norms of the sub-layer outputs
    pub post_attn_norm: Vec<f32>,
    pub post_ffn_norm: Vec<f32>,
    /// `[n_ff, n_embd]`, `[n_ff, n_embd]`, `[n_embd, n_ff]`
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    /// Attention shape and mask of this layer (window set on sliding layers).
    pub attn: AttnParams,
    /// Whether this layer uses the sliding layers' RoPE (`Sandwich::rope_swa`).
    pub local_rope: bool,
}

/// A loaded sandwich model.
#[derive(Clone, Debug)]
pub struct Sandwich {
    pub hp: HParams,
    pub opts: SandwichOptions,
    pub vocab: usize,
    /// `[vocab, n_embd]`
    pub tok_embd: Matrix,
    pub layers: Vec<SandwichLayer>,
    /// `[n_embd]`
    pub output_norm: Vec<f32>,
    /// `[vocab, n_embd]` (`tok_embd` again when tied)
    pub output: Linear,
    /// RoPE of the global layers and of the sliding layers.
    pub rope: Rope,
    pub rope_swa: Rope,
}

/// A per-head (`[head_dim]`) or whole-projection (`[width]`) q/k norm, when present.
fn qk_norm(ld: &Loader, name: &str, head_dim: usize, width: usize) -> Result<Option<QkNorm>> {
    let Some(t) = ld.file.tensor_info(name) else {
        return Ok(None);
    };
    if t.dims == [width as u64] && width != head_dim {
        Ok(Some(QkNorm::Whole(ld.vector(name, width)?)))
    } else {
        Ok(Some(QkNorm::PerHead(ld.vector(name, head_dim)?)))
    }
}

/// Reads an optional positive soft-cap `{arch}.{suffix}`.
pub fn read_softcap(file: &GgufFile, key: &str) -> Result<Option<f32>> {
    if file.get(key).is_none() {
        return Ok(None);
    }
    let v = file.get_f32(key)?;
    if !(v.is_finite() && v > 0.0) {
        return Err(ModelError::BadHparam {
            key: key.to_string(),
            msg: format!("soft-cap {v} is not a positive number"),
        });
    }
    Ok(Some(v))
}

/// Reads the linear RoPE scaling factor (`{arch}.rope.scaling.type` = "linear",
/// `{arch}.rope.scaling.factor`); `None` when absent, "none", or a factor of 1. Another scaling
/// type is an error (rather than silently wrong positions).
pub fn read_linear_rope_scaling(file: &GgufFile, arch: &str) -> Result<Option<f32>> {
    let tkey = format!("{arch}.rope.scaling.type");
    let fkey = format!("{arch}.rope.scaling.factor");
    let ty = match file.get(&tkey) {
        None => "none",
        Some(_) => file.get_str(&tkey)?,
    };
    match ty {
        "none" => Ok(None),
        "linear" => {
            let f = file.get_f32(&fkey)?;
            if !f.is_finite() || f <= 0.0 {
                return Err(ModelError::BadHparam {
                    key: fkey,
                    msg: format!("{f} is not a positive number"),
                });
            }
            Ok((f != 1.0).then_some(f))
        }
        other => Err(ModelError::BadHparam {
            key: tkey,
            msg: format!("RoPE scaling '{other}' is not supported for {arch} (only linear)"),
        }),
    }
}

/// Reads `{arch}.attention.sliding_window` (required for sliding architectures) as a window.
pub fn read_window(file: &GgufFile, arch: &str, n_ctx_train: usize) -> Result<usize> {
    let key = format!("{arch}.attention.sliding_window");
    let w = file.get_u32(&key)? as usize;
    if w == 0 {
        return Err(ModelError::BadHparam {
            key,
            msg: "a sliding window of 0 positions".into(),
        });
    }
    // A window past the context is the same as none; clamp so nothing sized from it is huge.
    Ok(w.min(n_ctx_train.max(1)))
}

impl Sandwich {
    /// Loads and validates every tensor of a sandwich model.
    pub fn load(file: &GgufFile, hp: HParams, opts: SandwichOptions) -> Result<Sandwich> {
        let ld = Loader::new(file);
        let d = hp.n_embd;
        if hp.n_ff == 0 {
            return Err(ModelError::BadHparam {
                key: format!("{}.feed_forward_length", hp.arch),
                msg: "missing or zero".into(),
            });
        }
        if let Some(swa) = &opts.swa {
            if swa.pattern == 0 || swa.window == 0 || swa.rope_base.is_nan() || swa.rope_base <= 0.0
            {
                return Err(ModelError::BadHparam {
                    key: format!("{}.attention.sliding_window", hp.arch),
                    msg: format!("bad sliding-window layout {swa:?}"),
                });
            }
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
        let base_attn = AttnParams {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            head_dim_v: hp.head_dim_v,
            scale: opts
                .attn_scale
                .unwrap_or_else(|| 1.0 / (hp.head_dim as f32).sqrt()),
            softcap: opts.attn_softcap,
            window: None,
        };
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let q_norm = qk_norm(&ld, &p("attn_q_norm.weight"), hp.head_dim, hp.q_dim())?;
            let k_norm = qk_norm(&ld, &p("attn_k_norm.weight"), hp.head_dim, hp.k_dim())?;
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
            let (attn_norm, ffn_norm) = if opts.pre_norms {
                (
                    Some(ld.vector(&p("attn_norm.weight"), d)?),
                    Some(ld.vector(&p("ffn_norm.weight"), d)?),
                )
            } else {
                (None, None)
            };
            let slides = opts.swa.is_some_and(|s| s.slides(i));
            let attn = AttnParams {
                window: if slides {
                    opts.swa.map(|s| s.window)
                } else {
                    None
                },
                ..base_attn
            };
            layers.push(SandwichLayer {
                attn_norm,
                ffn_norm,
                q: ld.linear(&p("attn_q"), hp.q_dim(), d)?,
                k: ld.linear(&p("attn_k"), hp.k_dim(), d)?,
                v: ld.linear(&p("attn_v"), hp.v_dim(), d)?,
                o: ld.linear(&p("attn_output"), d, att_out)?,
                q_norm,
                k_norm,
                post_attn_norm: ld.vector(&p("post_attention_norm.weight"), d)?,
                post_ffn_norm: ld.vector(&p("post_ffw_norm.weight"), d)?,
                gate: ld.linear(&p("ffn_gate"), hp.n_ff, d)?,
                up: ld.linear(&p("ffn_up"), hp.n_ff, d)?,
                down: ld.linear(&p("ffn_down"), d, hp.n_ff)?,
                attn,
                local_rope: slides,
            });
        }
        let mut rope = Rope::new(opts.rope_style, hp.n_rot, hp.rope_base);
        if let Some(f) = opts.rope_linear_global {
            rope = rope.with_linear_scaling(f);
        }
        let swa_base = opts.swa.map_or(hp.rope_base, |s| s.rope_base);
        let rope_swa = Rope::new(opts.rope_style, hp.n_rot, swa_base);
        Ok(Sandwich {
            hp,
            opts,
            vocab,
            tok_embd,
            layers,
            output_norm,
            output,
            rope,
            rope_swa,
        })
    }
}

/// `cap · tanh(x / cap)` on every value.
pub fn softcap_inplace(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in x.iter_mut() {
        *v = cap * (*v * inv).tanh();
    }
}

impl Architecture for Sandwich {
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
        let hp = &self.hp;
        let eps = hp.norm_eps;
        let n = batch.len();
        let d = hp.n_embd;
        let (qd, kd, vd) = (hp.q_dim(), hp.k_dim(), hp.v_dim());
        let od = hp.n_head * hp.head_dim_v;
        let ff = hp.n_ff;
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
        if s.extra.len() < 2 {
            s.extra.resize(2, Vec::new());
        }
        let [cos_swa, sin_swa] = &mut s.extra[..2] else {
            unreachable!("two extra buffers")
        };
        grow(cos_swa, n * half);
        grow(sin_swa, n * half);
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
        let cos = &mut s.cos[..n * half]; // [n, n_rot/2] global layers
        let sin = &mut s.sin[..n * half]; // [n, n_rot/2]
        let cos_swa = &mut cos_swa[..n * half]; // [n, n_rot/2] sliding layers
        let sin_swa = &mut sin_swa[..n * half]; // [n, n_rot/2]

        for (t, &tok) in batch.tokens.iter().enumerate() {
            let row = &mut x[t * d..(t + 1) * d];
            self.tok_embd.row_f32(file, tok as usize, row);
        }
        if self.opts.scale_embeddings {
            let scale = (d as f32).sqrt();
            for val in x.iter_mut() {
                *val *= scale;
            }
        }
        self.rope.tables(&batch.positions, cos, sin);
        self.rope_swa.tables(&batch.positions, cos_swa, sin_swa);

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            match &layer.attn_norm {
                Some(w) => rms_norm(x, w, eps, xn),
                None => xn.copy_from_slice(x),
            }
            Linear::forward_many([&layer.q, &layer.k, &layer.v], file, xn, n, [q, k, v]);
            if let Some(qn) = &layer.q_norm {
                qn.apply(q, eps);
            }
            if let Some(kn) = &layer.k_norm {
                kn.apply(k, eps);
            }
            let (rope, c, sn) = if layer.local_rope {
                (&self.rope_swa, &*cos_swa, &*sin_swa)
            } else {
                (&self.rope, &*cos, &*sin)
            };
            rope.apply(q, hp.n_head, hp.head_dim, c, sn);
            rope.apply(k, hp.n_head_kv, hp.head_dim, c, sn);
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
            attention_batch(&layer.attn, kv, l, batch, q, att);
            layer.o.forward(file, att, n, proj);
            rms_norm_inplace(proj, &layer.post_attn_norm, eps);
            add_inplace(x, proj);

            // Feed-forward block.
            match &layer.ffn_norm {
                Some(w) => rms_norm(x, w, eps, xn),
                None => xn.copy_from_slice(x),
            }
            Linear::forward_many([&layer.gate, &layer.up], file, xn, n, [gate, up]);
            match self.opts.act {
                Act::Silu => swiglu(gate, up),
                Act::GeluTanh => geglu_tanh(gate, up),
            }
            layer.down.forward(file, gate, n, proj);
            rms_norm_inplace(proj, &layer.post_ffn_norm, eps);
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
        rms_norm(out_x, &self.output_norm, eps, normed);
        self.output.forward(file, normed, n_out, logits);
        if let Some(cap) = self.opts.final_softcap {
            softcap_inplace(logits, cap);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_patterns() {
        let g2 = Swa {
            window: 8,
            pattern: 2,
            rope_base: 1e4,
        };
        let slides: Vec<bool> = (0..4).map(|i| g2.slides(i)).collect();
        assert_eq!(slides, [true, false, true, false]);
        let g3 = Swa { pattern: 6, ..g2 };
        let slides: Vec<bool> = (0..12).map(|i| g3.slides(i)).collect();
        let global: Vec<usize> = (0..12).filter(|&i| !slides[i]).collect();
        assert_eq!(global, [5, 11]);
    }

    #[test]
    fn softcap_values() {
        let mut x = [0.0f32, 1.0, -100.0, 5.0];
        softcap_inplace(&mut x, 5.0);
        assert_eq!(x[0], 0.0);
        assert!((x[1] - 5.0 * 0.2f32.tanh()).abs() < 1e-6);
        assert!((x[2] + 5.0).abs() < 1e-5);
        assert!((x[3] - 5.0 * 1f32.tanh()).abs() < 1e-6);
    }
}
