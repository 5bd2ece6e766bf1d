//! The backend, chosen in one place: Burn's Flex on the CPU (the default), CUDA behind the
//! cargo feature `cuda` and wgpu (Vulkan, Metal, DX12: AMD, Intel and Apple GPUs; Mesa's
//! lavapipe in CI) behind the feature `wgpu`. Commands parse `--device cpu|cuda[:N]|wgpu[:N]`
//! into a [`DeviceSpec`] and hand a [`BackendJob`] to [`run_on`], which instantiates it for
//! the right backend; `--device auto` is [`auto`]: the first CUDA device, else the first wgpu
//! GPU, else the CPU. CUDA and wgpu run the same CubeCL kernels (Burn's plain composition;
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
    /// wgpu: `None` is wgpu's default adapter (the best GPU it finds; a software one when
    /// there is none), `Some(n)` the n-th adapter of [`wgpu_adapters`].
    Wgpu(Option<usize>),
}

impl DeviceSpec {
    /// The backend's name (`cpu`, `cuda`, `wgpu`): devices of one data-parallel run share it.
    pub fn backend(&self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "cpu",
            DeviceSpec::Cuda(_) => "cuda",
            DeviceSpec::Wgpu(_) => "wgpu",
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        let bad = || {
            ModelError::Device(
                s.into(),
                "use `cpu`, `cuda`, `cuda:N`, `wgpu`, `wgpu:N` (or `auto` on the command line)"
                    .into(),
            )
        };
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "wgpu" => Ok(DeviceSpec::Wgpu(None)),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => {
                if let Some(n) = s.strip_prefix("cuda:") {
                    n.parse().map(DeviceSpec::Cuda).map_err(|_| bad())
                } else if let Some(n) = s.strip_prefix("wgpu:") {
                    n.parse()
                        .map(|n| DeviceSpec::Wgpu(Some(n)))
                        .map_err(|_| bad())
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Wgpu(None) => write!(f, "wgpu"),
            DeviceSpec::Wgpu(Some(n)) => write!(f, "wgpu:{n}"),
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
        DeviceSpec::Wgpu(n) => Ok(job.run::<Wgpu>(wgpu_device(n)?)),
        #[cfg(not(feature = "wgpu"))]
        DeviceSpec::Wgpu(_) => Err(ModelError::Device(
            spec.to_string(),
            "this uerzoo was built without wgpu; rebuild with `cargo build --release --features wgpu`".into(),
        )),
    }
}

/// A graphics adapter wgpu sees (Vulkan on Linux and Windows, Metal on macOS: the API Burn's
/// wgpu backend uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    /// The adapter's name, e.g. `NVIDIA H100 80GB HBM3` or `llvmpipe (LLVM 19.1.7, 256 bits)`.
    pub name: String,
    /// `discrete`, `integrated`, `virtual`, `cpu` (a software rasteriser such as lavapipe) or
    /// `other`.
    pub kind: &'static str,
}

impl Adapter {
    /// Whether this is a real GPU (not a software one): `--device auto` only picks these.
    pub fn is_gpu(&self) -> bool {
        matches!(self.kind, "discrete" | "integrated" | "virtual")
    }
}

/// The adapters wgpu lists, in its order (`wgpu:N` is the N-th). Empty in a build without the
/// feature `wgpu`, or when no Vulkan/Metal driver is installed.
pub fn wgpu_adapters() -> Vec<Adapter> {
    #[cfg(feature = "wgpu")]
    {
        wgpu_probe::adapters()
            .into_iter()
            .map(|(name, kind)| Adapter { name, kind })
            .collect()
    }
    #[cfg(not(feature = "wgpu"))]
    Vec::new()
}

/// The number of CUDA devices the driver reports; an error says why there are none usable
/// (a build without the feature `cuda`, no driver, or the driver's error code).
pub fn cuda_devices() -> Result<usize, String> {
    #[cfg(all(feature = "cuda", unix))]
    {
        cuda_probe::devices()
    }
    #[cfg(all(feature = "cuda", not(unix)))]
    {
        Err("the CUDA probe is written for Linux; name `--device cuda` yourself".into())
    }
    #[cfg(not(feature = "cuda"))]
    Err("this uerzoo was built without the feature `cuda`".into())
}

/// `--device auto`: the first CUDA device when the build has CUDA and the driver reports one,
/// else the first wgpu adapter that is a GPU (discrete before integrated before virtual; a
/// software adapter such as lavapipe is slower than the CPU backend and is never picked),
/// else the CPU. Returns the choice and a line saying why, for the command to show.
pub fn auto() -> (DeviceSpec, String) {
    let mut passed = Vec::new();
    match cuda_devices() {
        Ok(n) if n > 0 => {
            return (
                DeviceSpec::Cuda(0),
                format!("cuda:0 (the driver reports {n} CUDA device(s))"),
            );
        }
        Ok(_) => passed.push("CUDA: the driver reports no device".to_string()),
        Err(why) => passed.push(format!("CUDA: {why}")),
    }
    if cfg!(feature = "wgpu") {
        let adapters = wgpu_adapters();
        let rank = |kind: &str| {
            ["discrete", "integrated", "virtual"]
                .iter()
                .position(|k| *k == kind)
        };
        let best = adapters
            .iter()
            .enumerate()
            .filter_map(|(i, a)| rank(a.kind).map(|r| (r, i, a)))
            .min_by_key(|(r, i, _)| (*r, *i));
        if let Some((_, i, a)) = best {
            return (
                DeviceSpec::Wgpu(Some(i)),
                format!("wgpu:{i} ({}, {} GPU)", a.name, a.kind),
            );
        }
        let seen: Vec<String> = adapters
            .iter()
            .map(|a| format!("{} ({})", a.name, a.kind))
            .collect();
        passed.push(if seen.is_empty() {
            "wgpu: no adapter (no Vulkan/Metal driver)".to_string()
        } else {
            format!("wgpu: no GPU, only {}", seen.join(", "))
        });
    } else {
        passed.push("wgpu: this uerzoo was built without the feature `wgpu`".to_string());
    }
    (DeviceSpec::Cpu, format!("cpu ({})", passed.join("; ")))
}

/// The Burn device for `wgpu` / `wgpu:N`: the N-th adapter of [`wgpu_adapters`] is named to
/// CubeCL by its kind and its index among the adapters of that kind.
#[cfg(feature = "wgpu")]
fn wgpu_device(n: Option<usize>) -> Result<burn::backend::wgpu::WgpuDevice, ModelError> {
    use burn::backend::wgpu::WgpuDevice;
    let Some(n) = n else {
        return Ok(WgpuDevice::DefaultDevice);
    };
    let adapters = wgpu_adapters();
    let list = || {
        if adapters.is_empty() {
            "wgpu lists no adapter (is a Vulkan/Metal driver installed?)".to_string()
        } else {
            let names: Vec<String> = adapters
                .iter()
                .enumerate()
                .map(|(i, a)| format!("wgpu:{i} = {} ({})", a.name, a.kind))
                .collect();
            format!("the adapters are: {}", names.join(", "))
        }
    };
    let Some(a) = adapters.get(n) else {
        return Err(ModelError::Device(
            format!("wgpu:{n}"),
            format!("no such adapter; {}", list()),
        ));
    };
    let k = adapters[..n].iter().filter(|b| b.kind == a.kind).count();
    match a.kind {
        "discrete" => Ok(WgpuDevice::DiscreteGpu(k)),
        "integrated" => Ok(WgpuDevice::IntegratedGpu(k)),
        "virtual" => Ok(WgpuDevice::VirtualGpu(k)),
        "cpu" if k == 0 => Ok(WgpuDevice::Cpu),
        _ => Err(ModelError::Device(
            format!("wgpu:{n}"),
            format!(
                "Burn cannot select this adapter by index; use `wgpu`; {}",
                list()
            ),
        )),
    }
}

#[cfg(feature = "wgpu")]
mod wgpu_probe {
    use futures_util::FutureExt;

