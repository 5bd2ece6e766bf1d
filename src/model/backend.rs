//! The backend, chosen in one place: Burn's Flex on the CPU (the default) and CUDA behind
//! the cargo feature `cuda`. Commands parse `--device cpu|cuda[:N]` into a [`DeviceSpec`]
//! and hand a [`BackendJob`] to [`run_on`], which instantiates it for the right backend.

use super::ModelError;

/// The CPU backend (pure-Rust Flex, multi-threaded gemm; AVX-512 when the CPU has it).
pub type Cpu = burn::backend::Flex;

/// The CUDA backend (`burn-cuda`, fusion + autotune).
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU (Flex).
    #[default]
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::Device(s.into(), "use `cpu`, `cuda` or `cuda:N`".into());
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceSpec::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Work that is generic over the backend; [`run_on`] picks the backend.
pub trait BackendJob {
    type Output;
    fn run<B: burn::tensor::backend::Backend>(self, device: B::Device) -> Self::Output;
}

/// Runs `job` on the backend and device `spec` names.
pub fn run_on<J: BackendJob>(spec: DeviceSpec, job: J) -> Result<J::Output, ModelError> {
    match spec {
        DeviceSpec::Cpu => Ok(job.run::<Cpu>(Default::default())),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(n) => Ok(job.run::<Gpu>(burn::backend::cuda::CudaDevice::new(n))),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => Err(ModelError::Device(
            spec.to_string(),
            "this uerzoo was built without CUDA; rebuild with `cargo build --release --features cuda`".into(),
        )),
    }
}
