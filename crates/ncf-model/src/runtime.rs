//! Device choice and facts about the libtorch this process runs on.

use std::fmt;
use std::str::FromStr;
use tch::Device;

/// A device as users write it on the command line: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA device 0 when CUDA is available, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

/// Why a device choice cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("unknown device `{0}` (expected auto, cpu, cuda or cuda:N)")]
    Unknown(String),
    #[error("device cuda:{requested} asked for, but {}", if *.available == 0 { "CUDA is not available in this process (no GPU, no driver, or a CPU-only libtorch); use --device cpu".to_owned() } else { format!("only {} CUDA device(s) are visible", .available) })]
    CudaUnavailable { requested: usize, available: usize },
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| DeviceError::Unknown(s.to_owned())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Resolves the choice against what this process can see.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        let available = if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 };
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto if available > 0 => Ok(Device::Cuda(0)),
            DeviceChoice::Auto => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) if n < available => Ok(Device::Cuda(n)),
            DeviceChoice::Cuda(requested) => Err(DeviceError::CudaUnavailable { requested, available }),
        }
    }
}

/// Which library runs a model's float32 matrix products on the CPU (NeuMF's MLP, in training,
/// evaluation and inference alike). Either way the products are float32 (IEEE) and equal up to
/// float rounding; they differ in speed and in which bits a seed reproduces where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuMatmul {
    /// oneDNN where the CPU has AVX-512 ([`torch_ops::onednn_f32_available`]), libtorch's MKL
    /// elsewhere.
    #[default]
    Auto,
    /// oneDNN's matmul (512-bit kernels): 2-2.5x MKL's speed on an AMD EPYC, where MKL runs
    /// its 256-bit AVX2 code. Needs AVX-512.
    OneDnn,
    /// libtorch's own products (MKL's sgemm, which `ncf-train` pins to its AVX2 branch with
    /// `MKL_CBWR`, so a seed gives the same numbers on every Intel CPU with AVX2).
    Mkl,
}

/// Why a [`CpuMatmul`] choice cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuMatmulError {
    #[error("unknown CPU matmul `{0}` (expected auto, onednn or mkl)")]
    Unknown(String),
    #[error("onednn asked for, but this CPU lacks AVX-512 (F, BW, VL, DQ); use auto or mkl")]
    OneDnnUnavailable,
}

impl CpuMatmul {
    /// Whether products run in oneDNN on this CPU; [`CpuMatmul::OneDnn`] where the CPU cannot is
    /// an error.
    pub fn resolve(self) -> Result<bool, CpuMatmulError> {
        let available = torch_ops::onednn_f32_available();
        match self {
            CpuMatmul::Auto => Ok(available),
            CpuMatmul::OneDnn if available => Ok(true),
            CpuMatmul::OneDnn => Err(CpuMatmulError::OneDnnUnavailable),
            CpuMatmul::Mkl => Ok(false),
        }
    }

    /// The library the products run in on this CPU: `onednn` or `mkl` (for logs).
    pub fn engine(self) -> &'static str {
        match self.resolve() {
            Ok(true) => "onednn",
            _ => "mkl",
        }
    }
}

impl FromStr for CpuMatmul {
    type Err = CpuMatmulError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(CpuMatmul::Auto),
            "onednn" => Ok(CpuMatmul::OneDnn),
            "mkl" => Ok(CpuMatmul::Mkl),
            other => Err(CpuMatmulError::Unknown(other.to_owned())),
        }
    }
}

impl fmt::Display for CpuMatmul {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuMatmul::Auto => "auto",
            CpuMatmul::OneDnn => "onednn",
            CpuMatmul::Mkl => "mkl",
        })
    }
}

/// Facts about the libtorch loaded in this process, for `--version` output and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// Whether `libtorch_cuda.so` is mapped into this process.
    pub libtorch_cuda_loaded: bool,
    /// Whether CUDA can be used (needs the library above, a driver and a GPU).
    pub cuda_available: bool,
    pub cuda_devices: usize,
    /// The folder the process loaded `libtorch_cpu.so` from, if it could be read.
    pub libtorch_dir: Option<String>,
    /// Whether the CPU has bfloat16 instructions ([`cpu_has_bf16`]: `--amp` on the CPU).
    pub cpu_bf16: bool,
}

impl RuntimeInfo {
    pub fn current() -> RuntimeInfo {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mapped = |name: &str| maps.lines().find(|l| l.ends_with(name)).and_then(|l| l.split_whitespace().last());
        let cuda_available = tch::Cuda::is_available();
        RuntimeInfo {
            libtorch_cuda_loaded: mapped("/libtorch_cuda.so").is_some(),
            cuda_available,
            cuda_devices: if cuda_available { tch::Cuda::device_count().max(0) as usize } else { 0 },
            libtorch_dir: mapped("/libtorch_cpu.so").map(|p| p.trim_end_matches("/libtorch_cpu.so").to_owned()),
            cpu_bf16: cpu_has_bf16(),
        }
    }
}

impl fmt::Display for RuntimeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "libtorch: {}", self.libtorch_dir.as_deref().unwrap_or("(unknown location)"))?;
        writeln!(f, "libtorch_cuda.so loaded: {}", if self.libtorch_cuda_loaded { "yes" } else { "no" })?;
        write!(
            f,
            "CUDA available: {} ({} device(s))",
            if self.cuda_available { "yes" } else { "no" },
            self.cuda_devices
        )?;
        write!(
            f,
            "\nCPU bfloat16 instructions: {}",
            if self.cpu_bf16 {
                "yes (--amp on the CPU runs bfloat16 products)"
            } else {
                "no (--amp is refused on the CPU)"
            }
        )
    }
}

/// Whether this CPU has bfloat16 dot-product instructions (AVX512-BF16; every x86 CPU with AMX has
/// them too), so bfloat16 matrix products run faster than float32 ones rather than emulated.
pub fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_choices_parse() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        assert_eq!("gpu".parse::<DeviceChoice>(), Err(DeviceError::Unknown("gpu".into())));
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cpu_matmul_choices_parse_and_resolve_by_the_cpu() {
        assert_eq!("auto".parse(), Ok(CpuMatmul::Auto));
        assert_eq!("onednn".parse(), Ok(CpuMatmul::OneDnn));
        assert_eq!("mkl".parse(), Ok(CpuMatmul::Mkl));
        assert_eq!("blas".parse::<CpuMatmul>(), Err(CpuMatmulError::Unknown("blas".into())));
        assert_eq!(CpuMatmul::Mkl.resolve(), Ok(false));
        let avx512 = torch_ops::onednn_f32_available();
        assert_eq!(CpuMatmul::Auto.resolve(), Ok(avx512));
        let expected = if avx512 { Ok(true) } else { Err(CpuMatmulError::OneDnnUnavailable) };
        assert_eq!(CpuMatmul::OneDnn.resolve(), expected);
    }

    #[test]
    fn cpu_always_resolves_and_missing_cuda_is_a_clear_error() {
        assert_eq!(DeviceChoice::Cpu.resolve(), Ok(Device::Cpu));
        if !tch::Cuda::is_available() {
            let err = DeviceChoice::Cuda(0).resolve().unwrap_err();
            assert!(err.to_string().contains("use --device cpu"), "{err}");
            assert_eq!(DeviceChoice::Auto.resolve(), Ok(Device::Cpu));
        }
    }
}
