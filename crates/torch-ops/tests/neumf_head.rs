//! `neumf_head` against the libtorch expression it replaces,
//! `final(cat([p[users] * q[items], h], 1))`: the same logits and gradients up to float summation
//! order, the same bits whatever the number of threads, and clear refusals.

use tch::{Device, Kind, Tensor};
use torch_ops::neumf_head;

struct Case {
    p: Tensor,
    q: Tensor,
    h: Tensor,
    w: Tensor,
    b: Tensor,
    users: Tensor,
    items: Tensor,
}

/// Arithmetic values (tests share libtorch's generator across threads), repeated ids, widths that
/// are not multiples of 16 so the loops' tails run too.
fn case(f: i64, d: i64, rows: i64) -> Case {
    let opts = (Kind::Float, Device::Cpu);
    let leaf = |t: Tensor| t.set_requires_grad(true);
    let ids = |step: i64, n: i64| (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * step).remainder(n);
    Case {
        p: leaf((Tensor::arange(61 * f, opts) * 0.37).sin().view([61, f]) * 0.1),
        q: leaf((Tensor::arange(997 * f, opts) * 0.11).cos().view([997, f]) * 0.1),
        h: leaf((Tensor::arange(rows * d, opts) * 0.013).sin().view([rows, d])),
        w: leaf((Tensor::arange(f + d, opts) * 0.7).cos().view([1, f + d]) * 0.3),
        b: leaf(Tensor::from_slice(&[0.25f32])),
        users: ids(7, 61),
        items: ids(13, 997),
    }
}

fn plain(c: &Case) -> Tensor {
    let mf = c.p.index_select(0, &c.users) * c.q.index_select(0, &c.items);
    Tensor::cat(&[mf, c.h.shallow_clone()], 1).linear(&c.w, Some(&c.b))
}

fn fused(c: &Case) -> Tensor {
    neumf_head(&c.p, &c.users, &c.q, &c.items, &c.h, &c.w, &c.b).unwrap()
}

/// Gradients of `sum(logits * dy)` for a `dy` of mixed signs and sizes, as a loss gives (`|dy|`
/// with `abs`, for a case of absolute values).
fn grads(c: &Case, logits: &Tensor, abs: bool) -> Vec<Tensor> {
    let dy = (Tensor::arange(logits.size()[0], (Kind::Float, Device::Cpu)) * 0.29).sin().view([-1, 1]);
    let dy = if abs { dy.abs() } else { dy }.to_kind(logits.kind());
    Tensor::run_backward(&[(logits * dy).sum(logits.kind())], &[&c.p, &c.q, &c.h, &c.w, &c.b], false, false)
}

/// The case in float64, as it is or with every value (and so every term) replaced by its
/// absolute value: the exact result, and the magnitude float32's rounding bound scales with.
fn in_float64(c: &Case, abs: bool) -> Case {
    let f64_leaf = |t: &Tensor| {
        let t = t.detach().to_kind(Kind::Double);
        (if abs { t.abs() } else { t }).set_requires_grad(true)
    };
    Case {
        p: f64_leaf(&c.p),
        q: f64_leaf(&c.q),
        h: f64_leaf(&c.h),
        w: f64_leaf(&c.w),
        b: f64_leaf(&c.b),
        users: c.users.shallow_clone(),
        items: c.items.shallow_clone(),
    }
}

