//! Training steps against PyTorch: from the same state dict and on the same batches, NeuMF trained
//! by our step (forward, mean binary cross-entropy on logits, backward, fused Adam, gradients
//! cleared: `Trainer`'s loop) ends where the reference's `ncf.py` step (tests/py/train_steps.py:
//! `torch.optim.Adam`, `BCEWithLogitsLoss` then `torch.mean`) ends. Dropout is off, so the only
//! randomness is the batches, which both read from one file: what is left to differ is the math.

use ncf_model::{NeuMf, NeuMfConfig};
use ncf_train::Adam;
use std::path::Path;
use tch::{Device, Kind, Tensor};
use test_support::run_python;

const STEPS: i64 = 40;
const BATCH: i64 = 2048;
const LR: f64 = 0.0045;
const BETA1: f64 = 0.25;
const BETA2: f64 = 0.5;
const EPS: f64 = 1e-8;

fn abs_mean(t: &Tensor) -> f64 {
    t.abs().mean(Kind::Double).double_value(&[])
}

#[test]
fn forty_adam_steps_end_where_pytorchs_end() {
    // Few users and items per batch so the first MLP layer runs per distinct id (the path training
    // takes on real data), and an MLP as deep as the reference's default.
    let config = NeuMfConfig { users: 120, items: 500, mf_dim: 16, mlp_layers: vec![64, 64, 32, 16], dropout: 0.0 };
    tch::manual_seed(11);
    let model = NeuMf::new(config.clone(), Device::Cpu).unwrap();
    let start: Vec<(String, Tensor)> = model.state_dict().into_iter().map(|(k, v)| (k, v.copy())).collect();
    let opts = (Kind::Int64, Device::Cpu);
    let users = Tensor::randint(config.users, [STEPS, BATCH], opts);
    let items = Tensor::randint(config.items, [STEPS, BATCH], opts);
    // One positive in five, as the reference's epochs have with four negatives per positive.
    let labels = Tensor::randint(5, [STEPS, BATCH], opts).eq(0).to_kind(Kind::Float);

    let dir = tempfile::tempdir().unwrap();
    let (state, batches, out) =
        (dir.path().join("start.pth"), dir.path().join("batches.pt"), dir.path().join("out.pt"));
    model.save(&state).unwrap();
    tch_data::save_tch_map(
        &batches,
        &[("users", users.shallow_clone()), ("items", items.shallow_clone()), ("labels", labels.shallow_clone())],
    )
    .unwrap();
    let cfg = serde_json::json!({
        "users": config.users, "items": config.items, "mf_dim": config.mf_dim, "layers": config.mlp_layers,
        "dropout": 0.0, "lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/train_steps.py");
    run_python(
        &script,
        [cfg.to_string(), state.display().to_string(), batches.display().to_string(), out.display().to_string()],
    );

    // Our steps, as Trainer::train_epoch takes them.
    let params: Vec<Tensor> = model.state_dict().into_iter().map(|(_, t)| t).collect();
    let mut adam = Adam::new(&params, LR, BETA1, BETA2, EPS);
    let mut losses = Vec::new();
    for s in 0..STEPS {
        let logits = model.forward(&users.get(s), &items.get(s));
        let target = labels.get(s).view([-1, 1]);
        let loss = logits.binary_cross_entropy_with_logits::<Tensor>(&target, None, None, tch::Reduction::Mean);
        loss.backward();
        adam.step(&params, None);
        adam.zero_grad(&params);
        losses.push(loss.double_value(&[]));
    }

    let theirs: std::collections::HashMap<String, Tensor> =
        tch_data::load_tch_map(&out, Device::Cpu).unwrap().into_iter().collect();
    let their_losses = Vec::<f64>::try_from(&theirs["loss"].to_kind(Kind::Double)).unwrap();
    for (s, (a, b)) in losses.iter().zip(&their_losses).enumerate() {
        assert!((a - b).abs() < 1e-4 * b.abs(), "step {s}: loss {a} (ours) vs {b} (PyTorch)");
    }
    // Each parameter moved by 40 Adam steps (up to 0.18 each); float32 summation order differs, and
    // Adam divides by sqrt(v), so a gradient near rounding noise can flip an update: compare how far
    // the two runs are apart against how far they moved, tensor by tensor. Measured: at most 7e-7 of
    // the move; Adam's beta1 off by 0.001 (0.251) puts them 1.1e-3 of the move apart.
    for ((name, before), (_, ours)) in start.iter().zip(model.state_dict()) {
        let pytorch = &theirs[name];
        let moved = abs_mean(&(pytorch - before));
        let apart = abs_mean(&(&ours - pytorch));
        eprintln!("{name}: moved {moved:.3e}, apart {apart:.3e}");
        assert!(moved > 1e-4, "{name} did not train: moved {moved}");
        assert!(apart < 1e-5 * moved, "{name}: ours and PyTorch's are {apart} apart after moving {moved}");
    }
}
