//! `AmxMlp` (bfloat16 products on AMX tiles) against float64 oracles computed by libtorch from the
//! same bfloat16-rounded weights and first-layer rows:
//! - `logits`: within a first-order bound of what rounding each layer's activations to bfloat16
//!   can change (every rounding moves a value by at most 2^-8 of itself, relu is 1-Lipschitz, a
//!   layer multiplies an error by at most |W|), plus float32 summation; and within 2^-8 relative
//!   L2 of the float64 pass that rounds where the kernel rounds;
//! - `fold_in_step`: the step by hand in float64, rounded to bfloat16 where the kernel rounds
//!   (relative L2 error within 2^-8: only float32-vs-float64 sums differ, which can tip a value
//!   near a rounding boundary one unit the other way), the loss within 1e-4 relative; and, at
//!   fold-in's shape, within 20% of autograd's unrounded float64 gradient (the direction a step
//!   takes; 1-10% on these seeds: sums over rows with both labels cancel, the roundings do not);
//!
//! And its refusals. On a CPU without AMX only the refusal of `AmxMlp::new` is checked (the
//! kernels cannot run there; callers keep their other paths).

use tch::{Device, Kind, Tensor};
use torch_ops::{amx_available, AmxMlp, FoldInSide};

const F32: (Kind, Device) = (Kind::Float, Device::Cpu);
const U: f64 = 1.0 / 256.0; // bfloat16's unit roundoff, 2^-8

fn bf(t: &Tensor) -> Tensor {
    t.to_kind(Kind::BFloat16).to_kind(Kind::Double)
}

/// Deeper layers of the given widths (h1 first), scaled like Glorot's initialisation.
fn layers(widths: &[i64]) -> Vec<(Tensor, Option<Tensor>)> {
    widths
        .windows(2)
        .map(|w| {
            let weight = Tensor::randn([w[1], w[0]], F32) * (2.0 / (w[0] + w[1]) as f64).sqrt();
            (weight, Some(Tensor::randn([w[1]], F32) * 0.1))
        })
        .collect()
}

/// The float64 forward pass without rounding between layers, and the bound on what rounding each
/// layer's input to bfloat16 can change in each row's logit share.
fn oracle_logits(first: &Tensor, u: &Tensor, layers: &[(Tensor, Option<Tensor>)], w: &Tensor) -> (Tensor, Tensor) {
    let mut a = (first.to_kind(Kind::Double) + u.to_kind(Kind::Double)).relu();
    let mut err = a.abs() * U;
    let n_layers = layers.len();
    for (l, (weight, b)) in layers.iter().enumerate() {
        let wd = bf(weight);
        let bias = b.as_ref().unwrap().to_kind(Kind::Double);
        let v = a.matmul(&wd.tr()) + &bias;
        // float32 accumulation over k terms: at most k * 2^-24 of the sum of |terms|.
        let k = weight.size()[1] as f64;
        let sum_abs = a.abs().matmul(&wd.abs().tr()) + bias.abs();
        err = err.matmul(&wd.abs().tr()) + sum_abs * (k * 2f64.powi(-24));
        a = v.relu();
        if l + 1 < n_layers {
            err += a.abs() * U;
        }
    }
    let wd = w.to_kind(Kind::Double);
    let h = w.size()[0] as f64;
    let logits = a.matmul(&wd);
    let bound = err.matmul(&wd.abs()) + a.abs().matmul(&wd.abs()) * (h * 2f64.powi(-24)) + 1e-12;
    (logits, bound)
}

/// The forward pass in float64 rounding to bfloat16 where the kernel does (each product's input).
fn mimic_logits(first: &Tensor, u: &Tensor, layers: &[(Tensor, Option<Tensor>)], w: &Tensor) -> Tensor {
    let mut a = bf(&(first.to_kind(Kind::Double) + u.to_kind(Kind::Double)).relu());
    for (l, (weight, b)) in layers.iter().enumerate() {
        let v = (a.matmul(&bf(weight).tr()) + b.as_ref().unwrap().to_kind(Kind::Double)).relu();
        a = if l + 1 < layers.len() { bf(&v) } else { v };
    }
    a.matmul(&w.to_kind(Kind::Double))
}

