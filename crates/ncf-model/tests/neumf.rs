//! NeuMF against PyTorch: the reference architecture (tests/py/neumf_reference.py) scores the same
//! ids from the same state dict, checkpoints move both ways, and the model's shape rules hold.

use ncf_model::{ModelError, NeuMf, NeuMfConfig};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use test_support::run_python;

mod rounding;

fn small() -> NeuMfConfig {
    NeuMfConfig { users: 50, items: 70, mf_dim: 8, mlp_layers: vec![16, 32, 8], dropout: 0.5 }
}

fn config_json(c: &NeuMfConfig) -> String {
    serde_json::json!({"users": c.users, "items": c.items, "mf_dim": c.mf_dim, "layers": c.mlp_layers, "dropout": c.dropout})
        .to_string()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/neumf_reference.py")
}

fn random_ids(c: &NeuMfConfig, n: i64) -> (Tensor, Tensor) {
    let opts = (Kind::Int64, Device::Cpu);
    (Tensor::randint(c.users, [n], opts), Tensor::randint(c.items, [n], opts))
}

/// PyTorch's logits for `ids` from the state dict at `state`.
fn pytorch_logits(c: &NeuMfConfig, state: &Path, users: &Tensor, items: &Tensor) -> Tensor {
    let dir = tempfile::tempdir().unwrap();
    let (ids, out) = (dir.path().join("ids.pt"), dir.path().join("logits.pt"));
    tch_data::save_tch_map(&ids, &[("users", users.shallow_clone()), ("items", items.shallow_clone())]).unwrap();
    let args = [
        "forward".to_owned(),
        config_json(c),
        state.display().to_string(),
        ids.display().to_string(),
        out.display().to_string(),
    ];
    run_python(&script(), &args);
    tch_data::load_tch_tensor(&out, Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn our_logits_equal_pytorchs_for_our_checkpoint() {
    tch::manual_seed(3);
    let c = small();
    let mut model = NeuMf::new(c.clone(), Device::Cpu).unwrap();
    model.set_train(false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("model.pth");
    model.save(&state).unwrap();
    let (users, items) = random_ids(&c, 1000);
    let ours = tch::no_grad(|| model.forward(&users, &items));
    let theirs = pytorch_logits(&c, &state, &users, &items);
    assert_eq!(ours.size(), vec![1000, 1]);
    let diff = max_abs_diff(&ours, &theirs);
    assert!(diff < 1e-5, "max |ours - pytorch| = {diff}");
    // Not a vacuous match: the logits vary.
    assert!(ours.std(true).double_value(&[]) > 1e-4);
}

#[test]
fn a_pytorch_ddp_checkpoint_loads_and_scores_the_same() {
    let c = small();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ddp.pth");
    run_python(&script(), ["init".to_owned(), "5".to_owned(), config_json(&c), state.display().to_string()]);
    let mut model = NeuMf::new(c.clone(), Device::Cpu).unwrap();
    model.load(&state).unwrap(); // keys carry `module.`
    model.set_train(false);
    let (users, items) = random_ids(&c, 500);
    let diff =
        max_abs_diff(&tch::no_grad(|| model.forward(&users, &items)), &pytorch_logits(&c, &state, &users, &items));
    assert!(diff < 1e-5, "max |ours - pytorch| = {diff}");
    // And it round-trips: saved by us, the same values and PyTorch's key order.
    let again = dir.path().join("again.pth");
    model.save(&again).unwrap();
    let names: Vec<String> = tch_data::load_tch_map(&again, Device::Cpu).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, model.parameter_names());
    assert_eq!(
        names,
        [
            "mf_user_embed.weight",
            "mf_item_embed.weight",
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
}

#[test]
fn a_checkpoint_of_another_shape_is_refused_with_every_key_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("model.pth");
    NeuMf::new(small(), Device::Cpu).unwrap().save(&state).unwrap();
    let other = NeuMfConfig { items: 71, mlp_layers: vec![16, 32, 8, 4], ..small() };
    let mut model = NeuMf::new(other, Device::Cpu).unwrap();
    let before = model.state_dict()[0].1.copy();
    let err = model.load(&state).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Checkpoint { .. }), "{msg}");
    for needle in [
        "model.pth",
        "`mf_item_embed.weight`: checkpoint shape [70, 8], model shape [71, 8]",
        "`mlp_item_embed.weight`: checkpoint shape [70, 8], model shape [71, 8]",
        "missing `mlp.2.weight` (model shape [4, 8])",
        "`final.weight`: checkpoint shape [1, 16], model shape [1, 12]",
    ] {
        assert!(msg.contains(needle), "`{needle}` not in:\n{msg}");
    }
    assert!(!msg.contains("mf_user_embed"), "a fitting key is not listed:\n{msg}");
    // Nothing was copied.
    assert!(max_abs_diff(&model.state_dict()[0].1, &before) == 0.0);
}

#[test]
fn unexpected_keys_are_refused() {
    let mut model = NeuMf::new(small(), Device::Cpu).unwrap();
    let mut entries = model.state_dict().into_iter().map(|(k, v)| (k, v.copy())).collect::<Vec<_>>();
    entries.push(("mlp.7.weight".into(), Tensor::zeros([2, 2], (Kind::Float, Device::Cpu))));
    let msg = model.load_state_dict(entries).unwrap_err().to_string();
    assert!(msg.contains("unexpected `mlp.7.weight` (shape [2, 2])"), "{msg}");
}

#[test]
fn ml20m_defaults_have_the_reference_parameter_count() {
    let config = NeuMfConfig::new(138_493, 26_744);
    assert_eq!(config.parameter_count(), 31_832_577);
    assert_eq!(NeuMf::new(config, Device::Cpu).unwrap().parameter_count(), 31_832_577);
}

#[test]
fn odd_or_empty_layers_are_refused() {
    for layers in [vec![255, 128], vec![], vec![0], vec![16, 0]] {
        let err = NeuMf::new(NeuMfConfig { mlp_layers: layers.clone(), ..small() }, Device::Cpu).unwrap_err();
        assert!(matches!(err, ModelError::Config(_)), "{layers:?}: {err}");
    }
    let msg = NeuMf::new(NeuMfConfig { mlp_layers: vec![255, 128], ..small() }, Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("layers[0] = 255 must be even"), "{msg}");
}

#[test]
fn initialisation_follows_the_reference() {
    tch::manual_seed(1);
    let c = NeuMfConfig { users: 2000, items: 3000, mf_dim: 32, mlp_layers: vec![64, 128, 32], dropout: 0.5 };
    let model = NeuMf::new(c, Device::Cpu).unwrap();
    let sd: std::collections::HashMap<String, Tensor> = model.state_dict().into_iter().collect();
    let std = |k: &str| sd[k].std(true).double_value(&[]);
    let bound = |k: &str| sd[k].abs().max().double_value(&[]);
    for k in ["mf_user_embed.weight", "mf_item_embed.weight", "mlp_user_embed.weight", "mlp_item_embed.weight"] {
        assert!((std(k) - 0.01).abs() < 0.0005, "{k}: std {}", std(k));
        assert!(sd[k].mean(Kind::Float).double_value(&[]).abs() < 0.001);
    }
    // Uniform(-a, a): the largest |w| is just under a, and the std is a / sqrt(3).
    for (k, a) in [
        ("mlp.0.weight", (6.0f64 / (64.0 + 128.0)).sqrt()),
        ("mlp.1.weight", (6.0f64 / (128.0 + 32.0)).sqrt()),
        ("final.weight", (3.0f64 / 64.0).sqrt()),
        ("mlp.0.bias", 1.0 / 64f64.sqrt()),
        ("mlp.1.bias", 1.0 / 128f64.sqrt()),
        ("final.bias", 1.0 / 64f64.sqrt()),
    ] {
        assert!(bound(k) <= a && bound(k) > 0.8 * a, "{k}: max |w| {} for bound {a}", bound(k));
        if sd[k].numel() > 1000 {
            assert!((std(k) - a / 3f64.sqrt()).abs() < 0.05 * a, "{k}: std {}", std(k));
        }
    }
}

#[test]
fn dropout_only_in_training_mode() {
    tch::manual_seed(2);
    let c = small();
    let mut model = NeuMf::new(c.clone(), Device::Cpu).unwrap();
    let (users, items) = random_ids(&c, 200);
    model.set_train(false);
    let a = tch::no_grad(|| model.forward(&users, &items));
    let b = tch::no_grad(|| model.forward(&users, &items));
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    model.set_train(true);
    let t = tch::no_grad(|| model.forward(&users, &items));
    assert!(max_abs_diff(&a, &t) > 1e-6);
}

#[test]
fn half_and_bfloat16_casts_score_close_to_float32() {
    tch::manual_seed(4);
    let c = small();
    let mut model = NeuMf::new(c.clone(), Device::Cpu).unwrap();
    model.set_train(false);
    let (users, items) = random_ids(&c, 300);
    let full = tch::no_grad(|| model.forward_sigmoid(&users, &items));
    for kind in [Kind::Half, Kind::BFloat16] {
        let mut cast = NeuMf::new(c.clone(), Device::Cpu).unwrap();
        cast.load_state_dict(model.state_dict()).unwrap();
        cast.set_kind(kind);
        cast.set_train(false);
        assert!(cast.state_dict().iter().all(|(_, t)| t.kind() == kind));
        let p = tch::no_grad(|| cast.forward_sigmoid(&users, &items));
        assert_eq!(p.kind(), kind);
        let diff = max_abs_diff(&p.to_kind(Kind::Float), &full);
        assert!(diff < 1e-2, "{kind:?}: {diff}");
    }
}

#[test]
fn all_items_scoring_equals_pair_by_pair_scoring() {
    all_items_case(NeuMfConfig { users: 40, items: 300, mf_dim: 8, mlp_layers: vec![16, 32, 8], dropout: 0.5 });
    // On the CPU a user's items are scored in blocks of 2^20 activations of the widest layer
    // output: 2,048 items at 512, so 5,000 items take three blocks, the last one short.
    all_items_case(NeuMfConfig { users: 40, items: 5000, mf_dim: 8, mlp_layers: vec![64, 512, 8], dropout: 0.5 });
    // No hidden layer: the MLP branch is the two embeddings side by side.
    all_items_case(NeuMfConfig { users: 40, items: 300, mf_dim: 8, mlp_layers: vec![16], dropout: 0.5 });
}

fn all_items_case(c: NeuMfConfig) {
    tch::manual_seed(8);
    let items = c.items;
    let mut model = NeuMf::new(c.clone(), Device::Cpu).unwrap();
    // Spread the weights: a fresh model scores items a few float32 ulps apart, and the top 10 of
    // two summation orders would then depend on the CPU's kernels.
    tch::no_grad(|| {
        for (_, t) in model.state_dict() {
            let _ = t.shallow_clone().g_add_(&(t.randn_like() * 0.3));
        }
    });
    model.set_train(false);
    let users = Tensor::from_slice(&[0i64, 7, 39]);
    // Logits, not probabilities: spread weights saturate the sigmoid, where wrong logits could
    // still give equal probabilities.
    let all = model.all_item_logits(&users, &model.item_half());
    assert_eq!(all.size(), vec![3, items]);
    for (row, u) in [0i64, 7, 39].into_iter().enumerate() {
        let all_items = Tensor::arange(items, (Kind::Int64, Device::Cpu));
        let pairs = tch::no_grad(|| model.forward(&Tensor::full([items], u, (Kind::Int64, Device::Cpu)), &all_items))
            .view([-1]);
        // Two summation orders in float32: within 1e-4 of the largest logit's size.
        let scale = pairs.abs().max().double_value(&[]).max(1.0);
        let diff = max_abs_diff(&all.get(row as i64), &pairs);
        assert!(diff < 1e-4 * scale, "{c:?}, user {u}: {diff} (logits up to {scale})");
        let (_, top_all) = all.get(row as i64).topk(10, 0, true, true);
        let (_, top_pairs) = pairs.topk(10, 0, true, true);
        assert!(top_all.equal(&top_pairs), "{c:?}, user {u}: top 10 differ");
    }
    // Dropout is off whatever the mode; the probabilities are the logits' sigmoid.
    model.set_train(true);
    assert!(model.all_item_logits(&users, &model.item_half()).equal(&all));
    assert!(model.score_all_items(&users, &model.item_half()).equal(&all.sigmoid()));
}

#[test]
fn the_shape_is_read_back_from_a_state_dict() {
    let c = NeuMfConfig { users: 12, items: 34, mf_dim: 6, mlp_layers: vec![10, 20, 4], dropout: 0.1 };
    let model = NeuMf::new(c.clone(), Device::Cpu).unwrap();
    let entries: Vec<(String, Tensor)> =
        model.state_dict().into_iter().map(|(k, v)| (format!("module.{k}"), v)).collect();
    assert_eq!(NeuMfConfig::from_state_dict(&entries, 0.1).unwrap(), c);
    assert!(NeuMfConfig::from_state_dict(&entries[1..], 0.1).is_err());
}

#[test]
fn the_first_layer_per_distinct_id_equals_the_plain_layer_values_and_gradients() {
    // A batch large enough for the per-distinct-id first layer, with heavy repetition (30 users,
    // 40 items), against the plain computation on the same parameters: cat, Linear, ReLU, ...
    // Both sides per distinct id (30 users, 40 items), then users only (200,000 items are unlikely
    // to repeat in 4,096 pairs, so the item side takes the plain product).
    for items in [40, 200_000] {
        first_layer_case(NeuMfConfig { users: 30, items, mf_dim: 8, mlp_layers: vec![32, 16, 8], dropout: 0.0 });
    }
}

fn first_layer_case(c: NeuMfConfig) {
    tch::manual_seed(11);
    let model = NeuMf::new(c.clone(), Device::Cpu).unwrap();
    rounding::smooth_parameters(&model);
    let (users, items) = random_ids(&c, 4096);
    let weights = Tensor::randn([4096, 1], (Kind::Float, Device::Cpu));
    let p: std::collections::HashMap<String, Tensor> = model.state_dict().into_iter().collect();
    let plain = || {
        let emb = |name: &str, ids: &Tensor| p[name].index_select(0, ids);
        let mf = emb("mf_user_embed.weight", &users) * emb("mf_item_embed.weight", &items);
        let mut x = Tensor::cat(&[emb("mlp_user_embed.weight", &users), emb("mlp_item_embed.weight", &items)], 1);
        for i in 0..2 {
            x = x.linear(&p[&format!("mlp.{i}.weight")], Some(&p[&format!("mlp.{i}.bias")])).relu();
        }
        Tensor::cat(&[mf, x], 1).linear(&p["final.weight"], Some(&p["final.bias"]))
    };
    let ours = rounding::step(&model, &weights, || model.forward(&users, &items));
    let theirs = rounding::step(&model, &weights, plain);
    let (exact, abs) = (rounding::float64_twin(&model, false), rounding::float64_twin(&model, true));
    let exact = rounding::step(&exact, &weights.to_kind(Kind::Double), || exact.forward(&users, &items));
    let magnitude = rounding::step(&abs, &weights.to_kind(Kind::Double).abs(), || abs.forward(&users, &items));
    let widest = c.mlp_layers[0];
    for (what, got) in [("per distinct id", &ours), ("plain", &theirs)] {
        if let Err(e) = rounding::check(what, got, &exact, &magnitude, 4096, widest) {
            panic!("items {}: {e}", c.items);
        }
    }
}

#[test]
fn scoring_through_first_layer_tables_equals_the_forward_pass() {
    tch::manual_seed(12);
    let c = small();
    let mut model = NeuMf::new(c.clone(), Device::Cpu).unwrap();
    model.set_train(false);
    let tables = model.first_layer_tables();
    assert_eq!(tables.bytes(), ((c.users + c.items) * c.mlp_layers[1] * 4) as usize);
    for n in [1, 7, 3000, 10_000] {
        // 10,000 pairs go through in pieces of 2,048 (the last one shorter).
        let (users, items) = random_ids(&c, n);
        let plain = tch::no_grad(|| model.forward(&users, &items));
        let tabled = model.forward_with_tables(&users, &items, &tables);
        assert!(max_abs_diff(&plain, &tabled) < 1e-5, "batch {n}: {}", max_abs_diff(&plain, &tabled));
    }
}

#[test]
fn bfloat16_matrix_products_keep_float32_parameters_and_gradients() {
    // What `ncf-train --amp` does on a CPU: the MLP's products in bfloat16, everything else float32.
    tch::manual_seed(13);
    let c = NeuMfConfig { users: 30, items: 40, mf_dim: 8, mlp_layers: vec![32, 16, 8], dropout: 0.0 };
    let mut model = NeuMf::new(c.clone(), Device::Cpu).unwrap();
    let (users, items) = random_ids(&c, 2048);
    let full = model.forward(&users, &items);
    model.set_matmul_kind(Some(Kind::BFloat16));
    let mixed = model.forward(&users, &items);
    assert_eq!(mixed.kind(), Kind::Float);
    // bfloat16 keeps 8 significant bits: the logits agree to about 1% of their spread, not exactly.
    let spread = full.abs().max().double_value(&[]);
    let diff = max_abs_diff(&full, &mixed);
    assert!(diff > 0.0 && diff < 0.02 * spread, "bfloat16 products differ by {diff} (spread {spread})");
    mixed.sum(Kind::Float).backward();
    for (name, t) in model.state_dict() {
        assert_eq!((t.kind(), t.grad().kind()), (Kind::Float, Kind::Float), "{name}");
    }
    model.set_matmul_kind(None);
    assert_eq!(max_abs_diff(&full, &model.forward(&users, &items)), 0.0, "off again: float32 exactly");
}

#[test]
fn onednn_and_mkl_products_give_the_same_logits_gradients_and_all_item_scores() {
    // The CPU matmul choice changes the library and the summation order, not the math: a batch's
    // logits, every parameter's gradient (first layer per distinct id and plain) and the all-item
    // scores are each within float32's rounding bound of the same step in float64, whichever
    // kernels the CPU gets (tests/rounding). On a CPU without AVX-512, `onednn` is refused instead.
    use ncf_model::runtime::{CpuMatmul, CpuMatmulError};
    let c = NeuMfConfig { users: 30, items: 500, mf_dim: 8, mlp_layers: vec![64, 32, 16], dropout: 0.0 };
    tch::manual_seed(21);
    let mut model = NeuMf::new(c.clone(), Device::Cpu).unwrap();
    if CpuMatmul::Auto.resolve() != Ok(true) {
        let err = model.set_cpu_matmul(CpuMatmul::OneDnn).unwrap_err().to_string();
        assert!(err.contains(&CpuMatmulError::OneDnnUnavailable.to_string()), "{err}");
        assert!(!model.uses_onednn(), "a refused choice changes nothing");
        eprintln!("skipped the comparison: this CPU lacks AVX-512, so oneDNN is refused (checked)");
        return;
    }
    rounding::smooth_parameters(&model);
    let batch = 4096;
    let (users, items) = random_ids(&c, batch);
    let weights = Tensor::randn([batch, 1], (Kind::Float, Device::Cpu));
    let all_users = Tensor::arange(c.users, (Kind::Int64, Device::Cpu));
    let run = |model: &mut NeuMf, choice: CpuMatmul| {
        model.set_cpu_matmul(choice).unwrap();
        let step = rounding::step(model, &weights, || model.forward(&users, &items));
        (step, model.all_item_logits(&all_users, &model.item_half()))
    };
    let (mkl, all_mkl) = run(&mut model, CpuMatmul::Mkl);
    assert!(!model.uses_onednn());
    let (dnn, all_dnn) = run(&mut model, CpuMatmul::OneDnn);
    assert!(model.uses_onednn());

    let (exact_model, abs_model) = (rounding::float64_twin(&model, false), rounding::float64_twin(&model, true));
    let w64 = weights.to_kind(Kind::Double);
    let exact = rounding::step(&exact_model, &w64, || exact_model.forward(&users, &items));
    let magnitude = rounding::step(&abs_model, &w64.abs(), || abs_model.forward(&users, &items));
    let widest = c.mlp_layers[0];
    for (what, step) in [("mkl", &mkl), ("onednn", &dnn)] {
        rounding::check(what, step, &exact, &magnitude, batch, widest).unwrap_or_else(|e| panic!("{e}"));
    }
    let all_exact = exact_model.all_item_logits(&all_users, &exact_model.item_half());
    let all_magnitude = abs_model.all_item_logits(&all_users, &abs_model.item_half());
    let k = (widest + 2) as u64;
    for (what, all) in [("mkl", &all_mkl), ("onednn", &all_dnn)] {
        rounding::within(
            &format!("{what}: all-item logits"),
            all,
            &all_exact,
            &all_magnitude,
            rounding::FORWARD_STAGES,
            k,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // Not the same bits: the two really are different libraries (else this test proves nothing).
    assert!(
        max_abs_diff(&mkl.logits, &dnn.logits) > 0.0
            || mkl.grads.iter().zip(&dnn.grads).any(|((_, a), (_, b))| max_abs_diff(a, b) > 0.0)
    );

    // And the bound is tight enough to catch a product that is wrong by a single term: the second
    // layer's largest contribution to the logits (weight times final weight) left out.
    let state: std::collections::HashMap<String, Tensor> = model.state_dict().into_iter().collect();
    let w1 = state["mlp.1.weight"].detach();
    let final_mlp = state["final.weight"].detach().narrow(1, c.mf_dim, 16).view([16, 1]);
    let at = (&w1 * &final_mlp).abs().flatten(0, -1).argmax(0, false).int64_value(&[]);
    tch::no_grad(|| {
        let _ = state["mlp.1.weight"].view([-1]).get(at).fill_(0.0);
    });
    for choice in [CpuMatmul::Mkl, CpuMatmul::OneDnn] {
        model.set_cpu_matmul(choice).unwrap();
        let wrong = tch::no_grad(|| model.forward(&users, &items));
        let verdict = rounding::within(
            "one term left out",
            &wrong,
            &exact.logits,
            &magnitude.logits,
            rounding::FORWARD_STAGES,
            k,
        );
        assert!(verdict.is_err(), "{choice:?}: a product missing a term passed the bound: {verdict:?}");
    }
}
