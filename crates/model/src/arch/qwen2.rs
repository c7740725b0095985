//! `qwen2` (Qwen2, Qwen2.5): llama plus q/k/v biases (loaded when the file has them, as for
//! every projection), NEOX RoPE; usually tied embeddings.

use gguf::GgufFile;

use super::Architecture;
use crate::desc::BlockDesc;
use crate::error::Result;
use crate::hparams::HParams;
use crate::layers::rope::RopeStyle;

pub fn load(file: &GgufFile) -> Result<Box<dyn Architecture>> {
    let hp = HParams::read(file, "qwen2")?;
    let block = BlockDesc {
        ..BlockDesc::default()
    };
    super::uniform(file, hp, block, Some(RopeStyle::Neox))
}
