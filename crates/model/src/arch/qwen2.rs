//! `qwen2` (Qwen2, Qwen2.5): llama plus q/k/v biases (loaded when the file has them, as for
//! every projection), NEOX RoPE; usually tied embeddings.

use gguf::GgufFile;

use super::Architecture;
use crate::decoder::Decoder;
use crate::desc::{BlockDesc, DecoderDesc, RopeDesc};
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "qwen2")?;
    let block = BlockDesc {
        rope: Some(0),
        ..BlockDesc::default()
    };
    let rope = RopeDesc {
        style: RopeStyle::Neox,
        base: hp.rope_base,
        linear_scale: None,
    };
    let desc = DecoderDesc::uniform(hp.n_layer, block, Some(rope));
    Ok(Box::new(Decoder::load(file, hp, desc)?))
}
