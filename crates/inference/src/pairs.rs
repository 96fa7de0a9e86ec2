//! Probabilities for (user, item) pairs given as tensors, checked before they reach libtorch.

use crate::InferenceError;
use ncf_model::{Model, PairTables};
use tch::{Kind, Tensor};

/// `sigmoid(model(user, item))` for each pair of dataset ids given as two int64 vectors `[N]` on
/// the model's device: a float32 vector `[N]`, without autograd (put the model in evaluation mode
/// first, or dropout applies). With `tables` ([`Model::pair_tables`] of the current parameters)
/// the model may skip work it did once for all users and items (NeuMF: the first MLP layer).
///
/// The ids are used as given (no copy); what libtorch would reject with a C++ exception, or index
/// out of bounds with, is refused first with the reason: another dtype (including those tch does
/// not know, such as uint64), a sparse tensor, another device, another shape, vectors of
/// different lengths, an id outside the model's tables.
pub fn score_tensors(
    model: &dyn Model,
    users: &Tensor,
    items: &Tensor,
    tables: Option<&PairTables>,
) -> Result<Tensor, InferenceError> {
    for (what, ids, count) in [("user", users, model.users()), ("item", items, model.items())] {
        let bad = |reason: String| InferenceError::TensorArgument(format!("{what} ids: {reason}"));
        match ids.f_kind() {
            Ok(Kind::Int64) => {}
            Ok(kind) => {
                return Err(bad(format!("expected int64 (torch.long), got {kind:?}; convert with .long()")));
            }
            Err(_) => {
                return Err(bad(
                    "expected int64 (torch.long), got a dtype libtorch's C API does not name; convert with .long()"
                        .into(),
                ))
            }
        }
        if ids.is_sparse() {
            return Err(bad("expected a dense tensor, got a sparse one; convert with .to_dense()".into()));
        }
        if ids.dim() != 1 {
            return Err(bad(format!("expected a vector [N], got shape {:?}; flatten it with .view(-1)", ids.size())));
        }
        if ids.device() != model.device() {
            let here = device_name(model.device());
            return Err(bad(format!("not on the model's device ({here}); move them with .to(\"{here}\")")));
        }
        if ids.numel() > 0 {
            // One pass for both ends (this check is a fixed cost of every call).
            let ends =
                ids.f_aminmax(None, false).and_then(|(lo, hi)| Ok((lo.f_int64_value(&[])?, hi.f_int64_value(&[])?)));
            let (lo, hi) = ends.map_err(|e| bad(format!("cannot read their range: {e}")))?;
            if let Some(id) = [lo, hi].into_iter().find(|id| !(0..count).contains(id)) {
                return Err(InferenceError::IdOutOfRange { what: what.into(), id, count: count as u64 });
            }
        }
    }
    if users.size() != items.size() {
        return Err(InferenceError::PairLengths { users: users.numel(), items: items.numel() });
    }
    let p = tch::no_grad(|| match tables {
        Some(t) => model.forward_sigmoid_with(users, items, t),
        None => model.forward_sigmoid(users, items),
    });
    Ok(p.to_kind(Kind::Float).view([-1]))
}

/// How PyTorch spells a device, for the message.
fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}
