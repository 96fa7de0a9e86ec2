//! `gather_add` against the three libtorch steps it replaces: the same values and the same
//! gradients, bit for bit, and clear refusals.

use tch::{Device, Kind, Tensor};
use torch_ops::gather_add;

#[test]
fn equals_two_index_selects_and_their_sum_bit_for_bit() {
    let opts = (Kind::Float, Device::Cpu);
    // Arithmetic values (tests share libtorch's generator across threads), repeated indices.
    let a = (Tensor::arange(37 * 256, opts) * 0.37).sin().view([37, 256]).set_requires_grad(true);
    let b = (Tensor::arange(1000 * 256, opts) * 0.11).cos().view([1000, 256]).set_requires_grad(true);
    let rows = 16_384;
    let ia = (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * 7).remainder(37);
    let ib = (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * 13).remainder(1000);
    let dy = (Tensor::arange(rows * 256, opts) * 0.013).sin().view([rows, 256]);

    let ours = gather_add(&a, &ia, &b, &ib).unwrap();
    let theirs = a.index_select(0, &ia) + b.index_select(0, &ib);
    assert!(ours.equal(&theirs), "values");
    let g = Tensor::run_backward(&[(&ours * &dy).sum(Kind::Float)], &[&a, &b], false, false);
    let g_ref = Tensor::run_backward(&[(&theirs * &dy).sum(Kind::Float)], &[&a, &b], false, false);
    assert!(g[0].equal(&g_ref[0]), "gradient of a");
    assert!(g[1].equal(&g_ref[1]), "gradient of b");

    // A frozen side gets no gradient; the other still does.
    let frozen = a.detach();
    let y = gather_add(&frozen, &ia, &b, &ib).unwrap();
    let g = Tensor::run_backward(&[(&y * &dy).sum(Kind::Float)], &[&b], false, false);
    assert!(g[0].equal(&g_ref[1]));
}

#[test]
fn refuses_other_kinds_shapes_and_indices_out_of_range() {
    let opts = (Kind::Float, Device::Cpu);
    let (a, b) = (Tensor::zeros([4, 8], opts), Tensor::zeros([5, 8], opts));
    let idx = Tensor::from_slice(&[0i64, 3, 1]);
    let cases = [
        ("double", gather_add(&a.to_kind(Kind::Double), &idx, &b, &idx), "float32 CPU"),
        ("widths differ", gather_add(&a, &idx, &Tensor::zeros([5, 9], opts), &idx), "one W"),
        ("int32 indices", gather_add(&a, &idx.to_kind(Kind::Int), &b, &idx), "int64"),
        ("lengths differ", gather_add(&a, &idx, &b, &idx.narrow(0, 0, 2)), "one R"),
        ("out of range", gather_add(&a, &Tensor::from_slice(&[0i64, 4, 1]), &b, &idx), "out of range at row 1"),
    ];
    for (what, result, expected) in cases {
        let err = result.expect_err(what).to_string();
        assert!(err.contains(expected), "{what}: {err}");
    }
}
