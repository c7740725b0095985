//! Mixture-of-experts feed-forward (mixtral, qwen3moe).
//!
//! ```text
//! p      = softmax(router · x)                      // [n_expert] per token
//! chosen = the n_used largest p (ties: lower index first)
//! w_e    = p_e / Σ_chosen p   (or p_e when not renormalised)
//! y      = Σ_chosen w_e · down_e( silu(gate_e(x)) · up_e(x) )
//! ```
//!
//! The experts are stacked in 3-D tensors (`ffn_{gate,up,down}_exps`, GGUF dims
//! `[cols, rows, n_expert]`); expert `e` is a [`Matrix`] view of its slice of the bytes.
//! A batch is run expert by expert: the tokens routed to expert `e` are gathered into one block
//! so each expert does one matrix product per batch (not one per token).

use gguf::GgufFile;

use crate::error::{ModelError, Result};
use crate::hparams::Meta;
use crate::layers::ffn::swiglu;
use crate::ops::{grow, softmax};
use crate::weights::{Linear, Loader, Matrix};

/// Most experts a token may use (sizes a stack array in the router).
pub const MAX_USED: usize = 64;
/// Most experts a layer may have.
pub const MAX_EXPERTS: usize = 1024;

/// MoE hyper-parameters (`{arch}.expert_*` keys).
#[derive(Clone, Debug, PartialEq)]
pub struct MoeParams {
    /// `{arch}.expert_count`
    pub n_expert: usize,
    /// `{arch}.expert_used_count`
    pub n_used: usize,
    /// Hidden size of one expert: `{arch}.expert_feed_forward_length`, else
    /// `{arch}.feed_forward_length`.
    pub n_ff: usize,
    /// Rescale the chosen experts' probabilities to sum to 1 (`{arch}.expert_weights_norm`,
    /// default true: mixtral and qwen3moe do).
    pub renormalize: bool,
}

impl MoeParams {
    /// Reads the expert keys of `arch`; `None` when the model has no experts (`expert_count`
    /// absent or 0).
    pub fn read(file: &GgufFile, arch: &str) -> Result<Option<MoeParams>> {
        let m = Meta { file, arch };
        if !m.has("expert_count") || file.get_u32(&m.key("expert_count"))? == 0 {
            return Ok(None);
        }
        let n_expert = m.dim("expert_count")?;
        if n_expert > MAX_EXPERTS {
            return Err(ModelError::BadHparam {
                key: m.key("expert_count"),
                msg: format!("{n_expert} experts is more than {MAX_EXPERTS}"),
            });
        }
        let n_used = m.dim("expert_used_count")?;
        if n_used > n_expert || n_used > MAX_USED {
            return Err(ModelError::BadHparam {
                key: m.key("expert_used_count"),
                msg: format!(
                    "{n_used} must be at most the expert count {n_expert} and at most {MAX_USED}"
                ),
            });
        }
        let n_ff = match m.dim_opt("expert_feed_forward_length")? {
            Some(f) => f,
            None => m.dim("feed_forward_length")?,
        };
        let renormalize = if m.has("expert_weights_norm") {
            file.get_bool(&m.key("expert_weights_norm"))?
        } else {
            true
        };
        Ok(Some(MoeParams {
            n_expert,
            n_used,
            n_ff,
            renormalize,
        }))
    }
}

/// One SwiGLU expert: views into the stacked tensors.
#[derive(Clone, Debug)]
pub struct Expert {
    /// `[n_ff, n_embd]`
    pub gate: Matrix,
    /// `[n_ff, n_embd]`
    pub up: Matrix,
    /// `[n_embd, n_ff]`
    pub down: Matrix,
}

/// The MoE feed-forward of one layer.
#[derive(Clone, Debug)]
pub struct MoeFfn {
    pub params: MoeParams,
    /// `[n_expert, n_embd]`
    pub router: Linear,
    pub experts: Vec<Expert>,
}

