//! Turns a FeatureSpec dataset stored as headerless CSV chunks into PyTorch tensor files and a new
//! `feature_spec.yaml`, the job of the reference's `transcode.py`.
//!
//! **Status:** skeleton. The transcoder lands with the `ncf-transcode` issue; nothing here does work
//! yet.
//!
//! **What it is not:** a preprocessor (ids must already be `0..n`, test negatives already present).
