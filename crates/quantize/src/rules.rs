//! Which type each tensor gets: llama-quantize's rules (llama.cpp's src/llama-quant.cpp at the
//! version CI compares against, 0.3.36 of llama-cpp-python), written as data and small
//! functions so that a file quantized by lume has, tensor by tensor, the types the same command
//! gives in llama.cpp. `tests/llama_quantize_types.rs` holds that check.
//!
//! The walk is stateful, as upstream's is: tensors are visited in [`tensor_order`], and
//! counters of the attn_v-like and ffn tensors seen so far decide some layers (Q3_K_M's first
//! two attn_v in Q5_K, `use_more_bits` on every eighth-and-third layer for Q4_K_M's attn_v).

use std::cmp::Ordering;

use gguf::GgmlType;

use crate::ftype::FileType;

/// What a tensor is for, by name (upstream's `tensor_category`): broad roles across
/// architectures, not exact names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

/// The category of tensor `name`; the first match in this order wins.
pub fn category(name: &str) -> Category {
    use Category::*;
    if name == "output.weight" {
        return Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return TokenEmbd;
    }
    const BY_PART: &[(&str, Category)] = &[
        ("attn_qkv.weight", AttnQkv),
        ("attn_kv_b.weight", AttnKvB),
        ("attn_v.weight", AttnV),
        ("attn_k.weight", AttnK),
        ("attn_q.weight", AttnQ),
        ("attn_output.weight", AttnOutput),
        ("ffn_up", FfnUp),
        ("ffn_gate", FfnGate),
        ("ffn_down", FfnDown),
    ];
    BY_PART
        .iter()
        .find(|(part, _)| name.contains(part))
        .map_or(Other, |&(_, c)| c)
}

/// attn_v and the tensors that hold it (fused QKV, MLA's kv_b): the most sensitive ones.
fn is_attn_v_like(c: Category) -> bool {
    matches!(c, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
}

/// Name parts of 2-D weights that stay as they are: norms, routers, small per-layer tables,
/// convolutions, positional tables (upstream's `tensor_allows_quantization`).
const NEVER_QUANTIZED: &[&str] = &[
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
];

/// More that stay as they are in glm5-next files.
const NEVER_QUANTIZED_GLM5_NEXT: &[&str] = &[
    "hc_",
    "indexer.attn_q_b",
    "indexer.attn_k",
    "indexer.proj",
    "indexer_compressor_gate",
    "indexer_compressor_ape",
    "ssm_f_a.weight",
    "ssm_f_b.weight",
    "ssm_g_a.weight",
    "ssm_g_b.weight",
    "ssm_beta.weight",
    "attn_kv_a_mqa.weight",
    "attn_k_b.weight",
    "attn_v_b.weight",
];

/// ggml's `ggml_n_dims`: trailing dimensions of 1 do not count.
pub fn n_dims(dims: &[u64]) -> usize {
    dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// Whether a tensor may change type at all. `keep_output` is `--leave-output-tensor`.
pub fn allows_quantization(arch: &str, name: &str, dims: &[u64], keep_output: bool) -> bool {
    if n_dims(dims) < 2 || !name.ends_with("weight") {
        return false;
    }
    if keep_output && name == "output.weight" {
        return false;
    }
    if name == "position_embd.weight" || name == "token_types.weight" {
        return false;
    }
    if NEVER_QUANTIZED.iter().any(|p| name.contains(p)) {
        return false;
    }
    !(arch == "glm5-next" && NEVER_QUANTIZED_GLM5_NEXT.iter().any(|p| name.contains(p)))
}

/// The layer number of `blk.N.…`, if the name has one.
pub fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    if end == 0 || rest.as_bytes()[end] != b'.' {
        return None;
    }
    rest[..end].parse().ok()
}

/// The order llama.cpp visits (and writes) tensors in: those without a layer number first,
/// then by layer, each group by name.
pub fn tensor_order(a: &str, b: &str) -> Ordering {
    let la = layer_of(a).unwrap_or(-1);
    let lb = layer_of(b).unwrap_or(-1);
    la.cmp(&lb).then_with(|| a.cmp(b))
}

/// What the rules read off the model: its hyperparameters and what the file holds.
#[derive(Clone, Debug)]
pub struct ModelFacts {
    pub arch: String,
    /// `{arch}.block_count`.
    pub n_layer: u32,
    /// Query heads over key/value heads of layer 0 (0 when there are no kv heads).
    pub n_gqa: u32,
    /// `{arch}.expert_count` (0 for dense models).
    pub n_expert: u32,
    /// The one model size with a rule of its own: 70B (llama with GQA at 80 layers, deci,
    /// olmo and qwen2 at 80, jais2 at 68).
    pub is_70b: bool,
    /// No `output.weight`: the token embedding doubles as the output and is chosen like it.
    pub tied_embeddings: bool,
    /// An importance matrix is given.
    pub has_imatrix: bool,
}

/// Whether a model of this architecture, depth and heads is what llama.cpp calls 70B.
pub fn is_70b(arch: &str, n_layer: u32, n_head: u32, n_head_kv: u32) -> bool {
    match arch {
        "llama" => n_layer == 80 && n_head != n_head_kv,
        "deci" | "olmo" | "qwen2" => n_layer == 80,
        "jais2" => n_layer == 68,
        _ => false,
    }
}

/// Overrides from the command line (upstream's `llama_model_quantize_params`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--output-tensor-type`.
    pub output: Option<GgmlType>,
    /// `--token-embedding-type`.
    pub token_embd: Option<GgmlType>,
    /// `--tensor-type PATTERN=TYPE`, first match wins (regular expressions, searched anywhere
    /// in the name).
    pub patterns: Vec<(regex::Regex, GgmlType)>,
    /// `--pure`: no mix, every quantizable tensor in the default type (fallbacks still apply).
    pub pure: bool,
}

