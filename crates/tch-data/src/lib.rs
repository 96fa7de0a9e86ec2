//! PyTorch `.pt` files and FeatureSpec datasets as `tch::Tensor`s on any device.
//!
//! **What it is for.** The libtorch side of data: [`load_tch_tensor`] / [`load_tch_map`] read what
//! Python's `torch.save` wrote (any location tag, e.g. the reference's `cuda:0`) onto the device the
//! caller asks for, straight into the tensor's memory; [`save_tch_tensor`] / [`save_tch_map`] write
//! tensors from any device so `torch.load(weights_only=True)` reads them; [`load_mapping`] loads a
//! FeatureSpec dataset's mapping as named one-dimensional feature tensors, with the checks of
//! `spec-dataset` (dtype, shape, row counts, ids below their cardinality).
//!
//! **What it is not.** The file format lives in `torchfile` and the rules in `spec-dataset`, both
//! libtorch-free so that tools such as `ncf-prepare` never link libtorch; this crate only adds tch.
//!
//! ```
//! use featurespec::FeatureSpec;
//! let (dir, checkpoint) = (std::path::Path::new("data/ml-20m"), "runs/model.pth");
//! # // Run as a test on the reference's own prepared ml-latest-small and checkpoint (shared/data).
//! # let dir = test_support::reference_prepared();
//! # let checkpoint = dir.join("reference_model.pth");
//! let spec = FeatureSpec::from_yaml_file(dir.join("feature_spec.yaml"))?;
//! let train = tch_data::load_mapping(&spec, "train", tch::Device::Cpu)?;
//! println!("{} train rows, users: {:?}", train.rows, train.features["user"].size());
//! let state = tch_data::load_tch_map(checkpoint, tch::Device::Cpu)?;
//! println!("{} tensors, e.g. {}", state.len(), state[0].0);
//! # assert!(train.rows > 0 && !state.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod convert;
mod device;

pub use convert::{dtype_of_kind, kind_of, load_tch, load_tch_map, load_tch_tensor, save_tch_map, save_tch_tensor};
pub use device::{load_mapping, load_mapping_with, MappingTensors};
