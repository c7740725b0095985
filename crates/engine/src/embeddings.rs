//! Sentence embeddings as a service: [`EmbeddingModel`] (a model with its tokenizer, pooling and
//! normalisation, loaded from a Hugging Face folder or a GGUF file) and [`EmbedQueue`] (one
//! thread that owns it and batches every request waiting at a step into one forward pass, as
//! the generation [`crate::Scheduler`] does for tokens).
//!
//! What a model gives:
//! - an encoder folder (sentence-transformers layout: `config.json`, `model.safetensors`,
//!   `tokenizer.json` or `vocab.txt`, `modules.json`, `1_Pooling/config.json`): WordPiece,
//!   truncation at `sentence_bert_config.json`'s `max_seq_length`, its pooling and Normalize;
//! - a GGUF encoder (`tokenizer.ggml.model = "bert"`): the file's `{arch}.pooling_type`, else mean;
//! - a GGUF decoder (any catalogue LLM, as llama.cpp's `--embedding`): its own tokenizer (BOS
//!   as the file says), the file's pooling type, else last-token pooling.
//!
//! A BERT cross-encoder (a folder of `BertForSequenceClassification`, or a GGUF `bert` with
//! `cls.output`) also reranks: [`EmbeddingModel::encode_pair`] gives `[CLS] q [SEP] d [SEP]`
//! with token types, [`EmbeddingModel::score_pairs`] the raw logit of each pair, and
//! [`EmbedQueue::rerank`] batches them like [`EmbedQueue::embed`].

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use model::embed::{Embedder, Pooling};
use model::Model;
use tokenizer::wordpiece::WordPiece;
use tokenizer::Tokenizer;

use crate::{EngineError, Scheduler, SchedulerOptions};

/// How texts become ids.
enum EmbedTokenizer {
    WordPiece(WordPiece),
    /// A decoder's tokenizer and the longest sequence kept.
    Decoder(Box<Tokenizer>, usize),
}

/// A model that turns texts (or token ids) into vectors.
pub struct EmbeddingModel {
    pub embedder: Embedder,
    tok: EmbedTokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingModel")
            .field("path", &self.path)
            .field("dim", &self.embedder.dim())
            .field("pooling", &self.embedder.pooling)
            .finish()
    }
}

fn model_err(path: &Path, e: model::ModelError) -> EngineError {
    crate::backend::model_err(path, e)
}

/// Whether `path` is a model that only embeds (an encoder folder, or a GGUF encoder such as
/// `bert`), as opposed to a language model that can generate. A file that cannot be read as
/// GGUF is the error (naming it) that loading it would give.
pub fn is_encoder(path: &Path) -> Result<bool, EngineError> {
    if path.is_dir() {
        return Ok(true);
    }
    Ok(is_encoder_gguf(&gguf::GgufFile::open(path)?))
}

/// [`is_encoder`] of an open GGUF file.
pub fn is_encoder_gguf(f: &gguf::GgufFile) -> bool {
    let arch = f.get_str("general.architecture").unwrap_or("");
    arch == "bert" || f.get_str("tokenizer.ggml.model").ok() == Some("bert")
}

/// What a server loads from one path: a language model (generation, through the
/// [`Scheduler`]) or an embedding model (through an [`EmbedQueue`]). The file is opened once.
pub enum Served {
    Language(Scheduler),
    Encoder(EmbedQueue),
}

/// Opens `path` once and loads it as what it is (see [`Served`]); `opts` are the scheduler's
/// (an encoder takes only its thread count).
pub fn load_served(path: &Path, opts: &SchedulerOptions) -> Result<Served, EngineError> {
    let encoder = |m: EmbeddingModel| {
        crate::set_kernel_threads(opts.threads);
        EmbedQueue::start(m).map(Served::Encoder)
    };
    if path.is_dir() {
        return encoder(EmbeddingModel::load(path)?);
    }
    let file = gguf::GgufFile::open(path)?;
    if is_encoder_gguf(&file) {
        encoder(EmbeddingModel::from_gguf(file)?)
    } else {
        Scheduler::from_gguf(file, opts).map(Served::Language)
    }
}