/// The walk's counters (upstream's `quantize_state_impl`).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub n_attention_wv: i64,
    pub n_ffn: i64,
    pub i_attention_wv: i64,
    pub i_ffn_down: i64,
    pub i_ffn_gate: i64,
    pub i_ffn_up: i64,
    /// Tensors whose row length the chosen type cannot hold (a fallback type was used).
    pub n_fallback: usize,
}

impl Counters {
    /// Counters for a walk over tensors named `names` of a model of `n_layer` layers.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>, n_layer: u32) -> Counters {
        let n_attention_wv = names
            .into_iter()
            .filter(|n| is_attn_v_like(category(n)))
            .count() as i64;
        Counters {
            n_attention_wv,
            n_ffn: n_layer as i64,
            ..Counters::default()
        }
    }
}

/// Why a tensor could not be given a type.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleError {
    /// An expert model's ffn tensor without a usable `blk.N.` layer number.
    Layer { tensor: String, n_layer: u32 },
}

fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

/// One tensor the walk visits.
pub struct Tensor<'a> {
    pub name: &'a str,
    pub dims: &'a [u64],
    pub ty: GgmlType,
}

/// The type `t` gets in a file of type `ftype` (upstream's `llama_tensor_get_type`): its own
/// type if it may not change, an override, the mix's rule, then a fallback for rows the type
/// cannot hold. Call once per tensor, in [`tensor_order`].
pub fn choose(
    c: &mut Counters,
    m: &ModelFacts,
    o: &Overrides,
    ftype: FileType,
    keep_output: bool,
    t: &Tensor,
) -> Result<GgmlType, RuleError> {
    if !allows_quantization(&m.arch, t.name, t.dims, keep_output) {
        return Ok(t.ty);
    }
    let cat = category(t.name);
    if cat == Category::TokenEmbd {
        if let Some(ty) = o.token_embd {
            // per_layer_token_embd follows --token-embedding-type unless a pattern names it.
            let named = t.name == "per_layer_token_embd.weight"
                && o.patterns.iter().any(|(re, _)| re.is_match(t.name));
            if !named {
                return Ok(ty);
            }
        }
    }
    if cat == Category::Output {
        if let Some(ty) = o.output {
            return Ok(ty);
        }
    }
    let default = ftype.default_type();
    if !is_quantized(default) {
        return Ok(default);
    }
    let mut ty = default;
    let manual = o.patterns.iter().find(|(re, _)| re.is_match(t.name));
    if let Some(&(_, pty)) = manual {
        ty = pty;
    } else if !o.pure {
        ty = mix(c, m, o, ty, t, ftype, cat)?;
    }
    Ok(fallback(c, t.dims[0], ty))
}

/// ggml's `ggml_is_quantized`: every type but the float ones and the integers.
fn is_quantized(ty: GgmlType) -> bool {
    use GgmlType::*;
    !matches!(ty, F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64)
}

/// A type for rows of `ncols` values when `ty`'s blocks do not divide them.
fn fallback(c: &mut Counters, ncols: u64, ty: GgmlType) -> GgmlType {
    use GgmlType::*;
    if ncols.is_multiple_of(ty.block_size() as u64) {
        return ty;
    }
    c.n_fallback += 1;
    let to = match ty {
        IQ1_S | IQ1_M | IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ4_XS => IQ4_NL,
        Q2_K | Q3_K | TQ1_0 | TQ2_0 => Q4_0,
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        // Already a 32-value block: F16 below.
        other => other,
    };
    if !ncols.is_multiple_of(to.block_size() as u64) {
        F16
    } else {
        to
    }
}

