//! A model defined outside ncf-rs, trained and evaluated by `ncf_train` on a prepared dataset.
//!
//! The model is a small two-tower recommender: a user tower and an item tower (an embedding, then
//! a linear layer and tanh each), scored by the dot product of the two towers' outputs. It
//! implements `ncf_model::Model`, so the trainer, its evaluation (HR@10, NDCG@10), checkpoints and
//! logs work for it unchanged.
//!
//!     cargo run --release -- DATA [EPOCHS]
//!
//! DATA is a dataset prepared by `ncf-prepare` or the reference (e.g.
//! `../shared/data/reference-prepared/ml-latest-small`). Exits non-zero if the model does not beat
//! a random ranking by a wide margin.

use ncf_model::{Model, ModelError};
use ncf_train::{Quiet, TrainConfig, Trainer};
use std::process::ExitCode;
use tch::nn::{self, Module};
use tch::{Device, Tensor};

/// `score(u, i) = <tanh(W_u p_u + b_u), tanh(W_i q_i + b_i)>`.
struct TwoTower {
    vs: nn::VarStore,
    user_embed: nn::Embedding,
    item_embed: nn::Embedding,
    user_tower: nn::Linear,
    item_tower: nn::Linear,
    users: i64,
    items: i64,
    train: bool,
}

impl TwoTower {
    fn new(users: i64, items: i64, dim: i64, device: Device) -> TwoTower {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let embed = nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.1 }, ..Default::default() };
        let user_embed = nn::embedding(&root / "user_embed", users, dim, embed);
        let item_embed = nn::embedding(&root / "item_embed", items, dim, embed);
        let user_tower = nn::linear(&root / "user_tower", dim, dim, Default::default());
        let item_tower = nn::linear(&root / "item_tower", dim, dim, Default::default());
        TwoTower { vs, user_embed, item_embed, user_tower, item_tower, users, items, train: true }
    }
}

impl Model for TwoTower {
    fn name(&self) -> &str {
        "two-tower"
    }
    fn users(&self) -> i64 {
        self.users
    }
    fn items(&self) -> i64 {
        self.items
    }
    fn device(&self) -> Device {
        self.vs.device()
    }
    fn forward(&self, users: &Tensor, items: &Tensor) -> Tensor {
        let u = self.user_tower.forward(&self.user_embed.forward(users)).tanh();
        let i = self.item_tower.forward(&self.item_embed.forward(items)).tanh();
        (u * i).sum_dim_intlist(1, true, None)
    }
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        // A fixed order (the optimizer's state and checkpoints follow it): the keys, sorted.
        let mut names: Vec<String> = self.vs.variables().into_keys().collect();
        names.sort();
        let vars = self.vs.variables();
        names.into_iter().map(|n| (n.clone(), vars[&n].shallow_clone())).collect()
    }
    fn set_train(&mut self, train: bool) {
        self.train = train;
    }
    fn is_training(&self) -> bool {
        self.train
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(data) = args.next() else {
        eprintln!("usage: ncf-downstream-example DATA [EPOCHS]");
        return ExitCode::from(2);
    };
    let epochs = args.next().and_then(|e| e.parse().ok()).unwrap_or(3);
    let config = TrainConfig {
        data: data.into(),
        epochs,
        batch_size: 16_384,
        valid_batch_size: 65_536,
        learning_rate: 0.01,
        seed: Some(1),
        checkpoint_dir: None,
        log_path: None,
        device: Device::Cpu,
        ..TrainConfig::default()
    };
    let build = |users, items, device| -> Result<ncf_model::AnyModel, ModelError> {
        Ok(Box::new(TwoTower::new(users, items, 32, device)))
    };
    let result = Trainer::with_model(config, build).and_then(|mut trainer| {
        eprintln!("training {} ({} parameters)", trainer.model().name(), trainer.model().parameter_count());
        trainer.run(&mut Quiet)
    });
    match result {
        Ok(summary) => {
            for e in &summary.epochs {
                println!(
                    "epoch {}: HR@10 {:.4} NDCG@10 {:.4} ({:.0} samples/s)",
                    e.epoch + 1,
                    e.eval.hr,
                    e.eval.ndcg,
                    e.train_throughput
                );
            }
            // A random ranking of 101 candidates puts the positive in the top 10 about 10% of the time.
            if summary.best_hr < 0.3 {
                eprintln!("best HR@10 {:.4}: no better than chance", summary.best_hr);
                return ExitCode::FAILURE;
            }
            println!("best HR@10 {:.4}", summary.best_hr);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
