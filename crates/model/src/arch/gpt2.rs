//! `gpt2` (GPT-2 and its descendants): learned position embeddings, LayerNorm with bias, a fused
//! `attn_qkv` with bias, a plain GELU(tanh) MLP with biases, no RoPE, tied output.
//!
//! [`LnDecoder`] here is the LayerNorm + plain-GELU-MLP decoder that `starcoder2` shares:
//!
//! ```text
//! x = token_embd[token] (+ position_embd[pos] when positions are learned)
//! per layer:  x += o( attention( rope?(q(ln(x))), rope?(k(ln(x))), v(ln(x)) ) )
//!             x += down( gelu_tanh( up(ln(x)) ) )
//! logits = output( ln(x) )            (output = token_embd when output.weight is absent)
//! ```
//!
//! Every LayerNorm has a weight and a bias; every projection may have a bias. q/k/v come from
//! `attn_q/k/v` or from a fused `attn_qkv` (q, k, v rows stacked, split into views at load).

use gguf::GgufFile;

use super::Architecture;
use crate::batch::Batch;
use crate::cache::Scratch;
use crate::decoder::{attention_batch, gather_outputs, MAX_VOCAB};
use crate::error::{ModelError, Result};
use crate::hparams::HParams;
use crate::layers::attention::AttnParams;
use crate::layers::ffn::gelu_tanh_inplace;
use crate::layers::kv_cache::KvStore;
use crate::layers::norm::layer_norm;
use crate::layers::rope::{Rope, RopeStyle};
use crate::ops::{add_inplace, grow};
use crate::weights::{Linear, Loader, Matrix};

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "gpt2")?;
    Ok(Box::new(LnDecoder::load(file, hp, PosKind::Learned)?))
}

/// How token positions enter the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PosKind {
    /// Added to the token embedding from `position_embd.weight` (`[n_pos, n_embd]`).
    Learned,
    /// Rotary, applied to q and k.
    Rope(RopeStyle),
}

/// Position handling, loaded.
#[derive(Clone, Debug)]
pub enum Positions {
    /// `[n_pos, n_embd]`
    Learned(Matrix),
    Rope(Rope),
}

/// A LayerNorm's weight and bias, `[n_embd]` each.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl LayerNorm {
    fn load(ld: &Loader, prefix: &str, d: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            w: ld.vector(&format!("{prefix}.weight"), d)?,
            b: ld.vector(&format!("{prefix}.bias"), d)?,
        })
    }

    /// Normalises every row of `x` (`[n, n_embd]`) into `out`.
    pub fn apply(&self, x: &[f32], eps: f32, out: &mut [f32]) {
        layer_norm(x, &self.w, Some(&self.b), eps, out);
    }
}

/// One block of an [`LnDecoder`].
#[derive(Clone, Debug)]
pub struct LnLayer {
    pub attn_norm: LayerNorm,
    /// `[q_dim, n_embd]`, `[k_dim, n_embd]`, `[v_dim, n_embd]`, `[n_embd, n_head*head_dim_v]`
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub ffn_norm: LayerNorm,
    /// `[n_ff, n_embd]`, `[n_embd, n_ff]`
    pub up: Linear,
    pub down: Linear,
}

/// A pre-LayerNorm decoder with a plain GELU(tanh) MLP (gpt2, starcoder2).
#[derive(Clone, Debug)]
pub struct LnDecoder {
    pub hp: HParams,
    pub vocab: usize,
    /// `[vocab, n_embd]`
    pub tok_embd: Matrix,
    pub pos: Positions,
    pub layers: Vec<LnLayer>,
    pub output_norm: LayerNorm,
    /// `[vocab, n_embd]` (a copy of `tok_embd`'s info when tied)
    pub output: Linear,
    pub attn: AttnParams,
}

