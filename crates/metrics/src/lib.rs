//! Ranking metrics for NCF evaluation: hit rate (HR@k) and NDCG@k over test lists of consecutive
//! rows, with the reference's duplicate mask, and the validation loss.
//!
//! **Status:** skeleton. The metrics land with the model-and-metrics issue; nothing here does work
//! yet.
//!
//! **What it is not:** a trainer or a data loader; it scores what it is given.