/// `|ours − exact| ≤ stages·γ_k·magnitude` elementwise (test_support::within_f32_rounding).
fn assert_close(what: &str, ours: &Tensor, exact: &Tensor, magnitude: &Tensor, stages: u32, k: i64) {
    assert_eq!(ours.size(), exact.size(), "{what}: shape");
    let values = |t: &Tensor| Vec::<f64>::try_from(t.detach().to_kind(Kind::Double).flatten(0, -1)).unwrap();
    test_support::within_f32_rounding(what, &values(ours), &values(exact), &values(magnitude), stages, k as u64)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn equals_the_gathered_product_concatenated_and_linear() {
    // Both the bridge and libtorch's expression within float32's rounding bound of the expression
    // in float64, whatever kernels the CPU gets: a logit is a sum of f + d + 1 terms, each GMF term
    // a rounded product first (2 stages); a gradient passes through at most 3 more (the loss
    // weight times the final weight, times the other factor, summed over up to `rows` rows).
    for (f, d, rows) in [(64, 64, 16_384), (8, 24, 1_000), (19, 5, 333), (64, 0, 100), (0, 32, 100)] {
        let c = case(f, d, rows);
        let (ours, theirs) = (fused(&c), plain(&c));
        let (exact, abs) = (in_float64(&c, false), in_float64(&c, true));
        let (logits64, logits_abs) = (plain(&exact), plain(&abs));
        let k = f + d + 1;
        for (who, logits) in [("bridge", &ours), ("libtorch", &theirs)] {
            assert_close(&format!("{who}: logits f={f} d={d}"), logits, &logits64, &logits_abs, 2, k);
        }
        let (g, g_ref) = (grads(&c, &ours, false), grads(&c, &theirs, false));
        let (g64, g_abs) = (grads(&exact, &logits64, false), grads(&abs, &logits_abs, true));
        for (who, g) in [("bridge", &g), ("libtorch", &g_ref)] {
            for (k_name, name) in ["p", "q", "h", "w", "b"].iter().enumerate() {
                let what = format!("{who}: gradient of {name}, f={f} d={d}");
                assert_close(&what, &g[k_name], &g64[k_name], &g_abs[k_name], 5, rows + k);
            }
        }
        // Rows never drawn get a zero gradient, as nn.Embedding's dense gradient has.
        if f > 0 && rows < 997 {
            let used = Tensor::zeros([997], (Kind::Float, Device::Cpu)).index_fill(0, &c.items, 1.0);
            let unused_rows = g[1].index_select(0, &used.eq(0.0).nonzero().view([-1]));
            assert!(unused_rows.size()[0] > 0);
            assert_eq!(unused_rows.abs().sum(Kind::Float).double_value(&[]), 0.0);
        }
    }
}

#[test]
fn no_gradient_needed_gives_the_same_logits() {
    let c = case(64, 64, 2_000);
    let with_grad = fused(&c);
    let without = tch::no_grad(|| fused(&c));
    assert!(with_grad.detach().equal(&without));
    assert!(!without.requires_grad());
}

#[test]
fn refuses_other_kinds_shapes_and_ids_out_of_range() {
    let c = case(16, 16, 10);
    let expect = |what: &str, r: Result<Tensor, torch_ops::TorchOpError>, says: &str| match r {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => assert!(e.to_string().contains(says), "{what}: {e}"),
    };
    let bad_users = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5, 6, 7, 61, 0]);
    expect(
        "user out of range",
        neumf_head(&c.p, &bad_users, &c.q, &c.items, &c.h, &c.w, &c.b),
        "out of range at row 8",
    );
    let negative = Tensor::from_slice(&[0i64, -1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect("negative item", neumf_head(&c.p, &c.users, &c.q, &negative, &c.h, &c.w, &c.b), "out of range at row 1");
    let double = c.h.to_kind(Kind::Double);
    expect("double h", neumf_head(&c.p, &c.users, &c.q, &c.items, &double, &c.w, &c.b), "float32");
    let wide = Tensor::zeros([1, 40], (Kind::Float, Device::Cpu));
    expect("w too wide", neumf_head(&c.p, &c.users, &c.q, &c.items, &c.h, &wide, &c.b), "[1, f + d]");
    let short = c.users.narrow(0, 0, 5);
    expect("too few users", neumf_head(&c.p, &short, &c.q, &c.items, &c.h, &c.w, &c.b), "int64 [R]");
    let int_ids = c.items.to_kind(Kind::Int);
    expect("int32 items", neumf_head(&c.p, &c.users, &c.q, &int_ids, &c.h, &c.w, &c.b), "int64 [R]");
    let strided = c.h.detach().tr().contiguous().tr();
    expect("non-contiguous h", neumf_head(&c.p, &c.users, &c.q, &c.items, &strided, &c.w, &c.b), "contiguous");
}

/// The head's arithmetic written out in Rust (which never fuses a multiply and an add), in the order
/// the bridge's source gives it: 16 running sums per row, then their sum, then the bias; backward,
/// every sum over the rows in row order. Equal bit for bit only if the compiled bridge also keeps
/// every multiply and add apart (`-ffp-contract=off`): otherwise its AVX-512 clone would fuse them
/// where its AVX2 clone cannot, and a seeded run would differ between such CPUs.
#[test]
fn computes_exactly_the_written_order_without_fused_multiply_adds() {
    let c = case(72, 40, 3_000);
    let floats = |t: &Tensor| Vec::<f32>::try_from(t.detach().reshape([-1])).unwrap();
    let ids = |t: &Tensor| Vec::<i64>::try_from(t).unwrap();
    let (p, q, h, w, b) = (floats(&c.p), floats(&c.q), floats(&c.h), floats(&c.w), floats(&c.b)[0]);
    let (users, items) = (ids(&c.users), ids(&c.items));
    let (f, d) = (72usize, 40usize);
    let mut expected = Vec::new();
    for r in 0..users.len() {
        let (pu, qi, hr) = (&p[users[r] as usize * f..][..f], &q[items[r] as usize * f..][..f], &h[r * d..][..d]);
        let mut acc = [0f32; 16];
        let mut k = 0;
        while k + 16 <= f {
            for j in 0..16 {
                acc[j] += (pu[k + j] * qi[k + j]) * w[k + j];
            }
            k += 16;
        }
        for k in k..f {
            acc[0] += (pu[k] * qi[k]) * w[k];
        }
        let mut k = 0;
        while k + 16 <= d {
            for j in 0..16 {
                acc[j] += hr[k + j] * w[f + k + j];
            }
            k += 16;
        }
        for k in k..d {
            acc[0] += hr[k] * w[f + k];
        }
        let sum = acc.iter().fold(0f32, |s, &a| s + a);
        expected.push(b + sum);
    }
    let logits = fused(&c);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&floats(&logits)), bits(&expected), "logits");

    // Backward: dw and the tables' gradients, sums over the rows in row order.
    let g: Vec<f32> = (0..users.len()).map(|r| ((r as f32) * 0.29).sin()).collect();
    let dy = Tensor::from_slice(&g).view([-1, 1]);
    let grads = Tensor::run_backward(&[(&logits * dy).sum(Kind::Float)], &[&c.p, &c.w], false, false);
    let (mut dp, mut dw) = (vec![0f32; p.len()], vec![0f32; f + d]);
    for r in 0..users.len() {
        let (u, i) = (users[r] as usize * f, items[r] as usize * f);
        for k in 0..f {
            dp[u + k] += (g[r] * w[k]) * q[i + k];
            dw[k] += g[r] * (p[u + k] * q[i + k]);
        }
        for k in 0..d {
            dw[f + k] += g[r] * h[r * d + k];
        }
    }
    assert_eq!(bits(&floats(&grads[0])), bits(&dp), "gradient of p");
    assert_eq!(bits(&floats(&grads[1])), bits(&dw), "gradient of w");
}