/// The mix: upstream's `llama_tensor_get_type_impl`, rule for rule.
fn mix(
    c: &mut Counters,
    m: &ModelFacts,
    o: &Overrides,
    mut ty: GgmlType,
    t: &Tensor,
    ftype: FileType,
    cat: Category,
) -> Result<GgmlType, RuleError> {
    use Category as C;
    use FileType as F;
    use GgmlType as T;
    let name = t.name;
    let gqa4 = m.n_gqa >= 4;
    let n_expert = m.n_expert.max(1);
    // The (layer, layers) an ffn tensor counts for: its position in the walk for dense
    // models, its `blk.N.` for expert models (whose tensors are not one per layer in order).
    let layer_info = |i: i64, n: i64| -> Result<(i64, i64), RuleError> {
        if n_expert > 1 {
            match layer_of(name) {
                Some(l) if l < n => Ok((l, n)),
                _ => Err(RuleError::Layer {
                    tensor: name.to_string(),
                    n_layer: m.n_layer,
                }),
            }
        } else {
            Ok((i, n))
        }
    };
    let very_low = matches!(
        ftype,
        F::IQ2_XXS | F::IQ2_XS | F::IQ1_S | F::IQ2_S | F::IQ2_M | F::IQ1_M
    );
    let iq2_s_or_m = matches!(ftype, F::IQ2_S | F::IQ2_M);

    if m.arch == "glm5-next"
        && (name.contains("attn_q_a")
            || name.contains("attn_q_b")
            || name.contains("nextn.eh_proj"))
        && !matches!(ty, T::F32 | T::BF16 | T::F16)
    {
        return Ok(T::Q8_0);
    }

    if cat == C::Output || (m.tied_embeddings && cat == C::TokenEmbd) {
        if let Some(ot) = o.output {
            ty = ot;
        } else if ftype == F::MXFP4_MOE
            || m.arch == "falcon"
            || !t.dims[0].is_multiple_of(ty.block_size() as u64)
        {
            ty = T::Q8_0;
        } else if matches!(
            ftype,
            F::IQ2_XXS | F::IQ2_XS | F::IQ3_XXS | F::IQ1_S | F::IQ2_S | F::IQ2_M | F::IQ1_M
        ) {
            ty = T::Q5_K;
        } else if ty != T::Q8_0 {
            ty = T::Q6_K;
        }
    } else if ftype == F::MXFP4_MOE {
        let expert_role = matches!(cat, C::FfnUp | C::FfnGate | C::FfnDown);
        let is_3d = t.dims.get(2).copied().unwrap_or(1) > 1;
        ty = if is_3d && (m.arch != "bailingmoe3" || expert_role) {
            T::MXFP4
        } else {
            T::Q8_0
        };
    } else if cat == C::TokenEmbd {
        if let Some(et) = o.token_embd {
            ty = et;
        } else if matches!(ftype, F::IQ2_XXS | F::IQ2_XS | F::IQ1_S | F::IQ1_M) {
            ty = T::Q2_K;
        } else if matches!(ftype, F::IQ2_S | F::IQ2_M | F::IQ3_XXS) {
            ty = T::IQ3_S;
        } else if matches!(ftype, F::TQ1_0 | F::TQ2_0) {
            ty = T::Q4_K;
        }
    } else if very_low {
        if is_attn_v_like(cat) {
            ty = if gqa4 || m.n_expert >= 4 {
                T::Q4_K
            } else if iq2_s_or_m {
                T::IQ3_S
            } else {
                T::Q2_K
            };
            c.i_attention_wv += 1;
        } else if m.n_expert == 8 && cat == C::AttnK {
            ty = T::Q4_K;
        } else if cat == C::FfnDown {
            if c.i_ffn_down < c.n_ffn / 8 {
                ty = if iq2_s_or_m { T::IQ3_S } else { T::Q2_K };
            }
            c.i_ffn_down += 1;
        } else if cat == C::AttnOutput {
            if m.n_expert == 8 {
                ty = T::Q5_K;
            } else if matches!(ftype, F::IQ1_S | F::IQ1_M) {
                ty = T::IQ2_XXS;
            } else if iq2_s_or_m {
                ty = T::IQ3_S;
            }
        }
    } else if is_attn_v_like(cat) {
        match ftype {
            F::Q2_K => ty = if gqa4 { T::Q4_K } else { T::Q3_K },
            F::Q2_K_S if gqa4 => ty = T::Q4_K,
            F::IQ3_XXS => {
                ty = if gqa4 {
                    T::Q4_K
                } else if !m.has_imatrix {
                    T::IQ3_S
                } else {
                    T::IQ3_XXS
                }
            }
            F::IQ3_XS | F::IQ3_S if gqa4 => ty = T::Q4_K,
            F::IQ3_M => ty = T::Q4_K,
            F::Q3_K_M => {
                ty = if c.i_attention_wv < 2 {
                    T::Q5_K
                } else {
                    T::Q4_K
                }
            }
            F::Q3_K_L => ty = T::Q5_K,
            F::IQ4_NL | F::IQ4_XS if gqa4 => ty = T::Q5_K,
            F::Q4_K_M | F::Q5_K_M if use_more_bits(c.i_attention_wv, c.n_attention_wv) => {
                ty = T::Q6_K
            }
            F::Q4_K_S if c.i_attention_wv < 4 => ty = T::Q5_K,
            _ => {}
        }
        if m.is_70b && matches!(ty, T::Q3_K | T::Q4_K) {
            // 70B's attn_v is 8× smaller than attn_q (eight heads share it): cheap to widen.
            ty = T::Q5_K;
        }
        if m.n_expert == 8 {
            ty = T::Q8_0;
        }
        c.i_attention_wv += 1;
    } else if cat == C::AttnK {
        if m.n_expert == 8 {
            ty = T::Q8_0;
        } else if ftype == F::IQ3_XS {
            ty = T::IQ3_XXS;
        } else if ftype == F::IQ3_XXS {
            ty = T::IQ2_S;
        }
    } else if cat == C::AttnQ {
        if ftype == F::IQ3_XS {
            ty = T::IQ3_XXS;
        } else if ftype == F::IQ3_XXS {
            ty = T::IQ2_S;
        }
    } else if cat == C::FfnDown {
        let (i, n) = layer_info(c.i_ffn_down, c.n_ffn)?;
        let falcon = m.arch == "falcon";
        match ftype {
            F::Q2_K => ty = T::Q3_K,
            F::Q2_K_S if i < n / 8 => ty = T::Q4_K,
            F::IQ3_XXS if !m.has_imatrix => ty = if i < n / 8 { T::Q4_K } else { T::Q3_K },
            F::Q3_K_M => {
                ty = if i < n / 16 {
                    T::Q5_K
                } else if !falcon || use_more_bits(i, n) {
                    T::Q4_K
                } else {
                    T::Q3_K
                }
            }
            F::IQ3_M if i < n / 8 || (m.n_expert == 8 && use_more_bits(i, n)) => ty = T::Q4_K,
            F::Q3_K_L => ty = if falcon { T::Q4_K } else { T::Q5_K },
            F::Q4_K_M => {
                if falcon {
                    ty = if i < n / 16 {
                        T::Q6_K
                    } else if use_more_bits(i, n) {
                        T::Q5_K
                    } else {
                        T::Q4_K
                    };
                } else if use_more_bits(i, n) {
                    ty = T::Q6_K;
                }
            }
            F::IQ4_NL | F::IQ4_XS if i < n / 8 && !m.has_imatrix => ty = T::Q5_K,
            F::Q5_K_M if use_more_bits(i, n) => ty = T::Q6_K,
            F::Q4_K_S if !falcon && i < n / 8 => ty = T::Q5_K,
            // With an imatrix, the first ffn_down layers of Q4_0/Q5_0 get the _1 type.
            F::Q4_0 if m.has_imatrix && i < n / 8 => ty = T::Q4_1,
            F::Q5_0 if m.has_imatrix && i < n / 8 => ty = T::Q5_1,
            _ => {}
        }
        c.i_ffn_down += 1;
    } else if cat == C::AttnOutput {
        if m.arch != "falcon" {
            if m.n_expert == 8 {
                if matches!(
                    ftype,
                    F::Q2_K
                        | F::IQ3_XS
                        | F::IQ3_XXS
                        | F::Q3_K_S
                        | F::Q3_K_M
                        | F::IQ4_NL
                        | F::Q4_K_S
                        | F::Q4_K_M
                        | F::IQ3_S
                        | F::IQ3_M
                        | F::IQ4_XS
                ) {
                    ty = T::Q5_K;
                }
            } else {
                match ftype {
                    F::Q2_K => ty = T::Q3_K,
                    F::IQ3_XXS => ty = T::IQ3_S,
                    F::Q3_K_M | F::IQ3_M => ty = T::Q4_K,
                    F::Q3_K_L => ty = T::Q5_K,
                    _ => {}
                }
            }
        } else if ftype == F::Q3_K_L {
            ty = T::Q4_K;
        }
    } else if cat == C::AttnQkv {
        // Unreachable (fused QKV is attn_v-like above), as it is upstream; kept for parity.
        match ftype {
            F::Q3_K_M | F::Q3_K_L | F::IQ3_M => ty = T::Q4_K,
            F::Q4_K_M => ty = T::Q5_K,
            F::Q5_K_M => ty = T::Q6_K,
            _ => {}
        }
    } else if cat == C::FfnGate || cat == C::FfnUp {
        let i_ref = if cat == C::FfnGate {
            &mut c.i_ffn_gate
        } else {
            &mut c.i_ffn_up
        };
        let (i, n) = layer_info(*i_ref, c.n_ffn)?;
        if ftype == F::IQ3_XS && i >= n / 8 && i < 7 * n / 8 {
            ty = T::IQ3_XXS;
        }
        *i_ref += 1;
    }
    Ok(ty)
}