    /// (name, kind) of each adapter of the graphics API Burn's wgpu backend uses.
    pub fn adapters() -> Vec<(String, &'static str)> {
        let backends = if cfg!(target_os = "macos") {
            wgpu::Backends::METAL
        } else {
            wgpu::Backends::VULKAN
        };
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        // Native enumeration is synchronous behind its future; a pending one counts as none.
        let found = instance
            .enumerate_adapters(backends)
            .now_or_never()
            .unwrap_or_default();
        found
            .iter()
            .map(|a| {
                let info = a.get_info();
                let kind = match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => "discrete",
                    wgpu::DeviceType::IntegratedGpu => "integrated",
                    wgpu::DeviceType::VirtualGpu => "virtual",
                    wgpu::DeviceType::Cpu => "cpu",
                    wgpu::DeviceType::Other => "other",
                };
                (info.name, kind)
            })
            .collect()
    }
}

#[cfg(all(feature = "cuda", unix))]
mod cuda_probe {
    /// Asks the driver library itself (`cuInit`, `cuDeviceGetCount`), loaded with `dlopen`,
    /// so that a machine without one gets an answer instead of a panic from deeper down.
    pub fn devices() -> Result<usize, String> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; the two symbols have the CUDA driver
        // API's C signatures `CUresult cuInit(unsigned)` and `CUresult cuDeviceGetCount(int*)`.
        unsafe {
            let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if lib.is_null() {
                return Err("no CUDA driver (libcuda.so.1 not found)".into());
            }
            let init = libc::dlsym(lib, c"cuInit".as_ptr());
            let count = libc::dlsym(lib, c"cuDeviceGetCount".as_ptr());
            if init.is_null() || count.is_null() {
                return Err("libcuda.so.1 lacks cuInit/cuDeviceGetCount".into());
            }
            let init: extern "C" fn(u32) -> i32 = std::mem::transmute(init);
            let count: extern "C" fn(*mut i32) -> i32 = std::mem::transmute(count);
            let code = init(0);
            if code != 0 {
                return Err(format!(
                    "the CUDA driver failed to start (cuInit error {code})"
                ));
            }
            let mut n = 0i32;
            let code = count(&mut n);
            if code != 0 {
                return Err(format!("cuDeviceGetCount error {code}"));
            }
            Ok(n.max(0) as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print_back() {
        for s in ["cpu", "cuda:0", "cuda:3", "wgpu", "wgpu:1"] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap().to_string(), s);
        }
        assert_eq!("gpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        for bad in ["auto", "wgpu:x", "cuda:", "tpu"] {
            let err = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(err.contains("wgpu:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn auto_never_picks_a_software_adapter_and_says_why() {
        let (spec, why) = auto();
        match spec {
            DeviceSpec::Cpu => {
                assert!(why.starts_with("cpu (CUDA: "), "{why}");
                assert!(wgpu_adapters().iter().all(|a| !a.is_gpu()), "{why}");
            }
            DeviceSpec::Wgpu(Some(i)) => assert!(wgpu_adapters()[i].is_gpu(), "{why}"),
            DeviceSpec::Cuda(0) => assert!(cuda_devices().unwrap() > 0),
            other => panic!("auto chose {other}"),
        }
    }
}
