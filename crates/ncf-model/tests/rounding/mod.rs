//! Float32 results of a NeuMF step against what float32 rounding permits, on any CPU.
//!
//! Two ways of computing the same step (MKL or oneDNN products, per-distinct-id or plain first
//! layer) add in other orders, and each library picks its kernels by CPU, so their results differ
//! by rounding that no one CPU's measurement bounds. What does bound it: each value is compared
//! with the step in float64 (`exact`), within `stages * gamma_k * magnitude`, where `magnitude` is
//! the step run in float64 on the absolute values of every parameter and loss weight
//! ([`test_support::within_f32_rounding`]).
//!
//! That bound needs the step to be smooth where it is evaluated: a ReLU whose input is within
//! rounding of zero may open in one computation and stay shut in the other, a difference no
//! rounding bound covers. [`smooth_parameters`] sets the weights so that every MLP pre-activation
//! lies in [0.5, 1.5], far from the kink, while each product still moves it by up to ±0.5.

use ncf_model::NeuMf;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// A tensor's values, flattened, in float64.
pub fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// [`test_support::within_f32_rounding`] on tensors.
pub fn within(
    what: &str,
    got: &Tensor,
    exact: &Tensor,
    magnitude: &Tensor,
    stages: u32,
    k: u64,
) -> Result<f64, String> {
    assert_eq!(got.size(), exact.size(), "{what}: shapes");
    test_support::within_f32_rounding(what, &values(got), &values(exact), &values(magnitude), stages, k)
}

/// Sets `model`'s parameters (any kind) so that every MLP pre-activation of every (user, item) lies
/// in [0.5, 1.5]: embeddings uniform in ±0.5; layer `l` of fan-in `K` whose inputs are at most `M`
/// in size gets weights uniform in ±0.5/(K·M) (so `|W x| <= 0.5`) and a bias of 1; the final layer
/// weights uniform in ±0.35 and a bias of 0.1. Draws from libtorch's generator (seed it first).
pub fn smooth_parameters(model: &NeuMf) {
    let mut bound_in = 0.5; // the largest input of the next layer
    tch::no_grad(|| {
        for (name, mut t) in model.state_dict() {
            let uniform = |limit: f64| (Tensor::rand(t.size(), (Kind::Double, Device::Cpu)) * 2.0 - 1.0) * limit;
            let value = if name.ends_with("_embed.weight") {
                uniform(0.5)
            } else if name.starts_with("mlp.") && name.ends_with(".weight") {
                let fan_in = t.size()[1] as f64;
                uniform(0.5 / (fan_in * bound_in))
            } else if name.starts_with("mlp.") && name.ends_with(".bias") {
                bound_in = 1.5;
                Tensor::ones(t.size(), (Kind::Double, Device::Cpu))
            } else if name == "final.weight" {
                uniform(0.35)
            } else {
                Tensor::full(t.size(), 0.1, (Kind::Double, Device::Cpu))
            };
            t.copy_(&value.to_kind(t.kind()));
        }
    });
}

/// Logits and every parameter's gradient of `sum(logits * weights)`, by state-dict name.
pub struct Step {
    pub logits: Tensor,
    pub grads: Vec<(String, Tensor)>,
}

/// One step of `logits_of` on `model`'s parameters (zeroing their gradients first).
pub fn step(model: &NeuMf, weights: &Tensor, logits_of: impl FnOnce() -> Tensor) -> Step {
    for (_, t) in model.state_dict() {
        let mut g = t.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    let logits = logits_of();
    (&logits * weights.to_kind(logits.kind())).sum(logits.kind()).backward();
    let grads = model.state_dict().into_iter().map(|(n, t)| (n, t.grad().copy())).collect();
    Step { logits: logits.detach(), grads }
}

/// `model`'s parameters in float64, as they are (`abs: false`) or as absolute values, in a new
/// model that runs its products in libtorch's own float64 kernels.
pub fn float64_twin(model: &NeuMf, abs: bool) -> NeuMf {
    let mut twin = NeuMf::new(model.config().clone(), Device::Cpu).unwrap();
    twin.set_cpu_matmul(ncf_model::runtime::CpuMatmul::Mkl).unwrap();
    twin.set_kind(Kind::Double);
    let values = model
        .state_dict()
        .into_iter()
        .map(|(n, t)| {
            let t = t.detach().to_kind(Kind::Double);
            (n, if abs { t.abs() } else { t })
        })
        .collect();
    twin.load_state_dict(values).unwrap();
    twin
}

/// The bound's stages. A rounded sum of products whose factors carry `s_a` and `s_b` stages of
/// error carries `1 + s_a + s_b` (each factor's error times the other's magnitude, plus its own
/// rounding). Counted so: the first layer's pre-activation 1, the second's 2, the GMF product 1,
/// a logit 3; backward, the loss weight times the final weight 1, back through the second layer
/// 2, summed per distinct id 3, times the embeddings (the first layer's weight gradient) or the
/// first layer's weight (the embeddings' gradient) 4. One more of each covers the second-order
/// terms and the float64 oracle's own rounding, and one more of the gradients' a fused kernel that
/// splits a sum once more (the bias added in the first layer's gather).
pub const FORWARD_STAGES: u32 = 4;
pub const BACKWARD_STAGES: u32 = 6;

/// Checks a float32 step against its float64 twin within float32's rounding bound. `batch` is the
/// longest sum a gradient takes (over the batch's rows), `widest` the widest layer's fan-in.
pub fn check(what: &str, got: &Step, exact: &Step, magnitude: &Step, batch: i64, widest: i64) -> Result<(), String> {
    // A layer's sum: its fan-in, the bias, and the first layer's two halves added.
    let k_forward = (widest + 2) as u64;
    let mut worst =
        within(&format!("{what}: logits"), &got.logits, &exact.logits, &magnitude.logits, FORWARD_STAGES, k_forward)?;
    let exact_grads: HashMap<_, _> = exact.grads.iter().map(|(n, t)| (n.clone(), t)).collect();
    let magnitudes: HashMap<_, _> = magnitude.grads.iter().map(|(n, t)| (n.clone(), t)).collect();
    for (name, g) in &got.grads {
        worst = worst.max(within(
            &format!("{what}: gradient of {name}"),
            g,
            exact_grads[name],
            magnitudes[name],
            BACKWARD_STAGES,
            k_forward + batch as u64,
        )?);
    }
    // Printed for whoever wants to see how much room the bound leaves on their CPU.
    eprintln!("{what}: at most {worst:.2e} of float32's rounding bound");
    Ok(())
}
