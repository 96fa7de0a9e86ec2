//! GMF, MLP and MF against PyTorch implementations written apart from ours
//! (tests/py/family_reference.py): the same state dict gives the same logits and all-item
//! probabilities, checkpoints name their model by their keys, and NeuMF's pre-training copies what
//! the paper says it copies.

use ncf_model::{
    load_any, Gmf, GmfConfig, Mf, MfConfig, Mlp, MlpConfig, Model, ModelError, ModelKind, NeuMf, NeuMfConfig,
};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use test_support::run_python;

const USERS: i64 = 40;
const ITEMS: i64 = 90;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/family_reference.py")
}

/// Ids where the users repeat (so MLP's first layer runs per distinct id) and pairs of a few users.
fn ids(n: i64) -> (Tensor, Tensor) {
    let opts = (Kind::Int64, Device::Cpu);
    (Tensor::randint(USERS, [n], opts), Tensor::randint(ITEMS, [n], opts))
}

/// PyTorch's output of `command` (`forward` or `all-items`) for the model saved at `state`.
fn pytorch(command: &str, config: serde_json::Value, state: &Path, users: &Tensor, items: &Tensor) -> Tensor {
    let dir = tempfile::tempdir().unwrap();
    let (ids, out) = (dir.path().join("ids.pt"), dir.path().join("out.pt"));
    tch_data::save_tch_map(&ids, &[("users", users.shallow_clone()), ("items", items.shallow_clone())]).unwrap();
    let args = [
        command,
        &config.to_string(),
        &state.display().to_string(),
        &ids.display().to_string(),
        &out.display().to_string(),
    ];
    run_python(&script(), args);
    tch_data::load_tch_tensor(&out, Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// Trains a few steps so that biases and the final layer are not at their initial values.
fn perturb(model: &dyn Model) {
    tch::no_grad(|| {
        for (_, t) in model.state_dict() {
            let _ = t.shallow_clone().g_add_(&(t.randn_like() * 0.1));
        }
    });
}

fn check_against_pytorch(mut model: Box<dyn Model>, config: serde_json::Value) {
    perturb(model.as_ref());
    model.set_train(false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("model.pth");
    model.save(&state).unwrap();
    let (users, items) = ids(1500);
    let ours = tch::no_grad(|| model.forward(&users, &items));
    let theirs = pytorch("forward", config.clone(), &state, &users, &items);
    let d = max_abs_diff(&ours, &theirs);
    assert!(d < 1e-5, "{}: logits differ from PyTorch's by {d}", model.name());

    let block = Tensor::from_slice(&[3i64, 0, 17, 39]);
    let ours = model.all_item_logits(&block, &model.item_side()).sigmoid();
    let theirs = pytorch("all-items", config, &state, &block, &block);
    let d = max_abs_diff(&ours, &theirs);
    assert!(d < 1e-5, "{}: all-item probabilities differ from PyTorch's by {d}", model.name());

    // The file names its model, and opens as it was saved.
    let (kind, reloaded) = load_any(&state, 0.0, Device::Cpu).unwrap();
    assert_eq!(kind.name(), model.name());
    let again = tch::no_grad(|| reloaded.forward(&users, &items));
    assert_eq!(max_abs_diff(&again, &tch::no_grad(|| model.forward(&users, &items))), 0.0);
}

#[test]
fn gmf_scores_as_pytorch_does() {
    let model = Gmf::new(GmfConfig { users: USERS, items: ITEMS, factors: 8 }, Device::Cpu).unwrap();
    let keys: Vec<String> = model.state_dict().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["mf_user_embed.weight", "mf_item_embed.weight", "final.weight", "final.bias"]);
    check_against_pytorch(
        Box::new(model),
        serde_json::json!({"model": "gmf", "users": USERS, "items": ITEMS, "factors": 8}),
    );
}

#[test]
fn mlp_scores_as_pytorch_does() {
    let config = MlpConfig { users: USERS, items: ITEMS, layers: vec![16, 32, 8], dropout: 0.5 };
    let model = Mlp::new(config, Device::Cpu).unwrap();
    let keys: Vec<String> = model.state_dict().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "mlp_user_embed.weight",
            "mlp_item_embed.weight",
            "mlp.0.weight",
            "mlp.0.bias",
            "mlp.1.weight",
            "mlp.1.bias",
            "final.weight",
            "final.bias"
        ]
    );
    check_against_pytorch(
        Box::new(model),
        serde_json::json!({"model": "mlp", "users": USERS, "items": ITEMS, "layers": [16, 32, 8]}),
    );
}

#[test]
fn mf_scores_as_pytorch_does() {
    let model = Mf::new(MfConfig { users: USERS, items: ITEMS, factors: 12 }, Device::Cpu).unwrap();
    check_against_pytorch(
        Box::new(model),
        serde_json::json!({"model": "mf", "users": USERS, "items": ITEMS, "factors": 12}),
    );
}

