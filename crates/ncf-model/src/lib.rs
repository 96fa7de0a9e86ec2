//! NeuMF, the Neural Matrix Factorization model of NCF, on tch: MF and MLP embedding pairs, an MLP
//! tower and a final linear layer, with parameter names equal to PyTorch's state-dict keys so
//! checkpoints move both ways.
//!
//! **Status:** the model lands with the model-and-metrics issue. What is here now is [`runtime`]:
//! choosing a device (`auto|cpu|cuda|cuda:N`) and reporting which libtorch is in use.
//!
//! **What it is not:** a training loop (`ncf-train`) or a file reader (`torchfile`).

pub mod runtime;