impl EmbeddingModel {
    /// Loads an encoder folder, a GGUF encoder or a GGUF decoder (see the module docs).
    pub fn load(path: &Path) -> Result<EmbeddingModel, EngineError> {
        let p = path.to_path_buf();
        if path.is_dir() {
            let (m, folder) = model::hf::load_folder(path).map_err(|e| model_err(path, e))?;
            let mut tok = match (&folder.tokenizer_json, &folder.vocab_txt) {
                (Some(j), _) => WordPiece::from_tokenizer_json(j)?,
                (None, Some(v)) => WordPiece::from_vocab_txt(v)?,
                (None, None) => {
                    return Err(EngineError::Internal {
                        msg: format!(
                            "{}: no tokenizer.json or vocab.txt in the folder",
                            path.display()
                        ),
                    })
                }
            };
            let st = folder.sentence.as_ref();
            let max = match st.and_then(|s| s.max_seq_length) {
                Some(n) => n,
                None => model::hf::tokenizer_max_len(path)
                    .map_err(|e| model_err(path, e))?
                    .unwrap_or(m.info().n_ctx_train),
            };
            let pooling = st.and_then(|s| s.pooling).map_or(Pooling::Mean, Into::into);
            let normalize = st.is_some_and(|s| s.normalize);
            let e = Embedder::new(m, pooling, normalize);
            tok.set_max_len(Some(max.min(e.max_len())));
            return Ok(EmbeddingModel {
                embedder: e,
                tok: EmbedTokenizer::WordPiece(tok),
                path: p,
            });
        }
        EmbeddingModel::from_gguf(gguf::GgufFile::open(path)?)
    }

    /// [`EmbeddingModel::load`] of an open GGUF file (an encoder, or a decoder's embeddings).
    pub fn from_gguf(file: gguf::GgufFile) -> Result<EmbeddingModel, EngineError> {
        let p = file.path().to_path_buf();
        let m = Model::from_gguf(file).map_err(|e| model_err(&p, e))?;
        let file = m.gguf();
        let key = format!("{}.pooling_type", m.info().arch);
        let file_pooling = match file.get(&key) {
            Some(_) => Pooling::from_gguf_type(file.get_u32(&key)?),
            None => None,
        };
        if file.get_str("tokenizer.ggml.model").ok() == Some("bert") {
            let mut tok = WordPiece::from_gguf(file)?;
            let e = Embedder::new(m, file_pooling.unwrap_or(Pooling::Mean), false);
            tok.set_max_len(Some(e.max_len()));
            Ok(EmbeddingModel {
                embedder: e,
                tok: EmbedTokenizer::WordPiece(tok),
                path: p,
            })
        } else {
            let tok = Tokenizer::from_gguf(file)?;
            let e = Embedder::new(m, file_pooling.unwrap_or(Pooling::Last), false);
            let max = e.max_len();
            Ok(EmbeddingModel {
                embedder: e,
                tok: EmbedTokenizer::Decoder(Box::new(tok), max),
                path: p,
            })
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Width of each vector.
    pub fn dim(&self) -> usize {
        self.embedder.dim()
    }

    /// Longest input in tokens (longer inputs are truncated).
    pub fn max_len(&self) -> usize {
        match &self.tok {
            EmbedTokenizer::WordPiece(w) => w.max_len().unwrap_or(self.embedder.max_len()),
            EmbedTokenizer::Decoder(_, max) => *max,
        }
    }

    /// Token ids of `text` as the model takes them (special tokens added, truncated).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match &self.tok {
            EmbedTokenizer::WordPiece(w) => w.encode(text),
            EmbedTokenizer::Decoder(t, max) => {
                let mut ids = t.encode(text, true, false);
                ids.truncate(*max);
                ids
            }
        }
    }

    /// Whether the model can score `(query, document)` pairs (a cross-encoder: BERT with a
    /// one-output classification head and a WordPiece tokenizer).
    pub fn can_rerank(&self) -> bool {
        matches!(self.tok, EmbedTokenizer::WordPiece(_)) && self.embedder.can_score()
    }

