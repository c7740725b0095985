//! `Model::forward_hidden` on a decoder: the final hidden states (after `output_norm`) times
//! the tied embedding matrix are the logits. Checked on the tiny qwen2 (tied output), also
//! loaded without its LM head (`lm_head: false`, `final_norm: true`: CLIP's shape of model),
//! which then refuses logits.

mod common;

use common::*;
use gguf::GgufFile;
use model::decoder::Decoder;
use model::desc::DecoderDesc;
use model::hparams::HParams;
use model::layers::rope::RopeStyle;
use model::{Batch, Model};

#[test]
fn hidden_states_times_the_embeddings_are_the_logits() {
    let path = tiny_dir("qwen2").join("model.f32.gguf");
    let m = Model::load(&path).unwrap();
    let tokens = ids(&expected("qwen2")["sequences"][0]["token_ids"]);
    let n = tokens.len();
    let logits = prompt_logits(&m, &tokens); // [n, vocab]
    let (d, vocab) = (m.info().n_embd, m.info().vocab);

    // The same file without its LM head.
    let file = GgufFile::open(&path).unwrap();
    let hp = HParams::read(&file, "qwen2").unwrap();
    let block = model::desc::BlockDesc {
        rope: Some(0),
        ..Default::default()
    };
    let rope = model::desc::RopeDesc::new(RopeStyle::Neox, hp.rope_base);
    let desc = DecoderDesc {
        lm_head: false,
        final_norm: true,
        ..DecoderDesc::uniform(hp.n_layer, block, Some(rope))
    };
    let dec = Decoder::load(&file, hp, desc).unwrap();
    let emb = dec.tok_embd.clone();
    let enc = Model::from_architecture(file, Box::new(dec));
    assert!(!enc.info().lm_head);

    for mm in [&m, &enc] {
        let mut cache = mm.new_cache(1, 64).unwrap();
        let mut hidden = Vec::new();
        mm.forward_hidden(
            &Batch::from_tokens(&tokens, 0, 0, false),
            &mut cache,
            &mut hidden,
        )
        .unwrap();
        assert_eq!(hidden.len(), n * d);
        assert_eq!(cache.len(0), n);
        let mut row = vec![0.0; d];
        let mut err = 0f32;
        for v in 0..vocab {
            emb.row_f32(mm.gguf(), v, &mut row);
            for t in 0..n {
                let dot: f32 = hidden[t * d..(t + 1) * d]
                    .iter()
                    .zip(&row)
                    .map(|(a, b)| a * b)
                    .sum();
                err = err.max((dot - logits[t * vocab + v]).abs());
            }
        }
        println!("hidden · embᵀ vs logits: {err:.2e}");
        assert!(
            err < 1e-4,
            "hidden states times embeddings differ from logits by {err}"
        );
    }
    let mut cache = enc.new_cache(1, 64).unwrap();
    let e = enc
        .forward(
            &Batch::from_tokens(&tokens, 0, 0, false),
            &mut cache,
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("no LM head"), "{e}");
}
