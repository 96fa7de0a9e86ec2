//! Conversions between `.pt` files and `tch::Tensor`.

use std::path::Path;
use tch::{Device, Kind, Tensor};
use torchfile::{Dtype, TensorRef, TensorView, TorchFile, TorchFileError};

/// The tch kind of a dtype.
pub fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::Bool => Kind::Bool,
        Dtype::UInt8 => Kind::Uint8,
        Dtype::Int8 => Kind::Int8,
        Dtype::Int16 => Kind::Int16,
        Dtype::Int32 => Kind::Int,
        Dtype::Int64 => Kind::Int64,
        Dtype::Float16 => Kind::Half,
        Dtype::BFloat16 => Kind::BFloat16,
        Dtype::Float32 => Kind::Float,
        Dtype::Float64 => Kind::Double,
    }
}

/// The dtype of a tch kind, if the format supports it.
pub fn dtype_of_kind(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::Bool,
        Kind::Uint8 => Dtype::UInt8,
        Kind::Int8 => Dtype::Int8,
        Kind::Int16 => Dtype::Int16,
        Kind::Int => Dtype::Int32,
        Kind::Int64 => Dtype::Int64,
        Kind::Half => Dtype::Float16,
        Kind::BFloat16 => Dtype::BFloat16,
        Kind::Float => Dtype::Float32,
        Kind::Double => Dtype::Float64,
        _ => return None,
    })
}

/// Reads tensor `tensor` of an open file into a new `tch::Tensor` on `device`, whatever location
/// tag (`cuda:0`, ...) the file carries. The bytes go straight from the file into the tensor's
/// memory (one copy), then to the device.
pub fn load_tch(file: &mut TorchFile, tensor: &TensorRef, device: Device) -> Result<Tensor, TorchFileError> {
    let plan = file.plan(tensor)?;
    let shape: Vec<i64> = tensor.shape.iter().map(|&d| d as i64).collect();
    let out = Tensor::empty(&shape, (kind_of(tensor.dtype), Device::Cpu));
    if !plan.is_empty() {
        // SAFETY: `out` is a freshly allocated, contiguous CPU tensor of exactly `plan.len()` bytes
        // (numel x element size, checked by plan), owned by this function.
        let bytes = unsafe { std::slice::from_raw_parts_mut(out.data_ptr() as *mut u8, plan.len()) };
        file.read_planned(&plan, bytes)?;
    }
    Ok(if device == Device::Cpu { out } else { out.to_device(device) })
}

/// Loads the single tensor of a `torch.save(tensor)` file onto `device`.
pub fn load_tch_tensor(path: impl AsRef<Path>, device: Device) -> Result<Tensor, TorchFileError> {
    let mut file = TorchFile::open(path)?;
    let t = file.tensor()?;
    load_tch(&mut file, &t, device)
}

/// Loads a name -> tensor file (a state dict) onto `device`, keys in file order.
pub fn load_tch_map(path: impl AsRef<Path>, device: Device) -> Result<Vec<(String, Tensor)>, TorchFileError> {
    let mut file = TorchFile::open(path)?;
    let entries = file.tensor_map()?;
    entries.into_iter().map(|(k, t)| Ok((k, load_tch(&mut file, &t, device)?))).collect()
}

/// Contiguous CPU copy of a tensor and its bytes' dtype; errors on unsupported kinds.
fn cpu_contiguous(path: &Path, name: &str, t: &Tensor) -> Result<(Tensor, Dtype), TorchFileError> {
    let dtype = dtype_of_kind(t.kind()).ok_or_else(|| TorchFileError::Write {
        path: path.to_owned(),
        message: format!("tensor `{name}` has kind {:?}, which .pt files written here do not support", t.kind()),
    })?;
    Ok((t.to_device(Device::Cpu).contiguous(), dtype))
}

fn bytes_of(t: &Tensor, dtype: Dtype) -> &[u8] {
    let len = t.numel() * dtype.size();
    if len == 0 {
        return &[];
    }
    // SAFETY: `t` is a contiguous CPU tensor (cpu_contiguous) of numel x element-size bytes, and the
    // slice does not outlive the borrow of `t`.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, len) }
}

/// Saves one tch tensor (from any device) as `torch.save(tensor)` would.
pub fn save_tch_tensor(path: impl AsRef<Path>, tensor: &Tensor) -> Result<(), TorchFileError> {
    let path = path.as_ref();
    let (cpu, dtype) = cpu_contiguous(path, "tensor", tensor)?;
    let shape: Vec<usize> = cpu.size().iter().map(|&d| d as usize).collect();
    torchfile::save_tensor(path, &TensorView::from_bytes(dtype, &shape, bytes_of(&cpu, dtype)))
}

/// Saves named tch tensors (from any device) as an `OrderedDict`, e.g. a state dict.
pub fn save_tch_map<S: AsRef<str>>(path: impl AsRef<Path>, entries: &[(S, Tensor)]) -> Result<(), TorchFileError> {
    let path = path.as_ref();
    let cpu: Vec<(&str, Tensor, Dtype, Vec<usize>)> = entries
        .iter()
        .map(|(name, t)| {
            let (cpu, dtype) = cpu_contiguous(path, name.as_ref(), t)?;
            let shape = cpu.size().iter().map(|&d| d as usize).collect();
            Ok((name.as_ref(), cpu, dtype, shape))
        })
        .collect::<Result<_, TorchFileError>>()?;
    let views: Vec<(&str, TensorView<'_>)> =
        cpu.iter().map(|(n, t, d, s)| (*n, TensorView::from_bytes(*d, s, bytes_of(t, *d)))).collect();
    torchfile::save_tensor_map(path, &views)
}