    /// The pair encoding of a cross-encoder: `([CLS] query [SEP] doc [SEP]`, token types 0
    /// then 1), cut to [`EmbeddingModel::max_len`] by `longest_first` as Hugging Face
    /// tokenizers do. A decoder's tokenizer has no pairs: its ids are the two texts' own
    /// tokens one after the other, all of type 0 (such a model cannot rerank anyway:
    /// [`EmbeddingModel::score_pairs`] says so).
    pub fn encode_pair(&self, query: &str, doc: &str) -> (Vec<u32>, Vec<u32>) {
        match &self.tok {
            EmbedTokenizer::WordPiece(w) => w.encode_pair(query, doc),
            EmbedTokenizer::Decoder(t, max) => {
                let mut ids = t.encode(query, true, false);
                ids.extend(t.encode(doc, false, false));
                ids.truncate(*max);
                let types = vec![0; ids.len()];
                (ids, types)
            }
        }
    }

    /// The raw relevance logit of each `(ids, token types)` pair (from
    /// [`EmbeddingModel::encode_pair`]) into `out`, `[pairs.len()]`, in as few forward passes
    /// as fit. Checked: the model can rerank, ids and types have one length of
    /// `1..=max_len`, every id inside the vocabulary.
    pub fn score_pairs(
        &self,
        pairs: &[(&[u32], &[u32])],
        out: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        if !self.can_rerank() {
            return Err(EngineError::Internal {
                msg: format!(
                    "{}: this model has no classification head: it cannot rerank",
                    self.path.display()
                ),
            });
        }
        let n_vocab = self.n_vocab();
        for (ids, _) in pairs {
            if let Some(&bad) = ids.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(EngineError::BadToken { id: bad, n_vocab });
            }
        }
        self.embedder
            .score(pairs, out)
            .map_err(|e| model_err(&self.path, e))
    }

    /// Size of the vocabulary (for checking token-id inputs).
    pub fn n_vocab(&self) -> usize {
        self.embedder.model.info().vocab
    }

    /// One vector per sequence, `[seqs.len(), dim]` into `out` (checked: each sequence
    /// `1..=max_len` tokens, every id inside the vocabulary).
    pub fn embed(&self, seqs: &[&[u32]], out: &mut Vec<f32>) -> Result<(), EngineError> {
        let n_vocab = self.n_vocab();
        for s in seqs {
            if let Some(&bad) = s.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(EngineError::BadToken { id: bad, n_vocab });
            }
        }
        self.embedder
            .embed(seqs, out)
            .map_err(|e| model_err(&self.path, e))
    }
}

/// What a job asks for.
enum JobKind {
    /// `[n, dim]` vectors of its sequences.
    Embed(Vec<Vec<u32>>),
    /// `[n]` logits of its `(ids, token types)` pairs.
    Rerank(Vec<(Vec<u32>, Vec<u32>)>),
}

impl JobKind {
    fn len(&self) -> usize {
        match self {
            JobKind::Embed(s) => s.len(),
            JobKind::Rerank(p) => p.len(),
        }
    }

    /// Token ids of its `i`-th sequence.
    fn ids(&self, i: usize) -> &[u32] {
        match self {
            JobKind::Embed(s) => &s[i],
            JobKind::Rerank(p) => &p[i].0,
        }
    }
}

/// One request's sequences and where their vectors (or scores) go.
struct Job {
    kind: JobKind,
    reply: Sender<Result<Vec<f32>, EngineError>>,
}

/// Counters of an [`EmbedQueue`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbedStats {
    /// Requests answered.
    pub requests: u64,
    /// Sequences embedded.
    pub sequences: u64,
    /// Tokens embedded.
    pub tokens: u64,
    /// Steps of the loop: each one takes every request waiting at that moment and runs their
    /// sequences together (one forward pass per [`model::MAX_BATCH`] tokens).
    pub steps: u64,
}

/// A thread that owns an [`EmbeddingModel`] and serves requests in batches: every request
/// that is waiting when a step starts goes into that step. Cheap to clone.
#[derive(Clone)]
pub struct EmbedQueue {
    inner: Arc<QueueInner>,
}

