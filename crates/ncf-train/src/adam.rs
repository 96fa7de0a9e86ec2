//! Adam as the reference runs it (apex FusedAdam, `adam_w_mode=False`, no weight decay): one fused
//! update over all parameters per step (PyTorch's `_fused_adam_` through `torch-ops`: a single
//! multi-tensor kernel on CUDA, a fused loop on CPU), with the state in our hands so a run can be
//! saved and resumed, and AMP's dynamic loss scaling ([`GradScaler`]).

use tch::{Device, Kind, Tensor};
use torch_ops::{fused_adam, AdamHyper};

/// Adam over a fixed list of parameters.
#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Steps taken, a float32 scalar on the parameters' device (the fused kernel reads it there;
    /// a step skipped by AMP is taken back without a host synchronisation).
    step: Tensor,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    /// Zeroed moments shaped like `params`.
    pub fn new(params: &[Tensor], lr: f64, beta1: f64, beta2: f64, eps: f64) -> Self {
        let zeros = || params.iter().map(|p| p.zeros_like()).collect();
        let device = params.first().map_or(Device::Cpu, |p| p.device());
        let step = Tensor::zeros([], (Kind::Float, device));
        Adam { lr, beta1, beta2, eps, step, exp_avg: zeros(), exp_avg_sq: zeros() }
    }

    fn hyper(&self) -> AdamHyper {
        AdamHyper { lr: self.lr, beta1: self.beta1, beta2: self.beta2, eps: self.eps }
    }

    /// One update of every parameter from its gradient:
    /// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
    /// `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
    /// With a scaler, gradients are unscaled in the kernel and an overflowing step is skipped.
    pub fn step(&mut self, params: &[Tensor], scaler: Option<&GradScaler>) {
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).collect();
        if grads.iter().any(|g| !g.defined()) {
            // A parameter without a gradient (not used by any batch of the group): textbook
            // Adam on the others, as PyTorch skips such parameters.
            assert!(scaler.is_none(), "AMP needs every parameter to have a gradient");
            return self.step_unfused(params);
        }
        tch::no_grad(|| {
            let _ = self.step.g_add_scalar_(1.0);
            let amp = scaler.map(|s| (&s.scale, &s.found_inf));
            if let Err(e) = fused_adam(params, &grads, &self.exp_avg, &self.exp_avg_sq, &self.step, self.hyper(), amp) {
                // Shapes, devices and kinds are checked when the optimizer is built; this is a bug.
                panic!("fused Adam failed: {e}");
            }
            if let Some(s) = scaler {
                // PyTorch's own rule: a skipped step does not count.
                let _ = self.step.g_sub_(&s.found_inf);
            }
        });
    }

    /// Drops the gradients of `params` (PyTorch's `optimizer.zero_grad()`, which sets them to
    /// None, as the reference's `p.grad = None` does): the next backward pass writes new gradients
    /// instead of filling zeros and adding into them.
    pub fn zero_grad(&self, params: &[Tensor]) {
        if let Err(e) = torch_ops::clear_grads(params) {
            // Parameters are defined leaf tensors; this is a bug.
            panic!("clearing gradients failed: {e}");
        }
    }

    /// The same update, one parameter at a time with ordinary tensor operations (the reference
    /// for the fused path, and the path for parameters without gradients).
    pub fn step_unfused(&mut self, params: &[Tensor]) {
        tch::no_grad(|| {
            let _ = self.step.g_add_scalar_(1.0);
        });
        let t = self.steps() as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        tch::no_grad(|| {
            for ((p, m), v) in params.iter().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.lerp_(&g, 1.0 - self.beta1);
                let _ = v.g_mul_scalar_(self.beta2).addcmul_(&(&g * (1.0 - self.beta2)), &g);
                let denom = (v.sqrt() / bias2_sqrt).g_add_scalar_(self.eps);
                let mut p = p.shallow_clone();
                let _ = p.addcdiv_(&(&*m * (-self.lr / bias1)), &denom);
            }
        });
    }

    /// Steps taken so far (reads the device counter).
    pub fn steps(&self) -> i64 {
        self.step.double_value(&[]) as i64
    }

    /// The state as named tensors (`exp_avg.<i>`, `exp_avg_sq.<i>`, `step`), for a training checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (m, v)) in self.exp_avg.iter().zip(&self.exp_avg_sq).enumerate() {
            out.push((format!("exp_avg.{i}"), m.shallow_clone()));
            out.push((format!("exp_avg_sq.{i}"), v.shallow_clone()));
        }
        out.push(("step".into(), Tensor::from(self.steps())));
        out
    }

    /// Restores [`Adam::state`]; `None` when a tensor is missing or mis-shaped.
    pub fn restore(&mut self, get: impl Fn(&str) -> Option<Tensor>) -> Option<()> {
        for (i, (m, v)) in self.exp_avg.iter_mut().zip(&mut self.exp_avg_sq).enumerate() {
            for (mine, key) in [(m, format!("exp_avg.{i}")), (v, format!("exp_avg_sq.{i}"))] {
                let saved = get(&key)?;
                if saved.size() != mine.size() {
                    return None;
                }
                tch::no_grad(|| mine.copy_(&saved));
            }
        }
        let steps = get("step")?.int64_value(&[]);
        tch::no_grad(|| {
            let _ = self.step.fill_(steps as f64);
        });
        Some(())
    }
}

/// Dynamic loss scaling with PyTorch GradScaler's rules: the loss is multiplied by `scale`
/// (initially 65536) before backward; a step whose gradients hold an inf or NaN is skipped and the
/// scale halves; after 2000 clean steps in a row it doubles. Gradients are unscaled inside the
/// fused Adam kernel. All on the device, without host synchronisation.
#[derive(Debug)]
pub struct GradScaler {
    scale: Tensor,
    growth_tracker: Tensor,
    found_inf: Tensor,
}

impl GradScaler {
    pub const INIT_SCALE: f64 = 65536.0;
    pub const GROWTH_INTERVAL: i64 = 2000;

    pub fn new(device: Device) -> Self {
        Self::with_scale(Self::INIT_SCALE, device)
    }

    pub fn with_scale(scale: f64, device: Device) -> Self {
        GradScaler {
            scale: Tensor::full([], scale, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([], (Kind::Int, device)),
            found_inf: Tensor::zeros([], (Kind::Float, device)),
        }
    }

    /// `loss * scale`, to call `backward` on.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * &self.scale
    }

    /// Checks the gradients for inf/NaN (before [`Adam::step`]); they stay scaled.
    pub fn check(&mut self, params: &[Tensor]) {
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
        tch::no_grad(|| {
            let _ = self.found_inf.zero_();
            let one = Tensor::ones([], (Kind::Float, self.scale.device()));
            if let Err(e) = torch_ops::amp_check_and_unscale(&grads, &self.found_inf, &one) {
                panic!("AMP gradient check failed: {e}");
            }
        });
    }

    /// After the step: halve on overflow, double after GROWTH_INTERVAL clean steps.
    pub fn update(&mut self) {
        tch::no_grad(|| {
            let _ = self.scale.internal_amp_update_scale_(
                &self.growth_tracker,
                &self.found_inf,
                2.0,
                0.5,
                Self::GROWTH_INTERVAL,
            );
        });
    }

    /// The current scale (reads the device).
    pub fn scale(&self) -> f64 {
        self.scale.double_value(&[])
    }

    /// Whether the last checked step overflowed (reads the device).
    pub fn overflowed(&self) -> bool {
        self.found_inf.double_value(&[]) != 0.0
    }
}
