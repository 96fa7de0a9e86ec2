//! MovieLens-style preprocessing for NCF, the job of the reference's `prepare_dataset.sh` and
//! `convert.py` (reference-semantics.md §1).
//!
//! **What it is for.** Raw ratings -> a FeatureSpec dataset: read the raw file ([`load_raw`], with
//! polars), renumber users and items by first appearance, sort each user's ratings by time (stable:
//! ties keep file order), drop repeated (user, item) pairs keeping the earliest, hold out each
//! user's last rating as its test positive ([`LeaveLastOut`]), draw the test negatives
//! ([`NegativeSampler`]), and write the reference's four tensor files, `feature_spec.yaml` and the
//! id maps ([`prepare`] does it all, atomically). [`verify`] is the reference's correctness check;
//! [`write_synthetic_ratings`] writes a MovieLens-like raw file with planted structure.
//!
//! **What it is not:** a general data-frame toolkit, or a trainer; it stops at the dataset files.
//!
//! Differences from the reference, on purpose: the time sort is stable (ties keep file order; the
//! reference's is not, so tied test positives may differ); a user with a single rating keeps it as
//! its test positive, has no train row and still gets test negatives (the reference sizes its
//! tables from the train rows and breaks); the sampler's random numbers are ours (PCG-64), so the
//! negatives follow the reference's rule but not its exact draws.
//!
//! ```
//! use preprocess::{prepare, write_synthetic_ratings, PrepareOptions, SyntheticConfig};
//! let dir = tempfile::tempdir()?;
//! let raw = dir.path().join("ratings.csv"); // ml-20m format: userId,movieId,rating,timestamp
//! write_synthetic_ratings(&raw, &SyntheticConfig { users: 50, items: 40, interactions: 1_000, ..Default::default() })?;
//! let summary = prepare(&raw, &dir.path().join("data"), &PrepareOptions::default(), |_| {})?;
//! assert_eq!(summary.users, 50);
//! assert!(dir.path().join("data/feature_spec.yaml").exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod diagnose;
mod error;
mod format;
mod load;
mod negatives;
mod pipeline;
mod prepare;
mod release;
mod synthetic;
mod verify;
mod write;

pub use error::PrepareError;
pub use format::RawFormat;
pub use load::{load_raw, RawRatings};
pub use negatives::NegativeSampler;
pub use pipeline::{factorize, LeaveLastOut, Stats, ValidationSplit};
pub use prepare::{prepare, PrepareOptions, PrepareSummary, Stage};
pub use release::{extract_release, MovieLensRelease};
pub use synthetic::{write_synthetic_ratings, SyntheticConfig};
pub use verify::{verify, VerifyReport};
pub use write::{ncf_spec, ncf_spec_with, write_atomically};