struct QueueInner {
    model: Arc<EmbeddingModel>,
    tx: Mutex<Option<Sender<Job>>>,
    stats: Arc<Mutex<EmbedStats>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for QueueInner {
    fn drop(&mut self) {
        // Closing the channel ends the loop.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for EmbedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedQueue")
            .field("model", &self.inner.model)
            .finish()
    }
}

impl EmbedQueue {
    /// Starts the loop thread for `model`.
    pub fn start(model: EmbeddingModel) -> Result<EmbedQueue, EngineError> {
        let model = Arc::new(model);
        let stats = Arc::new(Mutex::new(EmbedStats::default()));
        let (tx, rx) = mpsc::channel::<Job>();
        let (m, st) = (Arc::clone(&model), Arc::clone(&stats));
        let thread = std::thread::Builder::new()
            .name("lume-embed".into())
            .spawn(move || run(&m, &rx, &st))
            .map_err(|e| EngineError::Internal {
                msg: format!("could not start the embedding thread: {e}"),
            })?;
        Ok(EmbedQueue {
            inner: Arc::new(QueueInner {
                model,
                tx: Mutex::new(Some(tx)),
                stats,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    pub fn model(&self) -> &EmbeddingModel {
        &self.inner.model
    }

    pub fn stats(&self) -> EmbedStats {
        *self.inner.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `seqs` (token ids, checked by [`EmbeddingModel::embed`]); the receiver gets
    /// `[seqs.len(), dim]` or the error.
    pub fn submit(&self, seqs: Vec<Vec<u32>>) -> Receiver<Result<Vec<f32>, EngineError>> {
        self.send(JobKind::Embed(seqs))
    }

    /// Queues `(ids, token types)` pairs (checked by [`EmbeddingModel::score_pairs`]); the
    /// receiver gets one raw logit per pair or the error.
    pub fn submit_rerank(
        &self,
        pairs: Vec<(Vec<u32>, Vec<u32>)>,
    ) -> Receiver<Result<Vec<f32>, EngineError>> {
        self.send(JobKind::Rerank(pairs))
    }

    /// [`EmbedQueue::submit_rerank`] and wait: the relevance logit of each pair (from
    /// [`EmbeddingModel::encode_pair`]), scored together with every job waiting at that step.
    pub fn rerank(&self, pairs: Vec<(Vec<u32>, Vec<u32>)>) -> Result<Vec<f32>, EngineError> {
        self.submit_rerank(pairs)
            .recv()
            .map_err(|_| EngineError::Internal {
                msg: "the embedding thread has stopped".into(),
            })?
    }

    fn send(&self, kind: JobKind) -> Receiver<Result<Vec<f32>, EngineError>> {
        let (reply, rx) = mpsc::channel();
        let tx = self.inner.tx.lock().unwrap_or_else(|e| e.into_inner());
        let job = Job { kind, reply };
        match tx.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    let _ = job.reply.send(Err(EngineError::Internal {
                        msg: "the embedding thread has stopped".into(),
                    }));
                }
            }
            None => {
                let _ = job.reply.send(Err(EngineError::Internal {
                    msg: "the embedding thread has stopped".into(),
                }));
            }
        }
        rx
    }

    /// [`EmbedQueue::submit`] and wait.
    pub fn embed(&self, seqs: Vec<Vec<u32>>) -> Result<Vec<f32>, EngineError> {
        self.submit(seqs)
            .recv()
            .map_err(|_| EngineError::Internal {
                msg: "the embedding thread has stopped".into(),
            })?
    }
}

/// The loop: wait for one job, take every other waiting job, check each, run all valid
/// embedding sequences in one call and all valid rerank pairs in another, hand each job its
/// rows.
fn run(model: &EmbeddingModel, rx: &Receiver<Job>, stats: &Mutex<EmbedStats>) {
    let mut jobs: Vec<Job> = Vec::new();
    let mut out = Vec::new();
    while let Ok(first) = rx.recv() {
        jobs.clear();
        jobs.push(first);
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        // A job with a bad sequence fails alone; the others still share the step.
        let max = model.embedder.max_len();
        let n_vocab = model.n_vocab();
        let can_rerank = model.can_rerank();
        let mut embeds: Vec<&Job> = Vec::with_capacity(jobs.len());
        let mut reranks: Vec<&Job> = Vec::new();
        for j in &jobs {
            let bad = check_job(&j.kind, max, n_vocab, can_rerank, model.path());
            match bad {
                Some(e) => {
                    let _ = j.reply.send(Err(e));
                }
                None => match j.kind {
                    JobKind::Embed(_) => embeds.push(j),
                    JobKind::Rerank(_) => reranks.push(j),
                },
            }
        }
        let mut n_seqs = 0u64;
        let mut n_tokens = 0u64;
        // Replies wait until the stats count this step, so a caller that has its answer
        // also sees it counted.
        let mut replies: Vec<(&Job, Result<Vec<f32>, EngineError>)> =
            Vec::with_capacity(jobs.len());
        for (group, rerank) in [(&embeds, false), (&reranks, true)] {
            let n: usize = group.iter().map(|j| j.kind.len()).sum();
            if n == 0 {
                continue;
            }
            let res = if rerank {
                let pairs: Vec<(&[u32], &[u32])> = group
                    .iter()
                    .flat_map(|j| match &j.kind {
                        JobKind::Rerank(p) => p.as_slice(),
                        JobKind::Embed(_) => &[],
                    })
                    .map(|(a, b)| (a.as_slice(), b.as_slice()))
                    .collect();
                model.score_pairs(&pairs, &mut out).map(|()| 1)
            } else {
                let seqs: Vec<&[u32]> = group
                    .iter()
                    .flat_map(|j| match &j.kind {
                        JobKind::Embed(s) => s.as_slice(),
                        JobKind::Rerank(_) => &[],
                    })
                    .map(|s| s.as_slice())
                    .collect();
                model.embed(&seqs, &mut out).map(|()| model.dim())
            };
            match res {
                Ok(width) => {
                    let mut row = 0;
                    for j in group.iter() {
                        let k = j.kind.len();
                        replies.push((j, Ok(out[row * width..(row + k) * width].to_vec())));
                        row += k;
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for j in group.iter() {
                        replies.push((j, Err(EngineError::Internal { msg: msg.clone() })));
                    }
                }
            }
            n_seqs += n as u64;
            for j in group.iter() {
                n_tokens += (0..j.kind.len())
                    .map(|i| j.kind.ids(i).len() as u64)
                    .sum::<u64>();
            }
        }
        if n_seqs == 0 {
            continue;
        }
        {
            let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
            st.steps += 1;
            st.requests += (embeds.len() + reranks.len()) as u64;
            st.sequences += n_seqs;
            st.tokens += n_tokens;
        }
        for (j, r) in replies {
            let _ = j.reply.send(r);
        }
    }
}

/// Why a job cannot run, if it cannot.
fn check_job(
    kind: &JobKind,
    max: usize,
    n_vocab: usize,
    can_rerank: bool,
    path: &Path,
) -> Option<EngineError> {
    if let JobKind::Rerank(pairs) = kind {
        if !can_rerank {
            return Some(EngineError::Internal {
                msg: format!(
                    "{}: this model has no classification head: it cannot rerank",
                    path.display()
                ),
            });
        }
        if let Some(i) = pairs.iter().position(|(a, b)| a.len() != b.len()) {
            return Some(EngineError::Internal {
                msg: format!(
                    "pair {i} has {} token ids but {} token types",
                    pairs[i].0.len(),
                    pairs[i].1.len()
                ),
            });
        }
    }
    let what = match kind {
        JobKind::Embed(_) => "an embedding",
        JobKind::Rerank(_) => "a rerank pair",
    };
    (0..kind.len()).find_map(|i| {
        let s = kind.ids(i);
        if s.is_empty() || s.len() > max {
            Some(EngineError::Internal {
                msg: format!("input {i} has {} tokens; {what} takes 1 to {max}", s.len()),
            })
        } else {
            s.iter()
                .find(|&&t| t as usize >= n_vocab)
                .map(|&id| EngineError::BadToken { id, n_vocab })
        }
    })
}
