//! Tensor element types as the spec spells them (`torch.int64`, ...).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A tensor element type, spelled in the YAML as PyTorch prints it (`str(tensor.dtype)`).
///
/// Parsing also accepts PyTorch's aliases (`torch.long`, `torch.float`, `torch.half`, ...);
/// saving always writes the canonical name, as `str(torch.long)` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    Bool,
    UInt8,
    Int8,
    Int16,
    Int32,
    Int64,
    Float16,
    BFloat16,
    Float32,
    Float64,
}

impl Dtype {
    /// Every dtype, in the order above.
    pub const ALL: [Dtype; 10] = [
        Dtype::Bool,
        Dtype::UInt8,
        Dtype::Int8,
        Dtype::Int16,
        Dtype::Int32,
        Dtype::Int64,
        Dtype::Float16,
        Dtype::BFloat16,
        Dtype::Float32,
        Dtype::Float64,
    ];

    /// The canonical name, e.g. `torch.int64`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "torch.bool",
            Dtype::UInt8 => "torch.uint8",
            Dtype::Int8 => "torch.int8",
            Dtype::Int16 => "torch.int16",
            Dtype::Int32 => "torch.int32",
            Dtype::Int64 => "torch.int64",
            Dtype::Float16 => "torch.float16",
            Dtype::BFloat16 => "torch.bfloat16",
            Dtype::Float32 => "torch.float32",
            Dtype::Float64 => "torch.float64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::UInt8 | Dtype::Int8 => 1,
            Dtype::Int16 | Dtype::Float16 | Dtype::BFloat16 => 2,
            Dtype::Int32 | Dtype::Float32 => 4,
            Dtype::Int64 | Dtype::Float64 => 8,
        }
    }

    /// Whether the type holds integers (ids); `bool` is not counted as one.
    pub fn is_integer(self) -> bool {
        matches!(self, Dtype::UInt8 | Dtype::Int8 | Dtype::Int16 | Dtype::Int32 | Dtype::Int64)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a dtype name; carries the rejected text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDtype(pub String);

impl fmt::Display for UnknownDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown dtype `{}` (expected one of: ", self.0)?;
        for (i, d) in Dtype::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(d.name())?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownDtype {}

impl FromStr for Dtype {
    type Err = UnknownDtype;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        let short = name.strip_prefix("torch.").unwrap_or(name);
        Ok(match short {
            "bool" => Dtype::Bool,
            "uint8" => Dtype::UInt8,
            "int8" => Dtype::Int8,
            "int16" | "short" => Dtype::Int16,
            "int32" | "int" => Dtype::Int32,
            "int64" | "long" => Dtype::Int64,
            "float16" | "half" => Dtype::Float16,
            "bfloat16" => Dtype::BFloat16,
            "float32" | "float" => Dtype::Float32,
            "float64" | "double" => Dtype::Float64,
            _ => return Err(UnknownDtype(s.to_owned())),
        })
    }
}

impl Serialize for Dtype {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Dtype {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_aliases_map_to_canonical() {
        for d in Dtype::ALL {
            assert_eq!(d.name().parse::<Dtype>().unwrap(), d);
        }
        assert_eq!("torch.long".parse::<Dtype>().unwrap(), Dtype::Int64);
        assert_eq!("torch.half".parse::<Dtype>().unwrap(), Dtype::Float16);
        let err = "torch.complex64".parse::<Dtype>().unwrap_err().to_string();
        assert!(err.contains("unknown dtype `torch.complex64`"), "{err}");
        assert!(err.contains("torch.int64"), "{err}");
    }
}
