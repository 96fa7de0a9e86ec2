//! Load a trained checkpoint with the dataset it was trained on and print the top 10 items for a
//! user, in the raw ids of the original ratings file.
//!
//! ```text
//! cargo run --release --example train_synthetic -- /tmp/ncf-example
//! cargo run --release --example recommend -- /tmp/ncf-example/data /tmp/ncf-example/checkpoints/model.pth 1
//! ```

use inference::Recommender;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, model, user] = args.as_slice() else {
        eprintln!("usage: recommend DATASET_DIR MODEL.pth RAW_USER_ID");
        return ExitCode::from(2);
    };
    match run(Path::new(data), Path::new(model), user) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(data: &Path, model: &Path, user: &str) -> Result<(), Box<dyn std::error::Error>> {
    let recommender = Recommender::open(data, model, tch::Device::Cpu)?;
    let users = recommender.users_by_raw_id(&[user])?;
    for list in recommender.recommend(&users, 10, false) {
        println!("top 10 for user {} (items already rated left out):", list.user);
        for (rank, (item, score)) in list.items.iter().enumerate() {
            println!("  {:>2}. item {item:<8} p = {score:.4}", rank + 1);
        }
    }
    Ok(())
}
