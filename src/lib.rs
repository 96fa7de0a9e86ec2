//! # ncf-rs
//!
//! Neural Collaborative Filtering (NeuMF) in Rust: a rebuild of NVIDIA's PyTorch NCF recipe as a set
//! of focused library crates and four thin binaries (`ncf-prepare`, `ncf-transcode`, `ncf-train`,
//! `ncf-infer`).
//!
//! This umbrella crate only re-exports the library crates, in the order data flows through them:
//! raw ratings -> [`preprocess`] -> [`featurespec`] dataset ([`transcode`] for CSV datasets), stored
//! as [`torchfile`] `.pt` files, checked by [`spec_dataset`] and loaded onto a device by [`tch_data`]
//! -> [`ncf_model`] + [`ncf_train`] ->
//! checkpoint -> [`metrics`] / [`inference`]; logs in [`dllogger`]'s format.
//! It holds no logic of its own; depend on the individual crates when you need only one of them.
//!
//! ```
//! // Every crate under one name: here the Dataset Feature Specification of the project's small
//! // CSV example (data/csv_conversion), read through `ncf_rs::featurespec`.
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/csv_conversion/feature_spec.yaml");
//! let spec = ncf_rs::featurespec::FeatureSpec::from_yaml_file(path)?;
//! println!("features: {:?}", spec.feature_spec.keys().collect::<Vec<_>>());
//! # assert!(spec.feature_spec.contains_key("user"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use dllogger;
pub use featurespec;
pub use inference;
pub use metrics;
pub use ncf_model;
pub use ncf_train;
pub use preprocess;
pub use spec_dataset;
pub use tch_data;
pub use torchfile;
pub use transcode;