impl LnDecoder {
    /// Loads and validates every tensor.
    pub fn load(file: &GgufFile, hp: HParams, pos: PosKind) -> Result<LnDecoder> {
        let ld = Loader::new(file);
        let d = hp.n_embd;
        if hp.n_ff == 0 {
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
        let pos = match pos {
            PosKind::Learned => Positions::Learned(ld.matrix_any_rows(
                "position_embd.weight",
                d,
                crate::hparams::MAX_DIM,
            )?),
            PosKind::Rope(style) => Positions::Rope(Rope::new(style, hp.n_rot, hp.rope_base)),
        };
        let att_out = hp.n_head * hp.head_dim_v;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
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
            layers.push(LnLayer {
                attn_norm: LayerNorm::load(&ld, &p("attn_norm"), d)?,
                q,
                k,
                v,
                o: ld.linear(&p("attn_output"), d, att_out)?,
                ffn_norm: LayerNorm::load(&ld, &p("ffn_norm"), d)?,
                up: ld.linear(&p("ffn_up"), hp.n_ff, d)?,
                down: ld.linear(&p("ffn_down"), d, hp.n_ff)?,
            });
        }
        let output_norm = LayerNorm::load(&ld, "output_norm", d)?;
        let attn = AttnParams {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            head_dim_v: hp.head_dim_v,
            scale: 1.0 / (hp.head_dim as f32).sqrt(),
            softcap: None,
            window: None,
        };
        Ok(LnDecoder {
            hp,
            vocab,
            tok_embd,
            pos,
            layers,
            output_norm,
            output,
            attn,
        })
    }
}

impl Architecture for LnDecoder {
    fn hparams(&self) -> &HParams {
        &self.hp
    }

    fn vocab(&self) -> usize {
        self.vocab
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
        // Learned positions exist only up to the table's length: check before writing anything.
        if let Positions::Learned(pe) = &self.pos {
            if let Some(i) = batch.positions.iter().position(|&p| p as usize >= pe.rows) {
                return Err(ModelError::BadBatch(format!(
                    "token {i}: position {} is beyond the model's {} learned positions",
                    batch.positions[i], pe.rows
                )));
            }
        }
        let (qd, kd, vd) = (hp.q_dim(), hp.k_dim(), hp.v_dim());
        let od = hp.n_head * hp.head_dim_v;
        let ff = hp.n_ff;
        let half = match &self.pos {
            Positions::Rope(r) => r.half(),
            Positions::Learned(_) => 0,
        };
        grow(&mut s.x, n * d);
        grow(&mut s.xn, n * d);
        grow(&mut s.q, n * qd);
        grow(&mut s.k, n * kd);
        grow(&mut s.v, n * vd);
        grow(&mut s.att, n * od);
        grow(&mut s.proj, n * d);
        grow(&mut s.up, n * ff);
        grow(&mut s.cos, n * half);
        grow(&mut s.sin, n * half);
        let x = &mut s.x[..n * d]; // [n, n_embd]
        let xn = &mut s.xn[..n * d]; // [n, n_embd]
        let q = &mut s.q[..n * qd]; // [n, q_dim]
        let k = &mut s.k[..n * kd]; // [n, k_dim]
        let v = &mut s.v[..n * vd]; // [n, v_dim]
        let att = &mut s.att[..n * od]; // [n, n_head*head_dim_v]
        let proj = &mut s.proj[..n * d]; // [n, n_embd]
        let up = &mut s.up[..n * ff]; // [n, n_ff]
        let cos = &mut s.cos[..n * half]; // [n, n_rot/2]
        let sin = &mut s.sin[..n * half]; // [n, n_rot/2]

        for (t, &tok) in batch.tokens.iter().enumerate() {
            self.tok_embd
                .row_f32(file, tok as usize, &mut x[t * d..(t + 1) * d]);
        }
        match &self.pos {
            Positions::Learned(pe) => {
                // xn is free until the first norm: use it for the position rows.
                for (t, &p) in batch.positions.iter().enumerate() {
                    pe.row_f32(file, p as usize, &mut xn[t * d..(t + 1) * d]);
                }
                add_inplace(x, xn);
            }
            Positions::Rope(r) => r.tables(&batch.positions, cos, sin),
        }

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            layer.attn_norm.apply(x, hp.norm_eps, xn);
            Linear::forward_many([&layer.q, &layer.k, &layer.v], file, xn, n, [q, k, v]);
            if let Positions::Rope(r) = &self.pos {
                r.apply(q, hp.n_head, hp.head_dim, cos, sin);
                r.apply(k, hp.n_head_kv, hp.head_dim, cos, sin);
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
            attention_batch(&self.attn, kv, l, batch, q, att);
            layer.o.forward(file, att, n, proj);
            add_inplace(x, proj);

            // MLP block.
            layer.ffn_norm.apply(x, hp.norm_eps, xn);
            layer.up.forward(file, xn, n, up);
            gelu_tanh_inplace(up);
            layer.down.forward(file, up, n, proj);
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
        self.output_norm.apply(out_x, hp.norm_eps, normed);
        self.output.forward(file, normed, n_out, logits);
        Ok(())
    }
}
