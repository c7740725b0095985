//! # quantize: `lume quantize IN OUT TYPE`
//!
//! Map of the crate:
//! - [`ftype`]: [`FileType`], the names and `general.file_type` numbers TYPE can be.
//! - [`rules`]: which tensor type each tensor gets, llama-quantize's rules written out (a page
//!   of facts: categories by name, the mixes, fallbacks for rows a type cannot hold).
//! - [`plan`]: [`plan()`] walks a file's tensors through the rules into a [`Plan`] (metadata
//!   only: `--dry-run` is the plan printed).
//! - [`run`]: [`quantize_file`] streams the plan out, tensor by tensor, rows in parallel.
//! - [`error`]: [`QuantizeError`], which names the file and the tensor at fault.
//!
//! The per-block quantizers themselves are the `kernels` crate's ([`kernels::quantize_row`]).

pub mod error;
pub mod ftype;
pub mod plan;
pub mod rules;
pub mod run;

pub use error::{QuantizeError, Result};
pub use ftype::FileType;
pub use plan::{model_facts, plan, Options, Plan, TensorPlan};
pub use rules::Overrides;
pub use run::{output_metadata, quantize_file, Progress, Summary, QUANTIZATION_VERSION};