/// Whether a tensor of type `ty` in a file of type `ftype` needs an importance matrix
/// (upstream's `tensor_requires_imatrix`): the 1- to 3-bit i-quants, and Q2_K in Q2_K_S.
pub fn requires_imatrix(name: &str, ty: GgmlType, ftype: FileType) -> bool {
    use GgmlType::*;
    if matches!(category(name), Category::Output | Category::TokenEmbd) {
        return false;
    }
    match ty {
        IQ3_XXS | IQ2_XXS | IQ2_XS | IQ2_S | IQ1_M | IQ1_S => true,
        Q2_K => ftype == FileType::Q2_K_S,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_and_exclusions() {
        assert_eq!(category("blk.3.attn_v.weight"), Category::AttnV);
        assert_eq!(category("blk.3.ffn_down_exps.weight"), Category::FfnDown);
        assert_eq!(category("per_layer_token_embd.weight"), Category::TokenEmbd);
        assert_eq!(category("blk.0.attn_norm.weight"), Category::Other);
        assert!(!allows_quantization(
            "llama",
            "blk.0.attn_norm.weight",
            &[64, 64],
            false
        ));
        assert!(!allows_quantization(
            "llama",
            "blk.0.attn_q.weight",
            &[64, 1],
            false
        ));
        assert!(!allows_quantization(
            "llama",
            "blk.0.ffn_gate_inp.weight",
            &[64, 8],
            false
        ));
        assert!(!allows_quantization(
            "llama",
            "output.weight",
            &[64, 64],
            true
        ));
        assert!(allows_quantization(
            "llama",
            "blk.0.attn_q.weight",
            &[64, 64],
            false
        ));
        assert!(!allows_quantization(
            "glm5-next",
            "blk.0.attn_k_b.weight",
            &[64, 64],
            false
        ));
        assert!(allows_quantization(
            "llama",
            "blk.0.attn_k_b.weight",
            &[64, 64],
            false
        ));
    }

    #[test]
    fn order_is_non_layer_first_then_by_layer_number() {
        let mut names = vec![
            "blk.10.attn_q.weight",
            "output.weight",
            "blk.2.ffn_up.weight",
            "blk.2.attn_v.weight",
            "token_embd.weight",
        ];
        names.sort_by(|a, b| tensor_order(a, b));
        assert_eq!(
            names,
            [
                "output.weight",
                "token_embd.weight",
                "blk.2.attn_v.weight",
                "blk.2.ffn_up.weight",
                "blk.10.attn_q.weight"
            ]
        );
        assert_eq!(layer_of("blk.x.attn"), None);
        assert_eq!(layer_of("blk.12"), None);
    }

    #[test]
    fn fallbacks_follow_block_sizes() {
        let mut c = Counters::default();
        assert_eq!(fallback(&mut c, 576, GgmlType::Q4_K), GgmlType::Q5_0);
        assert_eq!(fallback(&mut c, 576, GgmlType::Q6_K), GgmlType::Q8_0);
        assert_eq!(fallback(&mut c, 576, GgmlType::IQ2_XXS), GgmlType::IQ4_NL);
        assert_eq!(fallback(&mut c, 100, GgmlType::Q4_K), GgmlType::F16);
        assert_eq!(fallback(&mut c, 100, GgmlType::Q8_0), GgmlType::F16);
        assert_eq!(fallback(&mut c, 512, GgmlType::Q4_K), GgmlType::Q4_K);
        assert_eq!(c.n_fallback, 5);
    }
}
