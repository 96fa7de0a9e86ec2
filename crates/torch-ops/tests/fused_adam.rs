//! PyTorch's fused Adam through the bridge, against textbook Adam computed here in f64, and the
//! AMP pieces: a gradient with an inf is found, and the fused step then changes nothing.

use tch::{Device, Kind, Tensor};
use torch_ops::{amp_check_and_unscale, fused_adam, AdamHyper};

/// Textbook Adam (Kingma & Ba, with PyTorch's eps placement) on plain numbers.
fn textbook(p: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f64], t: i32, h: AdamHyper) {
    let (b1, b2) = (h.beta1, h.beta2);
    for k in 0..p.len() {
        m[k] = b1 * m[k] + (1.0 - b1) * g[k];
        v[k] = b2 * v[k] + (1.0 - b2) * g[k] * g[k];
        let m_hat = m[k] / (1.0 - b1.powi(t));
        let v_hat = v[k] / (1.0 - b2.powi(t));
        p[k] -= h.lr * m_hat / (v_hat.sqrt() + h.eps);
    }
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).view([-1])).unwrap()
}

#[test]
fn fused_adam_equals_textbook_adam_after_100_steps() {
    tch::manual_seed(0);
    let h = AdamHyper { lr: 0.0045, beta1: 0.25, beta2: 0.5, eps: 1e-8 };
    let shapes: [&[i64]; 3] = [&[50, 8], &[16], &[3, 4, 5]];
    let params: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu))).collect();
    let m: Vec<Tensor> = params.iter().map(|p| p.zeros_like()).collect();
    let v: Vec<Tensor> = params.iter().map(|p| p.zeros_like()).collect();
    let mut tp: Vec<Vec<f64>> = params.iter().map(to_vec).collect();
    let mut tm: Vec<Vec<f64>> = tp.iter().map(|p| vec![0.0; p.len()]).collect();
    let mut tv = tm.clone();
    let step = Tensor::zeros([], (Kind::Float, Device::Cpu));
    // Per element, over the steps: the sum of |p| and of |p's move| (textbook run).
    let mut sum_p: Vec<Vec<f64>> = tm.clone();
    let mut sum_move: Vec<Vec<f64>> = tm.clone();
    for t in 1..=100 {
        let grads: Vec<Tensor> = params.iter().map(|p| Tensor::randn(p.size(), (Kind::Float, Device::Cpu))).collect();
        let _ = step.shallow_clone().fill_(t as f64);
        fused_adam(&params, &grads, &m, &v, &step, h, None).unwrap();
        for k in 0..params.len() {
            let before = tp[k].clone();
            textbook(&mut tp[k], &mut tm[k], &mut tv[k], &to_vec(&grads[k]), t, h);
            for (e, (now, was)) in tp[k].iter().zip(&before).enumerate() {
                sum_move[k][e] += (now - was).abs();
                sum_p[k][e] += now.abs();
            }
        }
    }
    // float32's rounding, whatever kernel the CPU gets: per step the update is off by at most 12
    // roundings of it (m's running error stays below 2u|m|/(1-b1) < 3u|m|, v's below
    // 2u|v|/(1-b2) = 4u|v|, 2u under the square root, and 7 more operations) and the new weight
    // by one rounding of |p|; the gradients are the same float32 numbers for both, so the errors
    // only add up over the steps. An arithmetic mistake is far above it.
    let u = f64::from(f32::EPSILON) / 2.0;
    for (k, p) in params.iter().enumerate() {
        let got = to_vec(p);
        for (e, (a, b)) in got.iter().zip(&tp[k]).enumerate() {
            let bound = 12.0 * u * sum_move[k][e] + u * sum_p[k][e];
            assert!((a - b).abs() <= bound, "parameter {k}[{e}]: {a} vs float64's {b}, past float32's bound {bound:e}");
        }
    }
    // The parameters moved (100 steps of ~lr each).
    assert!(to_vec(&params[1]).iter().zip(&tp[1]).all(|(a, b)| (a - b).abs() < 1e-5));
}

#[test]
fn an_inf_gradient_is_found_and_the_fused_step_is_skipped() {
    let h = AdamHyper { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    let p = vec![Tensor::ones([4], (Kind::Float, Device::Cpu))];
    let g = vec![Tensor::from_slice(&[1f32, f32::INFINITY, 2.0, 3.0])];
    let (m, v) = (vec![p[0].zeros_like()], vec![p[0].zeros_like()]);
    let found_inf = Tensor::zeros([], (Kind::Float, Device::Cpu));
    amp_check_and_unscale(&g, &found_inf, &Tensor::from(1f32)).unwrap();
    assert_eq!(found_inf.double_value(&[]), 1.0);
    let step = Tensor::from(1f32);
    let scale = Tensor::from(65536f32);
    fused_adam(&p, &g, &m, &v, &step, h, Some((&scale, &found_inf))).unwrap();
    assert_eq!(Vec::<f32>::try_from(&p[0]).unwrap(), vec![1.0; 4], "skipped step leaves the parameters");
    // With finite gradients the same call updates.
    let g = vec![Tensor::from_slice(&[65536f32; 4])];
    let found_inf = Tensor::zeros([], (Kind::Float, Device::Cpu));
    amp_check_and_unscale(&g, &found_inf, &Tensor::from(1f32)).unwrap();
    assert_eq!(found_inf.double_value(&[]), 0.0);
    fused_adam(&p, &g, &m, &v, &step, h, Some((&scale, &found_inf))).unwrap();
    assert!(
        Vec::<f32>::try_from(&p[0]).unwrap().iter().all(|&x| (x - 0.9).abs() < 1e-5),
        "lr 0.1 step on unscaled grad 1"
    );
}

#[test]
fn errors_come_back_as_messages() {
    let p = vec![Tensor::ones([4], (Kind::Float, Device::Cpu))];
    let g = vec![Tensor::ones([5], (Kind::Float, Device::Cpu))];
    let h = AdamHyper { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    let err = fused_adam(&p, &g, &[p[0].zeros_like()], &[p[0].zeros_like()], &Tensor::from(1f32), h, None);
    assert!(err.unwrap_err().0.contains("parameter 0 is [4]"));
    // An exception inside libtorch comes back as its message.
    let found_inf = Tensor::zeros([], (Kind::Double, Device::Cpu));
    let err = amp_check_and_unscale(&[p[0].shallow_clone()], &found_inf, &Tensor::from(1f32)).unwrap_err();
    assert!(!err.0.is_empty(), "{err}");
    assert!(torch_ops::set_tf32(false).is_ok() && torch_ops::set_tf32(true).is_ok());
}