/// Scratch buffers of [`MoeFfn::forward`] (grown as needed, never shrunk).
#[derive(Clone, Debug, Default)]
pub struct MoeScratch {
    /// `[n, n_expert]` router probabilities, then routing weights
    pub probs: Vec<f32>,
    /// `[m, n_embd]` rows of the tokens routed to one expert
    pub xe: Vec<f32>,
    /// `[m, n_ff]` gate and up activations of one expert
    pub ge: Vec<f32>,
    pub ue: Vec<f32>,
    /// `[m, n_embd]` one expert's outputs
    pub ye: Vec<f32>,
}

impl MoeFfn {
    /// Loads `blk.{layer}.ffn_gate_inp` and `blk.{layer}.ffn_{gate,up,down}_exps`, or the
    /// one-tensor-per-expert form of older Mixtral files (`blk.{layer}.ffn_gate.{e}.weight`…)
    /// when the stacks are absent.
    pub fn load(ld: &Loader, layer: usize, n_embd: usize, params: &MoeParams) -> Result<MoeFfn> {
        let p = |s: &str| format!("blk.{layer}.{s}");
        let (e, ff, d) = (params.n_expert, params.n_ff, n_embd);
        let router = ld.linear(&p("ffn_gate_inp"), e, d)?;
        let stacked = ld.has(&p("ffn_gate_exps.weight")) || !ld.has(&p("ffn_gate.0.weight"));
        let (gate, up, down) = if stacked {
            (
                ld.matrix_stack(&p("ffn_gate_exps.weight"), e, ff, d)?,
                ld.matrix_stack(&p("ffn_up_exps.weight"), e, ff, d)?,
                ld.matrix_stack(&p("ffn_down_exps.weight"), e, d, ff)?,
            )
        } else {
            let each = |name: &str, rows: usize, cols: usize| -> Result<Vec<Matrix>> {
                (0..e)
                    .map(|x| ld.matrix(&p(&format!("{name}.{x}.weight")), rows, cols))
                    .collect()
            };
            (
                each("ffn_gate", ff, d)?,
                each("ffn_up", ff, d)?,
                each("ffn_down", d, ff)?,
            )
        };
        let experts = gate
            .into_iter()
            .zip(up)
            .zip(down)
            .map(|((gate, up), down)| Expert { gate, up, down })
            .collect();
        Ok(MoeFfn {
            params: params.clone(),
            router,
            experts,
        })
    }

    /// Router weights of every token: `probs` (`[n, n_expert]`, the router logits on entry)
    /// becomes the weight of each chosen expert and 0 elsewhere.
    pub fn route(&self, probs: &mut [f32]) {
        let (e, k) = (self.params.n_expert, self.params.n_used);
        for row in probs.chunks_exact_mut(e) {
            softmax(row);
            // The k largest, one linear scan each (n_expert is small).
            let mut chosen = [0usize; MAX_USED];
            let mut weights = [0f32; MAX_USED];
            for j in 0..k {
                let mut best = usize::MAX;
                for (i, &p) in row.iter().enumerate() {
                    if chosen[..j].contains(&i) {
                        continue;
                    }
                    if best == usize::MAX || p > row[best] {
                        best = i;
                    }
                }
                chosen[j] = best;
                weights[j] = row[best];
            }
            let sum: f32 = weights[..k].iter().sum();
            let scale = if self.params.renormalize && sum > 0.0 {
                1.0 / sum
            } else {
                1.0
            };
            row.fill(0.0);
            for j in 0..k {
                row[chosen[j]] = weights[j] * scale;
            }
        }
    }

