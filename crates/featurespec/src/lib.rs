//! The Dataset Feature Specification: the `feature_spec.yaml` that describes a recommender dataset,
//! as typed Rust data that loads, validates and saves.
//!
//! **What it is for.** Reading and writing the YAML format of NVIDIA's DeepLearningExamples
//! (`feature_spec`, `source_spec`, `channel_spec`, `metadata`), checking it with errors that name the
//! file and the key at fault, and resolving its data file paths safely. [`ncf::NcfLayout`] applies the
//! extra rules a NeuMF dataset must follow; [`template_differences`] is the reference's template
//! comparison; the rest of the crate is model-agnostic.
//!
//! **What it is not.** It never opens the data files a spec points to (tensor loading lives in the
//! `torchfile` crate, CSV reading in `transcode`), and it depends on neither tch nor polars, so any
//! Rust recommender code can use it alone.
//!
//! ```
//! use featurespec::{Cardinality, Dtype, FeatureSpec};
//!
//! let yaml = "
//! feature_spec:
//!   user: {dtype: torch.int64, cardinality: 610}
//!   item: {dtype: torch.int64, cardinality: auto}
//!   label: {dtype: torch.float32}
//! metadata: {test_samples_per_series: 101}
//! source_spec:
//!   train:
//!     - {type: torch_tensor, features: [user, item], files: [train_data_0.pt]}
//!     - {type: torch_tensor, features: [label], files: [train_data_1.pt]}
//! channel_spec: {user_ch: [user], item_ch: [item], label_ch: [label]}
//! ";
//! let spec = FeatureSpec::from_yaml_str(yaml, "/data/ml")?;
//! assert_eq!(spec.feature("user")?.cardinality, Some(Cardinality::Known(610)));
//! assert_eq!(spec.feature("label")?.dtype, Some(Dtype::Float32));
//! let chunk = &spec.source_spec["train"][0];
//! assert_eq!(spec.resolve_file(&chunk.files[0])?, std::path::Path::new("/data/ml/train_data_0.pt"));
//! # Ok::<(), featurespec::SpecError>(())
//! ```

mod dtype;
mod error;
pub mod ncf;
mod spec;
mod template;
mod validate;
mod yaml;

pub use dtype::Dtype;
pub use error::{Location, SpecError};
pub use spec::{Cardinality, Chunk, ChunkType, FeatureMeta, FeatureSpec, LoadOptions};
pub use template::template_differences;
