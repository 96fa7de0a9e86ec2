//! The NCF model family on tch: NeuMF (the reference's model: MF and MLP embedding pairs, an MLP
//! tower and a final linear layer), its two halves GMF and MLP, and dot-product matrix
//! factorisation (MF), each with parameter names equal to PyTorch's state-dict keys so checkpoints
//! move both ways (reference-semantics.md §4), behind one interface, [`Model`], that the trainer,
//! the evaluator and `ncf-infer` use and that a model written in another crate implements too.
//!
//! | model | logit | keys |
//! |---|---|---|
//! | [`NeuMf`] | `final([p_u * q_i; mlp([p'_u; q'_i])])` | `mf_*_embed`, `mlp_*_embed`, `mlp.k`, `final` |
//! | [`Gmf`] | `final(p_u * q_i)` | `mf_user_embed`, `mf_item_embed`, `final` |
//! | [`Mlp`] | `final(mlp([p'_u; q'_i]))` | `mlp_user_embed`, `mlp_item_embed`, `mlp.k`, `final` |
//! | [`Mf`] | `<p_u, q_i> + b_u + b_i + b` | `user_embed`, `item_embed`, `user_bias`, `item_bias`, `global_bias` |
//!
//! [`ModelKind`] names them (`--model`), tells them apart by their keys and builds them;
//! [`load_any`] opens any of their checkpoints; [`NeuMf::from_pretrained`] is the paper's
//! pre-training.
//!
//! **What it is for.** Building the reference's model ([`NeuMf::new`] from a [`NeuMfConfig`]), its
//! forward pass, loading and saving `model.pth` state dicts that PyTorch reads and writes
//! ([`NeuMf::load`], [`NeuMf::save`]), casting for inference ([`NeuMf::set_kind`]), and choosing a
//! device ([`runtime`]). The forward pass computes the first MLP layer once per distinct user and
//! item of a large batch (same math, fewer products) and, on the CPU, the final layer straight from
//! the GMF tables (`torch_ops::neumf_head`: no gathered copies); [`NeuMf::first_layer_tables`] and
//! [`NeuMf::forward_with_tables`] precompute it for every user and item of a trained model, and
//! [`NeuMf::set_matmul_kind`] runs the MLP's products in bfloat16 (`ncf-train --amp` on a CPU).
//!
//! **What it is not:** a training loop (`ncf-train`), a metric (`metrics`) or a file format
//! (`torchfile`).
//!
//! ```
//! use ncf_model::{NeuMf, NeuMfConfig};
//! let config = NeuMfConfig::new(100, 50); // 100 users, 50 items; factors 64, layers 256 256 128 64
//! let model = NeuMf::new(config.clone(), tch::Device::Cpu)?;
//! let dir = tempfile::tempdir().unwrap();
//! model.save(dir.path().join("model.pth"))?; // torch.load(..., weights_only=True) reads it
//!
//! let mut loaded = NeuMf::new(config, tch::Device::Cpu)?;
//! loaded.load(dir.path().join("model.pth"))?; // ours, or a checkpoint of the reference's ncf.py
//! loaded.set_train(false);
//! let users = tch::Tensor::from_slice(&[0i64, 1]);
//! let items = tch::Tensor::from_slice(&[5i64, 7]);
//! let scores = loaded.forward_sigmoid(&users, &items); // [2, 1] probabilities
//! assert_eq!(scores.size(), [2, 1]);
//! # Ok::<(), ncf_model::ModelError>(())
//! ```

mod distinct;
mod dropout;
mod error;
mod family;
mod halves;
mod mf;
mod model;
mod neumf;
pub mod runtime;

pub use error::ModelError;
pub use family::{load_any, ModelKind};
pub use halves::{Gmf, GmfConfig, Mlp, MlpConfig};
pub use mf::{Mf, MfConfig};
pub use model::{copy_state_dict, AnyModel, ItemSide, Model, PairTables, RowsGradient, UserTable};
pub use neumf::{FirstLayerTables, ItemHalf, NeuMf, NeuMfConfig};