#[test]
fn the_default_all_items_scoring_equals_the_models_own() {
    // A model that keeps the trait's default (pairs through `forward`) must agree with MF's matrix
    // product: the default is what a model from another crate gets.
    struct PairsOnly(Mf);
    impl Model for PairsOnly {
        fn name(&self) -> &str {
            "pairs-only"
        }
        fn users(&self) -> i64 {
            self.0.users()
        }
        fn items(&self) -> i64 {
            self.0.items()
        }
        fn device(&self) -> Device {
            self.0.device()
        }
        fn forward(&self, u: &Tensor, i: &Tensor) -> Tensor {
            self.0.forward(u, i)
        }
        fn state_dict(&self) -> Vec<(String, Tensor)> {
            self.0.state_dict()
        }
        fn set_train(&mut self, t: bool) {
            self.0.set_train(t)
        }
        fn is_training(&self) -> bool {
            self.0.is_training()
        }
    }
    let mf = Mf::new(MfConfig { users: USERS, items: ITEMS, factors: 6 }, Device::Cpu).unwrap();
    perturb(&mf);
    let block = Tensor::from_slice(&[1i64, 5, 9]);
    let own = mf.all_item_logits(&block, &mf.item_side());
    let pairs = PairsOnly(mf);
    let default = pairs.all_item_logits(&block, &pairs.item_side());
    assert!(max_abs_diff(&own, &default) < 1e-6);
}

#[test]
fn the_reference_checkpoint_is_a_neumf() {
    let path = test_support::reference_prepared().join("reference_model.pth");
    if !path.exists() {
        panic!("{} is missing: the shared reference files are needed", path.display());
    }
    let (kind, model) = load_any(&path, 0.0, Device::Cpu).unwrap();
    assert_eq!((kind, model.name()), (ModelKind::NeuMf, "neumf"));
}

#[test]
fn pretraining_copies_both_halves_and_weights_the_final_layers() {
    let gmf = Gmf::new(GmfConfig { users: USERS, items: ITEMS, factors: 8 }, Device::Cpu).unwrap();
    let mlp =
        Mlp::new(MlpConfig { users: USERS, items: ITEMS, layers: vec![16, 8, 4], dropout: 0.0 }, Device::Cpu).unwrap();
    perturb(&gmf);
    perturb(&mlp);
    let alpha = 0.3;
    let neumf = NeuMf::from_pretrained(&gmf, &mlp, alpha, 0.5, Device::Cpu).unwrap();
    assert_eq!(
        neumf.config(),
        &NeuMfConfig { users: USERS, items: ITEMS, mf_dim: 8, mlp_layers: vec![16, 8, 4], dropout: 0.5 }
    );
    let get = |m: &dyn Model, k: &str| m.state_dict().into_iter().find(|(n, _)| n == k).unwrap().1;
    for (name, _) in gmf.state_dict().into_iter().chain(mlp.state_dict()) {
        if name.starts_with("final.") {
            continue;
        }
        let from: &dyn Model = if name.starts_with("mf_") { &gmf } else { &mlp };
        assert!(get(&neumf, &name).equal(&get(from, &name)), "{name} was not copied");
    }
    let w = get(&neumf, "final.weight");
    assert_eq!(w.size(), [1, 12]);
    assert!(w.narrow(1, 0, 8).allclose(&(get(&gmf, "final.weight") * alpha), 1e-7, 1e-7, false));
    assert!(w.narrow(1, 8, 4).allclose(&(get(&mlp, "final.weight") * (1.0 - alpha)), 1e-7, 1e-7, false));
    let b = get(&gmf, "final.bias") * alpha + get(&mlp, "final.bias") * (1.0 - alpha);
    assert!(get(&neumf, "final.bias").allclose(&b, 1e-7, 1e-7, false));

    // In evaluation mode the pre-trained NeuMF's logit is exactly the weighted sum of the halves'.
    let (mut neumf, mut gmf, mut mlp) = (neumf, gmf, mlp);
    for m in [&mut neumf as &mut dyn Model, &mut gmf, &mut mlp] {
        m.set_train(false);
    }
    let (users, items) = ids(300);
    let mixed = tch::no_grad(|| gmf.forward(&users, &items) * alpha + mlp.forward(&users, &items) * (1.0 - alpha));
    assert!(max_abs_diff(&tch::no_grad(|| neumf.forward(&users, &items)), &mixed) < 1e-5);
}

#[test]
fn pretraining_refuses_halves_of_different_datasets() {
    let gmf = Gmf::new(GmfConfig { users: USERS, items: ITEMS, factors: 8 }, Device::Cpu).unwrap();
    let mlp =
        Mlp::new(MlpConfig { users: USERS + 1, items: ITEMS, layers: vec![16, 8], dropout: 0.0 }, Device::Cpu).unwrap();
    let err = NeuMf::from_pretrained(&gmf, &mlp, 0.5, 0.5, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("40 users") && err.contains("41 users"), "{err}");
}

#[test]
fn a_checkpoint_of_another_model_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gmf.pth");
    Gmf::new(GmfConfig { users: USERS, items: ITEMS, factors: 8 }, Device::Cpu).unwrap().save(&path).unwrap();
    let err = Mlp::from_checkpoint(&path, 0.0, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("is a GMF checkpoint, not an MLP checkpoint"), "{err}");
    // Loading it into a NeuMF names the keys NeuMF misses.
    let mut neumf = NeuMf::new(NeuMfConfig::new(USERS, ITEMS), Device::Cpu).unwrap();
    let err = neumf.load(&path).unwrap_err();
    let ModelError::Checkpoint { problems, .. } = err else { panic!("{err}") };
    assert!(problems.iter().any(|p| p.contains("missing `mlp_user_embed.weight`")), "{problems:?}");
}

#[test]
fn model_names_parse_and_refuse_others() {
    for kind in ModelKind::ALL {
        assert_eq!(kind.name().parse::<ModelKind>(), Ok(kind));
    }
    assert!("bpr".parse::<ModelKind>().unwrap_err().contains("neumf, gmf, mlp, mf"));
}
