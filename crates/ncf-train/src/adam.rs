//! Adam as the reference runs it (apex FusedAdam, `adam_w_mode=False`, no weight decay), with its
//! state in our hands so a run can be saved and resumed.

use tch::Tensor;

/// Adam over a fixed list of parameters.
#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    step: i64,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    /// Zeroed moments shaped like `params`.
    pub fn new(params: &[Tensor], lr: f64, beta1: f64, beta2: f64, eps: f64) -> Self {
        let zeros = || params.iter().map(|p| p.zeros_like()).collect();
        Adam { lr, beta1, beta2, eps, step: 0, exp_avg: zeros(), exp_avg_sq: zeros() }
    }

    /// One update from the parameters' gradients:
    /// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
    /// `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
    /// A parameter without a gradient is left alone.
    pub fn step(&mut self, params: &[Tensor]) {
        self.step += 1;
        let t = self.step as i32;
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

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// The state as named tensors (`exp_avg.<i>`, `exp_avg_sq.<i>`, `step`), for a training checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (m, v)) in self.exp_avg.iter().zip(&self.exp_avg_sq).enumerate() {
            out.push((format!("exp_avg.{i}"), m.shallow_clone()));
            out.push((format!("exp_avg_sq.{i}"), v.shallow_clone()));
        }
        out.push(("step".into(), Tensor::from(self.step)));
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
        self.step = get("step")?.int64_value(&[]);
        Some(())
    }
}
