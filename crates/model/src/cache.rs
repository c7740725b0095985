//! [`KvCache`]: the per-conversation state of a model — the KV store plus the forward pass's
//! scratch buffers (allocated once, grown to the largest batch seen, never per token).

use crate::error::{ModelError, Result};
use crate::layers::kv_cache::KvStore;
use crate::layers::moe::MoeScratch;

/// Activation buffers of one forward pass. Every field is grown with [`crate::ops::grow`]
/// before use; each feature has its own typed buffers.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    /// `[n, n_embd]` residual stream
    pub x: Vec<f32>,
    /// `[n, n_embd]` normalised input of a sub-layer
    pub xn: Vec<f32>,
    /// `[n, q_dim]` queries
    pub q: Vec<f32>,
    /// `[n, k_dim]` keys
    pub k: Vec<f32>,
    /// `[n, v_dim]` values
    pub v: Vec<f32>,
    /// `[n, n_head * head_dim_v]` attention output (before the output projection)
    pub att: Vec<f32>,
    /// `[n, n_embd]` output of a projection, added to the residual
    pub proj: Vec<f32>,
    /// `[n, n_ff]` gate activations
    pub gate: Vec<f32>,
    /// `[n, n_ff]` up activations
    pub up: Vec<f32>,
    /// RoPE tables, one per RoPE variant of the model (`Decoder::ropes`)
    pub rope: Vec<RopeTables>,
    /// Buffers of the mixture-of-experts feed-forward
    pub moe: MoeScratch,
    /// `[n_out, n_embd]` final hidden rows of the tokens that want logits
    pub out_x: Vec<f32>,
    /// `[n_slots]` next expected position per slot (batch validation)
    pub next_pos: Vec<usize>,
}

/// The RoPE angles of one forward pass for one RoPE variant.
#[derive(Clone, Debug, Default)]
pub struct RopeTables {
    /// `[n, n_rot/2]` cosines
    pub cos: Vec<f32>,
    /// `[n, n_rot/2]` sines
    pub sin: Vec<f32>,
}

/// A KV cache of `n_slots` independent sequences of up to `n_ctx` positions each.
/// Made by [`crate::Model::new_cache`]; use it only with the model that made it.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(crate) kv: KvStore,
    pub(crate) scratch: Scratch,
}

impl KvCache {
    pub(crate) fn new(kv: KvStore) -> KvCache {
        let scratch = Scratch {
            next_pos: vec![0; kv.n_slots],
            ..Scratch::default()
        };
        KvCache { kv, scratch }
    }

    pub fn n_slots(&self) -> usize {
        self.kv.n_slots
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx
    }

    /// Element type of the stored keys and values.
    pub fn kv_type(&self) -> crate::KvType {
        self.kv.ty
    }

    /// Positions filled in `slot` (the next token of that sequence goes at this position).
    pub fn len(&self, slot: usize) -> usize {
        self.kv.len(slot)
    }

    /// Whether every slot is empty.
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
    }

    fn check_slot(&self, slot: usize) -> Result<()> {
        if slot >= self.kv.n_slots {
            return Err(ModelError::BadCache(format!(
                "slot {slot} does not exist (the cache has {} slots)",
                self.kv.n_slots
            )));
        }
        Ok(())
    }

    /// Forgets everything in `slot`.
    pub fn clear_slot(&mut self, slot: usize) -> Result<()> {
        self.truncate(slot, 0)
    }

    /// Forgets every slot.
    pub fn clear(&mut self) {
        for s in 0..self.kv.n_slots {
            self.kv.set_len(s, 0);
        }
    }

    /// Keeps the first `len` positions of `slot` (`len` at most the current length), e.g. to
    /// re-use a shared prompt prefix. In a windowed cache ([`crate::Model::new_cache_windowed`])
    /// this fails when the sliding-window layers no longer hold the positions before `len`
    /// (see [`KvCache::can_truncate`]); clear the slot and evaluate again instead.
    pub fn truncate(&mut self, slot: usize, len: usize) -> Result<()> {
        self.check_slot(slot)?;
        let cur = self.kv.len(slot);
        if len > cur {
            return Err(ModelError::BadCache(format!(
                "cannot truncate slot {slot} to {len} positions: it holds only {cur}"
            )));
        }
        if !self.kv.can_truncate(slot, len) {
            return Err(ModelError::BadCache(format!(
                "cannot truncate slot {slot} from {cur} to {len} positions: its sliding-window \
                 layers keep only the most recent positions; clear the slot instead"
            )));
        }
        self.kv.set_len(slot, len);
        Ok(())
    }

    /// Whether [`KvCache::truncate`]`(slot, len)` would succeed. Always true for a plain cache;
    /// for a windowed one, when `len` is 0 or the sliding-window layers still hold the window
    /// before `len` (going back up to [`crate::MAX_BATCH`] positions from the end is always
    /// possible).
    pub fn can_truncate(&self, slot: usize, len: usize) -> bool {
        slot < self.kv.n_slots && len <= self.kv.len(slot) && self.kv.can_truncate(slot, len)
    }

    /// Memory held by the stored keys and values, in bytes.
    pub fn kv_bytes(&self) -> usize {
        self.kv.ty.bytes(self.kv.n_values())
    }
}
