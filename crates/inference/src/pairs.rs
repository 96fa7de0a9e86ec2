//! Probabilities for (user, item) pairs given as tensors, checked before they reach libtorch.

use crate::InferenceError;
use ncf_model::Model;
use tch::{Kind, Tensor};

/// `sigmoid(model(user, item))` for each pair of dataset ids given as two int64 vectors `[N]` on
/// the model's device: a float32 vector `[N]`, without autograd (put the model in evaluation mode
/// first, or dropout applies).
///
/// The ids are used as given (no copy); what libtorch would reject with a C++ exception, or index
/// out of bounds with, is refused first with the reason: another dtype, another device, another
/// shape, vectors of different lengths, an id outside the model's tables.
pub fn score_tensors(model: &dyn Model, users: &Tensor, items: &Tensor) -> Result<Tensor, InferenceError> {
    for (what, ids, count) in [("user", users, model.users()), ("item", items, model.items())] {
        let bad = |reason: String| InferenceError::TensorArgument(format!("{what} ids: {reason}"));
        if ids.kind() != Kind::Int64 {
            return Err(bad(format!("expected int64 (torch.long), got {:?}; convert with .long()", ids.kind())));
        }
        if ids.dim() != 1 {
            return Err(bad(format!("expected a vector [N], got shape {:?}; flatten it with .view(-1)", ids.size())));
        }
        if ids.device() != model.device() {
            let here = device_name(model.device());
            return Err(bad(format!("not on the model's device ({here}); move them with .to(\"{here}\")")));
        }
        if ids.numel() > 0 {
            let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
            if let Some(id) = [lo, hi].into_iter().find(|id| !(0..count).contains(id)) {
                return Err(InferenceError::IdOutOfRange { what: what.into(), id, count: count as u64 });
            }
        }
    }
    if users.size() != items.size() {
        return Err(InferenceError::PairLengths { users: users.numel(), items: items.numel() });
    }
    Ok(tch::no_grad(|| model.forward_sigmoid(users, items)).to_kind(Kind::Float).view([-1]))
}

fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}
