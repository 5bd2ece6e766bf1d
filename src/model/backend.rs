//! The backend, chosen in one place: Burn's Flex on the CPU (the default), CUDA behind the
//! cargo feature `cuda` and wgpu (Vulkan, Metal, DX12: AMD, Intel and Apple GPUs; Mesa's
//! lavapipe in CI) behind the feature `wgpu`. Commands parse `--device cpu|cuda[:N]|wgpu`
//! into a [`DeviceSpec`] and hand a [`BackendJob`] to [`run_on`], which instantiates it for
//! the right backend. CUDA and wgpu run the same CubeCL kernels (Burn's plain composition;
//! the fused CPU kernels are Flex's).

use super::ModelError;

/// The CPU backend (pure-Rust Flex, multi-threaded gemm; AVX-512 when the CPU has it).
pub type Cpu = burn::backend::Flex;

/// The CUDA backend (`burn-cuda`, fusion + autotune).
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda;

/// The wgpu backend (`burn-wgpu`: CubeCL on Vulkan/Metal/DX12, fusion + autotune).
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU (Flex).
    #[default]
    Cpu,
    /// CUDA device N.
    Cuda(usize),
    /// wgpu's default adapter (the best GPU it finds; a software one when there is none).
    Wgpu,
}

impl DeviceSpec {
    /// The backend's name (`cpu`, `cuda`, `wgpu`): devices of one data-parallel run share it.
    pub fn backend(&self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "cpu",
            DeviceSpec::Cuda(_) => "cuda",
            DeviceSpec::Wgpu => "wgpu",
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || ModelError::Device(s.into(), "use `cpu`, `cuda`, `cuda:N` or `wgpu`".into());
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "wgpu" => Ok(DeviceSpec::Wgpu),
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
            DeviceSpec::Wgpu => write!(f, "wgpu"),
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
        #[cfg(feature = "wgpu")]
        DeviceSpec::Wgpu => Ok(job.run::<Wgpu>(burn::backend::wgpu::WgpuDevice::DefaultDevice)),
        #[cfg(not(feature = "wgpu"))]
        DeviceSpec::Wgpu => Err(ModelError::Device(
            spec.to_string(),
            "this uerzoo was built without wgpu; rebuild with `cargo build --release --features wgpu`".into(),
        )),
    }
}
