//! Tensor descriptions, owned tensor data, and borrowed views for writing.

use crate::Dtype;

/// A storage record of the archive, as a tensor's pickle refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub dtype: Dtype,
    /// Record name under `data/`.
    pub key: String,
    /// Where the tensor lived when saved (`cpu`, `cuda:0`, ...): informational, the reader places
    /// tensors where its caller asks.
    pub location: String,
    /// Elements the storage declares.
    pub numel: u64,
}

/// A tensor as the pickle describes it: a strided view into a storage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub storage_offset: usize,
    pub storage: StorageRef,
    pub requires_grad: bool,
}

impl TensorRef {
    /// Number of elements (checked).
    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    /// Bytes the tensor occupies once contiguous (checked).
    pub fn byte_len(&self) -> Option<usize> {
        self.numel()?.checked_mul(self.dtype.size())
    }

    /// One past the highest storage element the view touches (0 for an empty tensor), checked.
    pub fn storage_extent(&self) -> Option<u64> {
        if self.shape.contains(&0) {
            return Some(0);
        }
        let mut last = self.storage_offset as u64;
        for (&d, &s) in self.shape.iter().zip(&self.strides) {
            last = last.checked_add((d as u64 - 1).checked_mul(s as u64)?)?;
        }
        last.checked_add(1)
    }

    /// Whether the view is row-major contiguous.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected = expected.saturating_mul(d);
        }
        true
    }
}

/// An owned, contiguous, little-endian tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

macro_rules! typed_copy {
    ($name:ident, $t:ty, $($dtype:ident)|+) => {
        /// The elements as this Rust type.
        ///
        /// # Panics
        /// If the dtype does not match.
        pub fn $name(&self) -> Vec<$t> {
            assert!(matches!(self.dtype, $(Dtype::$dtype)|+), "tensor is {}", self.dtype);
            self.data
                .chunks_exact(std::mem::size_of::<$t>())
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
                .collect()
        }
    };
}

impl TensorData {
    /// A borrowed view of this tensor, for writing.
    pub fn view(&self) -> TensorView<'_> {
        TensorView { dtype: self.dtype, shape: self.shape.clone(), data: &self.data }
    }

    typed_copy!(to_i64, i64, Int64);
    typed_copy!(to_i32, i32, Int32);
    typed_copy!(to_f32, f32, Float32);
    typed_copy!(to_f64, f64, Float64);
}

/// A borrowed contiguous little-endian tensor to write: dtype, shape and the raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorView<'a> {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

macro_rules! typed_view {
    ($name:ident, $t:ty, $dtype:ident) => {
        /// A view of a slice of this Rust type (row-major, `shape` must multiply to its length).
        pub fn $name(values: &'a [$t], shape: &[usize]) -> TensorView<'a> {
            TensorView { dtype: Dtype::$dtype, shape: shape.to_vec(), data: bytemuck::cast_slice(values) }
        }
    };
}

impl<'a> TensorView<'a> {
    /// A view of raw little-endian bytes.
    pub fn from_bytes(dtype: Dtype, shape: &[usize], data: &'a [u8]) -> TensorView<'a> {
        TensorView { dtype, shape: shape.to_vec(), data }
    }

    typed_view!(from_i64, i64, Int64);
    typed_view!(from_i32, i32, Int32);
    typed_view!(from_i16, i16, Int16);
    typed_view!(from_i8, i8, Int8);
    typed_view!(from_u8, u8, UInt8);
    typed_view!(from_f32, f32, Float32);
    typed_view!(from_f64, f64, Float64);

    /// Number of elements the shape declares (checked).
    pub fn numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tref(shape: &[usize], strides: &[usize], offset: usize) -> TensorRef {
        TensorRef {
            dtype: Dtype::Int64,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            storage_offset: offset,
            storage: StorageRef { dtype: Dtype::Int64, key: "0".into(), location: "cpu".into(), numel: 100 },
            requires_grad: false,
        }
    }

    #[test]
    fn extent_and_contiguity() {
        assert_eq!(tref(&[2, 3], &[3, 1], 0).storage_extent(), Some(6));
        assert!(tref(&[2, 3], &[3, 1], 0).is_contiguous());
        assert_eq!(tref(&[3, 2], &[1, 3], 4).storage_extent(), Some(10));
        assert!(!tref(&[3, 2], &[1, 3], 0).is_contiguous());
        assert_eq!(tref(&[0, 5], &[5, 1], 7).storage_extent(), Some(0));
        assert!(tref(&[4, 1], &[1, 99], 0).is_contiguous());
        assert_eq!(tref(&[usize::MAX, 2], &[usize::MAX, 1], 0).storage_extent(), None);
    }
}