#[test]
fn logits_stay_within_bfloat16_roundings_of_the_float64_pass() {
    if !amx_available() {
        eprintln!("skipped: this CPU has no AMX bfloat16 tiles");
        return;
    }
    tch::manual_seed(11);
    for widths in [vec![256i64, 128, 64], vec![64, 32], vec![96, 64, 32, 32]] {
        let ls = layers(&widths);
        let w = Tensor::randn([*widths.last().unwrap()], F32);
        let mlp = AmxMlp::new(&ls, &w).unwrap();
        assert_eq!(mlp.first_width(), widths[0]);
        for &threads in &[1, 2] {
            tch::set_num_threads(threads);
            for &n in &[0i64, 1, 17, 2000] {
                let first = (Tensor::randn([n, widths[0]], F32) * 0.5).to_kind(Kind::BFloat16);
                let u = Tensor::randn([widths[0]], F32) * 0.5;
                let got = mlp.logits(&first, &u).unwrap();
                assert_eq!(got.size(), [n]);
                let (want, bound) = oracle_logits(&first, &u, &ls, &w);
                if n == 0 {
                    continue;
                }
                // And close to the same arithmetic in float64 with the kernel's rounding points:
                // only float32-vs-float64 sums differ, which can tip a value one bfloat16 unit.
                let mimic = mimic_logits(&first, &u, &ls, &w);
                let error = ((got.to_kind(Kind::Double) - &mimic).square().sum(Kind::Double).sqrt()
                    / mimic.square().sum(Kind::Double).sqrt())
                .double_value(&[]);
                assert!(error <= U, "{widths:?}, {n} rows: relative L2 error {error} against the rounding oracle");
                let diff = (got.to_kind(Kind::Double) - &want).abs();
                let worst = (&diff - &bound).max().double_value(&[]);
                assert!(worst <= 0.0, "{widths:?}, {n} rows, {threads} threads: over the bound by {worst}");
                // Several users in one pass: each one's row bit for bit its own pass's.
                let parts = Tensor::stack(&[&u, &(&u * -0.5), &(&u + 0.25)], 0);
                let many = mlp.logits(&first, &parts).unwrap();
                assert_eq!(many.size(), [3, n]);
                for k in 0..3 {
                    let one = mlp.logits(&first, &parts.get(k)).unwrap();
                    assert!(many.get(k).equal(&one), "{widths:?}, {n} rows: user {k} of 3 differs from its own pass");
                }
                // The values are not trivial: the rows' logits differ.
                if n > 1 {
                    assert!(want.std(true).double_value(&[]) > 1e-3);
                }
            }
        }
    }
    tch::set_num_threads(1);
}

/// The step computed in float64 by hand from the first layer's user part u, rounding to bfloat16
/// where the kernel does (each layer's input activations, the gradient entering each product) and
/// with the kernel's relu masks (pre-activation > 0): the loss, the gradient with respect to u,
/// and sum_r g_r q_r (q the GMF item rows; `gmf` holds them and u_mf * final_mf).
#[allow(clippy::too_many_arguments)]
fn oracle_gradient(
    first: &Tensor,
    items: &Tensor,
    positives: i64,
    u: &Tensor,
    layers: &[(Tensor, Option<Tensor>)],
    w: &Tensor,
    gmf: Option<(&Tensor, &Tensor)>,
    final_bias: f64,
) -> (f64, Tensor, Tensor) {
    let n = items.size()[0];
    let v0 = first.to_kind(Kind::Double).index_select(0, items) + u.to_kind(Kind::Double);
    let mut masks = vec![v0.gt(0.0).to_kind(Kind::Double)];
    let mut a = bf(&v0.relu());
    for (l, (weight, b)) in layers.iter().enumerate() {
        let v = a.matmul(&bf(weight).tr()) + b.as_ref().unwrap().to_kind(Kind::Double);
        masks.push(v.gt(0.0).to_kind(Kind::Double));
        a = if l + 1 < layers.len() { bf(&v.relu()) } else { v.relu() };
    }
    let wd = w.to_kind(Kind::Double);
    let mut logits = a.matmul(&wd) + final_bias;
    if let Some((q, mfw)) = gmf {
        logits += q.to_kind(Kind::Double).index_select(0, items).matmul(&mfw.to_kind(Kind::Double));
    }
    let mut labels = vec![1f64; positives as usize];
    labels.resize(n as usize, 0.0);
    let labels = Tensor::from_slice(&labels);
    let loss = logits.binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, tch::Reduction::Sum);
    let g = (logits.sigmoid() - &labels).view([-1, 1]);
    let mut d = bf(&(&g * wd.view([1, -1]) * masks.last().unwrap()));
    for l in (1..=layers.len()).rev() {
        let back = d.matmul(&bf(&layers[l - 1].0)) * &masks[l - 1];
        d = if l > 1 { bf(&back) } else { back };
    }
    let sum_q = match gmf {
        Some((q, _)) => g.view([1, -1]).matmul(&q.to_kind(Kind::Double).index_select(0, items)).view([-1]),
        None => Tensor::zeros([0], (Kind::Double, Device::Cpu)),
    };
    (loss.double_value(&[]), d.sum_dim_intlist(0, false, None), sum_q)
}

