//! `Model::rows_loss_gradient` on the bfloat16 item side (AMX tiles) against autograd through the
//! float32 side's `logits_of_rows`, for NeuMF (a GMF row then an MLP row) and MLP alone: the
//! model-level wiring (which first-layer columns are the user's, the final bias, the GMF branch's
//! weights, the rows' order) checked end to end. The loss within 1% and each row's gradient
//! within 20% relative L2 (measured on an AMX Xeon, 2026-12-05: 0.03% and 0.1% for NeuMF's GMF
//! and MLP rows, 4% for MLP's; bfloat16 roundings of every layer's activations and of the gradient
//! entering each product; `crates/torch-ops/tests/amx.rs` checks the kernel itself to 2^-8 against
//! the same arithmetic in float64). And `None` where there is no such path: the float32 side, MF,
//! GMF. On a CPU without AMX only the `None`s are checked.

use ncf_model::{AnyModel, Gmf, GmfConfig, ItemSide, Mf, MfConfig, Mlp, MlpConfig, Model, NeuMf, NeuMfConfig};
use tch::{Device, Kind, Reduction, Tensor};

const USERS: i64 = 50;
const ITEMS: i64 = 300;

/// The summed binary cross-entropy and its gradient with respect to each row, by autograd.
fn autograd(
    model: &dyn Model,
    rows: &[Vec<f32>],
    items: &[i64],
    positives: usize,
    side: &ItemSide,
) -> (f64, Vec<Vec<f32>>) {
    let n = items.len() as i64;
    let rows: Vec<Tensor> = rows.iter().map(|r| Tensor::from_slice(r).view([1, -1]).set_requires_grad(true)).collect();
    let expanded: Vec<Tensor> = rows.iter().map(|r| r.expand([n, r.size()[1]], false)).collect();
    let logits = model.logits_of_rows(&expanded, &Tensor::from_slice(items), side).unwrap();
    let mut labels = vec![1f32; positives];
    labels.resize(items.len(), 0.0);
    let loss = logits.binary_cross_entropy_with_logits::<Tensor>(
        &Tensor::from_slice(&labels).view([-1, 1]),
        None,
        None,
        Reduction::Sum,
    );
    let grads = Tensor::run_backward(&[&loss], &rows, false, false);
    (loss.double_value(&[]), grads.iter().map(|g| Vec::<f32>::try_from(g.view([-1])).unwrap()).collect())
}

fn relative_l2(got: &[f32], want: &[f32]) -> f64 {
    let diff: f64 = got.iter().zip(want).map(|(g, w)| (*g as f64 - *w as f64).powi(2)).sum();
    let norm: f64 = want.iter().map(|w| (*w as f64).powi(2)).sum();
    assert!(norm > 0.0, "a zero gradient tests nothing");
    (diff / norm).sqrt()
}

fn random_row(width: i64) -> Vec<f32> {
    Vec::try_from(Tensor::randn([width], (Kind::Float, Device::Cpu)) * 0.5).unwrap()
}

#[test]
fn the_bf16_step_agrees_with_autograd_for_neumf_and_mlp() {
    tch::manual_seed(21);
    let mut models: Vec<(AnyModel, Vec<i64>)> = vec![
        (
            Box::new(
                NeuMf::new(
                    NeuMfConfig { users: USERS, items: ITEMS, mf_dim: 16, mlp_layers: vec![64, 64, 32], dropout: 0.0 },
                    Device::Cpu,
                )
                .unwrap(),
            ),
            vec![16, 32],
        ),
        (
            Box::new(
                Mlp::new(
                    MlpConfig { users: USERS, items: ITEMS, layers: vec![96, 64, 32, 32], dropout: 0.0 },
                    Device::Cpu,
                )
                .unwrap(),
            ),
            vec![48],
        ),
    ];
    for (model, widths) in &mut models {
        model.set_train(false);
        let float32 = model.item_side();
        let rows: Vec<Vec<f32>> = widths.iter().map(|&w| random_row(w)).collect();
        let items: Vec<i64> = Vec::try_from(Tensor::randint(ITEMS, [250], (Kind::Int64, Device::Cpu))).unwrap();
        // The float32 side has no such path: autograd serves it.
        assert!(model.rows_loss_gradient(&rows, &items, 50, &float32).is_none(), "{}", model.name());
        let Ok(bf16) = model.bf16_item_side() else {
            eprintln!("skipped {}: no bfloat16 side on this CPU", model.name());
            continue;
        };
        let Some(result) = model.rows_loss_gradient(&rows, &items, 50, &bf16) else {
            assert!(!torch_ops::amx_available(), "{}: AMX is here, the bf16 side must offer the step", model.name());
            eprintln!("skipped {}: no AMX on this CPU", model.name());
            continue;
        };
        let got = result.unwrap();
        let (loss, want) = autograd(model.as_ref(), &rows, &items, 50, &float32);
        assert!((got.loss - loss).abs() <= 1e-2 * loss.abs(), "{}: loss {} against {loss}", model.name(), got.loss);
        assert_eq!(got.rows.len(), want.len(), "{}: one gradient per row", model.name());
        for (k, (g, w)) in got.rows.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), w.len());
            let error = relative_l2(g, w);
            eprintln!("{} row {k}: relative L2 error {error:.4}; loss {} against {loss}", model.name(), got.loss);
            assert!(error <= 0.2, "{} row {k}: relative L2 error {error}", model.name());
        }
        // Rows of the wrong count: no path (the caller's autograd then says what is wrong).
        assert!(model.rows_loss_gradient(&rows[..rows.len() - 1], &items, 50, &bf16).is_none());
    }
}

#[test]
fn mf_and_gmf_offer_no_step() {
    let mf = Mf::new(MfConfig { users: USERS, items: ITEMS, factors: 8 }, Device::Cpu).unwrap();
    let rows = vec![random_row(8), random_row(1)];
    assert!(mf.rows_loss_gradient(&rows, &[1, 2], 1, &mf.item_side()).is_none());
    let gmf = Gmf::new(GmfConfig { users: USERS, items: ITEMS, factors: 8 }, Device::Cpu).unwrap();
    assert!(gmf.rows_loss_gradient(&[random_row(8)], &[1, 2], 1, &gmf.item_side()).is_none());
}
