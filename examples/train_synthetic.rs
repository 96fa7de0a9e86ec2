//! Train NeuMF from Rust through the library API: make a small synthetic MovieLens-like dataset,
//! prepare it (leave-last-out split, 100 test negatives), train a few epochs on the CPU (or CUDA
//! when present) and print HR@10 per epoch. The dataset and `model.pth` stay in OUT_DIR.
//!
//! ```text
//! cargo run --release --example train_synthetic -- OUT_DIR [EPOCHS]
//! ```

use ncf_train::{EpochReport, Observer, TrainConfig, Trainer};
use preprocess::{PrepareOptions, SyntheticConfig};
use std::path::Path;
use std::process::ExitCode;

/// Prints one line per epoch.
struct Lines;

impl Observer for Lines {
    fn epoch_finished(&mut self, r: &EpochReport) {
        println!(
            "epoch {}: HR@10 {:.4}  NDCG@10 {:.4}  train loss {:.4}  {:.0} samples/s",
            r.epoch + 1,
            r.eval.hr,
            r.eval.ndcg,
            r.train_loss,
            r.train_throughput
        );
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next() else {
        eprintln!("usage: train_synthetic OUT_DIR [EPOCHS]");
        return ExitCode::from(2);
    };
    let epochs = args.next().and_then(|e| e.parse().ok()).unwrap_or(5);
    match run(Path::new(&out), epochs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(out: &Path, epochs: usize) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    // 1. Raw ratings with planted structure, then the reference's preprocessing.
    let raw = out.join("ratings.csv");
    let synthetic = SyntheticConfig { users: 1000, items: 800, interactions: 50_000, ..Default::default() };
    preprocess::write_synthetic_ratings(&raw, &synthetic)?;
    let data = out.join("data");
    let options = PrepareOptions { replace: true, ..Default::default() };
    let summary = preprocess::prepare(&raw, &data, &options, |_| {})?;
    println!("prepared {} users, {} items", summary.users, summary.items);

    // 2. Train: the reference's defaults, but a small batch for a small dataset.
    let config = TrainConfig {
        data: data.clone(),
        epochs,
        batch_size: 8192,
        seed: Some(1),
        checkpoint_dir: Some(out.join("checkpoints")),
        log_path: None,
        device: tch::Device::cuda_if_available(),
        ..TrainConfig::default()
    };
    let result = Trainer::new(config)?.run(&mut Lines)?;
    println!("best HR@10 {:.4}; model saved in {}", result.best_hr, out.join("checkpoints/model.pth").display());
    Ok(())
}
