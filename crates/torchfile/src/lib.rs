//! PyTorch `torch.save` files (`.pt`, `.pth`), read and written in Rust.
//!
//! **What it is for.** Moving tensors between PyTorch and Rust: datasets (`train_data_0.pt`) and
//! checkpoints (`model.pth`, a state dict) written by either side load in the other. tch 0.24 cannot
//! read what Python's `torch.save` writes, and `torch.load(weights_only=True)` refuses what
//! `tch::Tensor::save` writes, so this crate implements the format itself: a zip archive holding a
//! pickle (`data.pkl`) and one record per storage (`data/0`, `data/1`, ...).
//!
//! **Safe by construction**, like `weights_only=True`: the unpickler accepts only the opcodes and the
//! handful of globals that tensor and state-dict files use, recognises them by name and never calls
//! anything. Every size the file declares is checked against the bytes really present before memory
//! is allocated, so a corrupt or hostile file gives a [`TorchFileError`] naming the file, never a
//! panic, an abort or a huge allocation.
//!
//! **What it is not.** It does not know datasets or models (`spec-dataset` checks FeatureSpec
//! datasets on top of it, `ncf-model` maps state dicts to parameters), and it has no dependency on
//! libtorch: `tch-data` turns what it reads into `tch::Tensor`s on any device, reading straight into
//! the tensor's memory through [`TorchFile::plan`] and [`TorchFile::read_planned`].
//!
//! ```
//! use torchfile::{save_tensor_map, Dtype, TensorView, TorchFile};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("model.pth");
//! let weight: Vec<f32> = vec![0.5, -1.0, 2.0, 0.25, 3.0, 1.5];
//! let bias: Vec<f32> = vec![0.1, 0.2];
//! save_tensor_map(&path, &[
//!     ("final.weight", TensorView::from_f32(&weight, &[2, 3])),
//!     ("final.bias", TensorView::from_f32(&bias, &[2])),
//! ])?;
//!
//! let mut file = TorchFile::open(&path)?;
//! let tensors = file.tensor_map()?;
//! assert_eq!(tensors[0].0, "final.weight");
//! assert_eq!(tensors[0].1.shape, [2, 3]);
//! let data = file.read(&tensors[1].1)?;
//! assert_eq!(data.dtype, Dtype::Float32);
//! assert_eq!(data.to_f32(), bias);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod layout;
mod pickle;
mod read;
mod tensor;
mod write;

pub use error::TorchFileError;
pub use featurespec::Dtype;
pub use layout::ArchiveLayout;
pub use pickle::{unpickle, Global, PickleError, Value};
pub use read::{ReadLimits, ReadPlan, TorchFile};
pub use tensor::{StorageRef, TensorData, TensorRef, TensorView};
pub use write::{save_tensor, save_tensor_map};

/// Strips a `module.` prefix (what `DistributedDataParallel` adds to state-dict keys) from every key
/// that has it.
pub fn strip_module_prefix<T>(entries: Vec<(String, T)>) -> Vec<(String, T)> {
    entries.into_iter().map(|(k, v)| (k.strip_prefix("module.").map(str::to_owned).unwrap_or(k), v)).collect()
}
