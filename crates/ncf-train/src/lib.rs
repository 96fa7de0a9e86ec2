//! The NCF training and evaluation loop, the job of the reference's `ncf.py`: epoch data with
//! random negatives built on the device, Adam (fused), AMP, gradient accumulation, evaluation after
//! every epoch, checkpoints, DLLogger logs, and data-parallel training over NCCL.
//!
//! **Status:** skeleton. The trainer lands with the `ncf-train` issue; nothing here does work yet.
//!
//! **What it is not:** a command-line program (that is `bins/ncf-train`), or the model itself
//! (`ncf-model`).

pub use ncf_model;
