//! The optimizer pieces on real NeuMF gradients: the fused Adam step equals the one-parameter-at-a-
//! time step, and AMP's scaler skips an overflowing step and halves its scale.

use ncf_model::{NeuMf, NeuMfConfig};
use ncf_train::{Adam, GradScaler};
use tch::{Device, Kind, Tensor};

// Tests run in parallel threads sharing libtorch's global generator, so nothing here draws from it
// after construction: twins are copies, and the batch is arithmetic.
fn model() -> (NeuMf, Vec<Tensor>) {
    let m =
        NeuMf::new(NeuMfConfig { users: 30, items: 40, mf_dim: 8, mlp_layers: vec![16, 8], dropout: 0.0 }, Device::Cpu)
            .unwrap();
    let params = m.state_dict().into_iter().map(|(_, t)| t).collect();
    (m, params)
}

fn twin(of: &NeuMf) -> (NeuMf, Vec<Tensor>) {
    let (mut m, _) = model();
    m.load_state_dict(of.state_dict().into_iter().map(|(k, v)| (k, v.copy())).collect()).unwrap();
    let params = m.state_dict().into_iter().map(|(_, t)| t).collect();
    (m, params)
}

fn loss(m: &NeuMf, scale: f64) -> Tensor {
    let users = Tensor::arange(256, (Kind::Int64, Device::Cpu)).remainder(30);
    let items = (Tensor::arange(256, (Kind::Int64, Device::Cpu)) * 7).remainder(40);
    let labels = Tensor::arange(256, (Kind::Int64, Device::Cpu)).remainder(3).eq(0).to_kind(Kind::Float).view([-1, 1]);
    m.forward(&users, &items).binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, tch::Reduction::Mean)
        * scale
}

#[test]
fn fused_and_unfused_steps_agree_over_20_steps_on_the_same_gradients() {
    let (a, pa) = model();
    let (b, pb) = twin(&a);
    let mut fa = Adam::new(&pa, 0.0045, 0.25, 0.5, 1e-8);
    let mut fb = Adam::new(&pb, 0.0045, 0.25, 0.5, 1e-8);
    // Per element, over the steps: the sum of |p| and of |p's move| in the fused run (float64).
    let as64 = |t: &Tensor| t.detach().to_kind(Kind::Double);
    let mut sum_p: Vec<Tensor> = pa.iter().map(|p| as64(p).zeros_like()).collect();
    let mut sum_move = sum_p.iter().map(|t| t.zeros_like()).collect::<Vec<_>>();
    for _ in 0..20 {
        // The same gradients for both (a's), so only the update arithmetic can differ.
        loss(&a, 1.0).backward();
        loss(&b, 1.0).backward();
        tch::no_grad(|| {
            for (x, y) in pa.iter().zip(&pb) {
                y.grad().copy_(&x.grad());
            }
        });
        let before: Vec<Tensor> = pa.iter().map(as64).collect();
        fa.step(&pa, None);
        fb.step_unfused(&pb);
        for (k, p) in pa.iter().enumerate() {
            sum_move[k] += (as64(p) - &before[k]).abs();
            sum_p[k] += as64(p).abs();
        }
        for p in pa.iter().chain(&pb) {
            p.shallow_clone().zero_grad();
        }
    }
    assert_eq!((fa.steps(), fb.steps()), (20, 20));
    // The two kernels round differently (fused multiply-adds, operation order), on the same
    // gradients, so neither run's rounding feeds the other's gradients and the errors only add up.
    // Per step each kernel's update `lr/(1-b1^t) * m/(sqrt(v)/sqrt(1-b2^t) + eps)` is off by at
    // most 12 roundings of it: m's running error stays below 2u|m|/(1-b1) < 3u|m| and v's below
    // 2u|v|/(1-b2) = 4u|v| (2u under the square root), and 7 more operations; the new weight adds
    // one rounding of |p|. So |fused - unfused| <= 2 sum_t (12u |move_t| + u |p_t|), whatever the
    // CPU's kernels; an arithmetic mistake shows far above it (beta1 0.251 instead of 0.25 puts
    // the runs 6.4e-4 apart, relative).
    let u = test_support::F32_UNIT_ROUNDOFF;
    for (k, (x, y)) in pa.iter().zip(&pb).enumerate() {
        let bound = (&sum_move[k] * (24.0 * u) + &sum_p[k] * (2.0 * u)) + f64::from(f32::MIN_POSITIVE);
        let ratio = ((as64(x) - as64(y)).abs() / bound).max().double_value(&[]);
        assert!(ratio <= 1.0, "parameter {k}: fused and unfused Adam {ratio} times float32's rounding bound apart");
    }
}

#[test]
fn an_overflowing_step_is_skipped_and_the_scale_halves() {
    let (m, params) = model();
    let before: Vec<Tensor> = params.iter().map(|p| p.copy()).collect();
    let mut adam = Adam::new(&params, 0.01, 0.9, 0.999, 1e-8);
    let mut scaler = GradScaler::with_scale(3e38, Device::Cpu);
    scaler.scale_loss(&loss(&m, 1e6)).backward(); // a wild batch: float32 overflows to inf gradients
    scaler.check(&params);
    assert!(scaler.overflowed());
    adam.step(&params, Some(&scaler));
    scaler.update();
    for (p, b) in params.iter().zip(&before) {
        assert!(p.equal(b), "a skipped step changes nothing");
    }
    assert_eq!(adam.steps(), 0, "a skipped step does not count");
    assert_eq!(scaler.scale(), (3e38f32 * 0.5) as f64);

    // A clean step at a sane scale updates, unscaled, and keeps the scale (growth after 2000).
    for p in &params {
        p.shallow_clone().zero_grad();
    }
    let mut scaler = GradScaler::new(Device::Cpu);
    scaler.scale_loss(&loss(&m, 1.0)).backward();
    scaler.check(&params);
    assert!(!scaler.overflowed());
    let (twin, twin_params) = twin(&m);
    let mut plain = Adam::new(&twin_params, 0.01, 0.9, 0.999, 1e-8);
    loss(&twin, 1.0).backward();
    plain.step(&twin_params, None);
    adam.step(&params, Some(&scaler));
    scaler.update();
    assert_eq!(scaler.scale(), GradScaler::INIT_SCALE);
    assert_eq!(adam.steps(), 1);
    for (p, q) in params.iter().zip(&twin_params) {
        let diff = (p - q).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "scaled-and-unscaled step equals the plain step: {diff}");
    }
}
