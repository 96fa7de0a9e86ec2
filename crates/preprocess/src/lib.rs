//! MovieLens-style preprocessing for NCF, the job of the reference's `prepare_dataset.sh` and
//! `convert.py`: renumber users and items by first appearance, sort by time, drop duplicate
//! (user, item) pairs, split each user's last interaction off as the test positive, draw the test
//! negatives, and write a FeatureSpec dataset.
//!
//! **Status:** skeleton. The pipeline lands with the `ncf-prepare` issue; nothing here does work yet.
//!
//! **What it is not:** a general data-frame toolkit, or a trainer; it stops at the dataset files.