    /// `xn` (`[n, n_embd]`, normalised) → `out` (`[n, n_embd]`, overwritten), with the
    /// scratch buffers of `bufs`.
    pub fn forward(
        &self,
        file: &GgufFile,
        xn: &[f32],
        n: usize,
        out: &mut [f32],
        bufs: &mut MoeScratch,
    ) {
        let (e, ff) = (self.params.n_expert, self.params.n_ff);
        let d = self.router.cols();
        let MoeScratch {
            probs,
            xe,
            ge,
            ue,
            ye,
        } = bufs;
        grow(probs, n * e);
        grow(xe, n * d);
        grow(ge, n * ff);
        grow(ue, n * ff);
        grow(ye, n * d);
        let probs = &mut probs[..n * e]; // [n, n_expert]
        self.router.forward(file, xn, n, probs);
        self.route(probs);

        out.fill(0.0);
        for (ei, ex) in self.experts.iter().enumerate() {
            // Gather the rows of the tokens routed to this expert.
            let mut m = 0;
            for t in 0..n {
                if probs[t * e + ei] != 0.0 {
                    xe[m * d..(m + 1) * d].copy_from_slice(&xn[t * d..(t + 1) * d]);
                    m += 1;
                }
            }
            if m == 0 {
                continue;
            }
            let x_m = &xe[..m * d]; // [m, n_embd]
            let g_m = &mut ge[..m * ff]; // [m, n_ff]
            let u_m = &mut ue[..m * ff]; // [m, n_ff]
            let y_m = &mut ye[..m * d]; // [m, n_embd]
            kernels::matmul(&ex.gate.q(file), x_m, m, g_m);
            kernels::matmul(&ex.up.q(file), x_m, m, u_m);
            swiglu(g_m, u_m);
            kernels::matmul(&ex.down.q(file), g_m, m, y_m);
            // Scatter back, weighted, in the same token order.
            let mut j = 0;
            for t in 0..n {
                let w = probs[t * e + ei];
                if w != 0.0 {
                    let (o, y) = (&mut out[t * d..(t + 1) * d], &y_m[j * d..(j + 1) * d]);
                    for (ov, yv) in o.iter_mut().zip(y) {
                        *ov += w * yv;
                    }
                    j += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gguf::{GgmlType, TensorInfo};

    fn moe(n_expert: usize, n_used: usize, renormalize: bool) -> MoeFfn {
        let info = TensorInfo {
            name: "r".into(),
            dims: vec![1, n_expert as u64],
            ty: GgmlType::F32,
            offset: 0,
            size: 4 * n_expert as u64,
        };
        MoeFfn {
            params: MoeParams {
                n_expert,
                n_used,
                n_ff: 1,
                renormalize,
            },
            router: Linear {
                w: Matrix {
                    info,
                    rows: n_expert,
                    cols: 1,
                },
                b: None,
            },
            experts: Vec::new(),
        }
    }

    #[test]
    fn route_picks_top_k_and_renormalises() {
        let m = moe(4, 2, true);
        let mut p = vec![
            0.5f32, 2.0, -1.0, 1.0, /* second token */ 3.0, 3.0, 0.0, 0.0,
        ];
        m.route(&mut p);
        // Token 0: experts 1 and 3, weights e^2 / (e^2 + e^1) and e / (e^2 + e).
        let w1 = 1.0 / (1.0 + (-1.0f32).exp());
        assert_eq!(p[0], 0.0);
        assert_eq!(p[2], 0.0);
        assert!((p[1] - w1).abs() < 1e-6 && (p[3] - (1.0 - w1)).abs() < 1e-6);
        // Token 1: a tie between experts 0 and 1, both chosen, 1/2 each.
        assert!((p[4] - 0.5).abs() < 1e-6 && (p[5] - 0.5).abs() < 1e-6);
        assert_eq!(&p[6..], &[0.0, 0.0]);
    }

    #[test]
    fn route_without_renormalising_keeps_softmax_probabilities() {
        let m = moe(3, 1, false);
        let mut p = vec![0.0f32, 0.0, 0.0];
        m.route(&mut p);
        // All equal: the lowest index wins, with probability 1/3.
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(&p[1..], &[0.0, 0.0]);
    }
}