/// Autograd's float64 gradient with respect to the MLP user row, nothing rounded (the direction fold-in wants).
#[allow(clippy::too_many_arguments)]
fn exact_gradient(
    first: &Tensor,
    items: &Tensor,
    positives: i64,
    user_weight: &Tensor,
    mlp_user: &[f32],
    layers: &[(Tensor, Option<Tensor>)],
    w: &Tensor,
    gmf: Option<(&Tensor, &Tensor)>,
) -> Vec<f64> {
    let n = items.size()[0];
    let ud = Tensor::from_slice(mlp_user).to_kind(Kind::Double).set_requires_grad(true);
    let part = user_weight.to_kind(Kind::Double).matmul(&ud);
    let mut a = (first.to_kind(Kind::Double).index_select(0, items) + part).relu();
    for (weight, b) in layers {
        a = (a.matmul(&weight.to_kind(Kind::Double).tr()) + b.as_ref().unwrap().to_kind(Kind::Double)).relu();
    }
    let mut logits = a.matmul(&w.to_kind(Kind::Double)) + 0.3;
    if let Some((q, mfw)) = gmf {
        logits += q.to_kind(Kind::Double).index_select(0, items).matmul(&mfw.to_kind(Kind::Double));
    }
    let mut labels = vec![1f64; positives as usize];
    labels.resize(n as usize, 0.0);
    let loss = logits.binary_cross_entropy_with_logits::<Tensor>(
        &Tensor::from_slice(&labels),
        None,
        None,
        tch::Reduction::Sum,
    );
    Vec::<f64>::try_from(Tensor::run_backward(&[&loss], &[&ud], false, false).pop().unwrap()).unwrap()
}

fn relative_l2(got: &[f32], want: &[f64]) -> f64 {
    let (mut diff, mut norm) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        diff += (*g as f64 - w).powi(2);
        norm += w.powi(2);
    }
    assert!(norm > 0.0, "a zero gradient tests nothing");
    diff.sqrt() / norm.sqrt()
}

#[test]
fn fold_in_step_matches_float64_by_hand_and_autograd() {
    if !amx_available() {
        eprintln!("skipped: this CPU has no AMX bfloat16 tiles");
        return;
    }
    tch::manual_seed(12);
    let items_count = 500;
    for (widths, d, f) in [(vec![256i64, 128, 64], 128i64, 64i64), (vec![64, 32], 32, 0), (vec![96, 64, 32, 32], 48, 8)]
    {
        let ls = layers(&widths);
        let w = Tensor::randn([*widths.last().unwrap()], F32);
        let mlp = AmxMlp::new(&ls, &w).unwrap();
        let first = Tensor::randn([items_count, widths[0]], F32) * 0.5;
        let user_weight = Tensor::randn([widths[0], d], F32) * (1.0 / d as f64).sqrt();
        let q = Tensor::randn([items_count, f], F32) * 0.3;
        let final_gmf = Tensor::randn([f], F32) * 0.3;
        let side = FoldInSide {
            first: &first,
            user_weight: &user_weight,
            gmf: (f > 0).then_some((&q, &final_gmf)),
            final_bias: 0.3,
        };
        for &(n, positives) in &[(250i64, 50i64), (16, 16), (1, 0), (33, 7), (0, 0)] {
            let items: Vec<i64> = Vec::try_from(Tensor::randint(items_count, [n], (Kind::Int64, Device::Cpu))).unwrap();
            let mlp_user: Vec<f32> = Vec::try_from(Tensor::randn([d], F32) * 0.5).unwrap();
            let gmf_user: Vec<f32> = Vec::try_from(Tensor::randn([f], F32) * 0.5).unwrap();
            let (mut grad_mlp, mut grad_gmf) = (vec![f32::NAN; d as usize], vec![f32::NAN; f as usize]);
            let loss = mlp
                .fold_in_step(&side, &items, positives as usize, (&mlp_user, &gmf_user), (&mut grad_mlp, &mut grad_gmf))
                .unwrap();
            let ids = Tensor::from_slice(&items);
            // The first layer's user part in float32, as the kernel has it: the first layer's
            // bfloat16 rounding is sensitive to its last bits (~1% of this gradient when computed
            // in float64 instead).
            let part = user_weight.matmul(&Tensor::from_slice(&mlp_user)).to_kind(Kind::Double);
            let mfw = Tensor::from_slice(&gmf_user) * &final_gmf;
            let gmf = (f > 0).then_some((&q, &mfw));
            if n == 0 {
                assert_eq!(loss, 0.0);
                assert!(grad_mlp.iter().chain(&grad_gmf).all(|&g| g == 0.0), "no pairs, no gradient");
                continue;
            }
            let (want_loss, grad_part, sum_q) = oracle_gradient(&first, &ids, positives, &part, &ls, &w, gmf, 0.3);
            assert!((loss - want_loss).abs() <= 1e-4 * want_loss.abs(), "{widths:?} n {n}: loss {loss} vs {want_loss}");
            // Back through the user columns and the final GMF weights, in float64.
            let want_mlp: Vec<f64> = Vec::try_from(user_weight.to_kind(Kind::Double).tr().matmul(&grad_part)).unwrap();
            // Float32 sums where the oracle has float64 ones: a value near a bfloat16 rounding
            // boundary can round the other way (one unit in its last place, 2^-8 of it).
            let error = relative_l2(&grad_mlp, &want_mlp);
            assert!(error <= U, "{widths:?} n {n}: relative L2 error {error} against the rounding oracle");
            if f > 0 {
                let want_gmf: Vec<f64> = Vec::try_from(sum_q * final_gmf.to_kind(Kind::Double)).unwrap();
                // Through each pair's logit, which the same roundings move.
                let error = relative_l2(&grad_gmf, &want_gmf);
                assert!(error <= U, "{widths:?} n {n}: GMF gradient relative L2 error {error}");
            }
            // And at fold-in's shape (50 items, 4 negatives each) the gradient points where the
            // unrounded one does (a single pair's can nearly cancel, leaving the roundings a large
            // share of a small vector).
            if n == 250 {
                let exact = exact_gradient(&first, &ids, positives, &user_weight, &mlp_user, &ls, &w, gmf);
                let error = relative_l2(&grad_mlp, &exact);
                assert!(error <= 0.2, "{widths:?} n {n}: relative L2 error {error} against unrounded float64");
            }
        }
    }
}

#[test]
fn refuses_what_it_cannot_run_with_the_reason() {
    let ls = layers(&[256, 128, 64]);
    let w = Tensor::randn([64], F32);
    if !amx_available() {
        let e = AmxMlp::new(&ls, &w).unwrap_err();
        assert!(e.0.contains("no AMX"), "{e}");
        return;
    }
    // Widths that are not multiples of 32, layers that do not chain, no layer, a wrong final width.
    let e = AmxMlp::new(&layers(&[64, 16]), &Tensor::randn([16], F32)).unwrap_err();
    assert!(e.0.contains("multiples of 32"), "{e}");
    let mut broken = layers(&[64, 32]);
    broken.extend(layers(&[64, 32]));
    assert!(AmxMlp::new(&broken, &Tensor::randn([32], F32)).unwrap_err().0.contains("chain"));
    assert!(AmxMlp::new(&[], &w).unwrap_err().0.contains("at least one layer"));
    assert!(AmxMlp::new(&ls, &Tensor::randn([32], F32)).unwrap_err().0.contains("final MLP weights"));
    let mlp = AmxMlp::new(&ls, &w).unwrap();
    let first = Tensor::randn([10, 256], F32);
    let user_weight = Tensor::randn([256, 128], F32);
    let side = FoldInSide { first: &first, user_weight: &user_weight, gmf: None, final_bias: 0.0 };
    let u = vec![0f32; 128];
    let mut g = vec![0f32; 128];
    // An item out of range, more positives than pairs, a row of the wrong width, a GMF row
    // without the GMF tables, a float32 matrix where bfloat16 rows are scored.
    let e = mlp.fold_in_step(&side, &[3, 10], 1, (&u, &[]), (&mut g, &mut [])).unwrap_err();
    assert!(e.0.contains("item 10 is out of range for 10 items"), "{e}");
    let e = mlp.fold_in_step(&side, &[3, 4], 3, (&u, &[]), (&mut g, &mut [])).unwrap_err();
    assert!(e.0.contains("3 positives of 2"), "{e}");
    let (short, mut short_g) = (vec![0f32; 64], vec![0f32; 64]);
    let e = mlp.fold_in_step(&side, &[3, 4], 1, (&short, &[]), (&mut short_g, &mut [])).unwrap_err();
    assert!(e.0.contains("user columns must be contiguous float32 [256, 64]"), "{e}");
    let e = mlp.fold_in_step(&side, &[3, 4], 1, (&u, &[1.0]), (&mut g, &mut [0.0])).unwrap_err();
    assert!(e.0.contains("GMF user row"), "{e}");
    let e = mlp.fold_in_step(&side, &[3, 4], 1, (&u, &[]), (&mut g[..5], &mut [])).unwrap_err();
    assert!(e.0.contains("as long as its row"), "{e}");
    assert!(mlp.logits(&first, &Tensor::zeros([256], F32)).unwrap_err().0.contains("bfloat16"));
}
