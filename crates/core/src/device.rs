//! Devices: a DLPack device type plus an ordinal, with the names users type (`"cuda:0"`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::ffi::{DLDevice, DLDeviceType};

/// Where a tensor's memory lives.
///
/// `kind` may hold a device type this crate does not know (it came from outside); such a
/// device is refused when a tensor is imported, and prints as `unknown(N)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Device {
    /// The DLPack device type.
    pub kind: DLDeviceType,
    /// The device ordinal (0 for CPU, pinned and managed memory).
    pub id: i32,
}

/// `(type, name)` for every known device type; `kind_name` and `FromStr` share it.
const NAMES: &[(DLDeviceType, &str)] = &[
    (DLDeviceType::CPU, "cpu"),
    (DLDeviceType::CUDA, "cuda"),
    (DLDeviceType::CUDAHOST, "cuda_host"),
    (DLDeviceType::OPENCL, "opencl"),
    (DLDeviceType::VULKAN, "vulkan"),
    (DLDeviceType::METAL, "metal"),
    (DLDeviceType::VPI, "vpi"),
    (DLDeviceType::ROCM, "rocm"),
    (DLDeviceType::ROCMHOST, "rocm_host"),
    (DLDeviceType::EXTDEV, "ext_dev"),
    (DLDeviceType::CUDAMANAGED, "cuda_managed"),
    (DLDeviceType::ONEAPI, "oneapi"),
    (DLDeviceType::WEBGPU, "webgpu"),
    (DLDeviceType::HEXAGON, "hexagon"),
    (DLDeviceType::MAIA, "maia"),
    (DLDeviceType::TRN, "trn"),
];

impl Device {
    /// Host memory (`kDLCPU`, ordinal 0).
    pub const CPU: Device = Device { kind: DLDeviceType::CPU, id: 0 };

    /// CUDA device memory on GPU `id`.
    pub const fn cuda(id: i32) -> Device {
        Device { kind: DLDeviceType::CUDA, id }
    }

    /// A device of any type.
    pub const fn new(kind: DLDeviceType, id: i32) -> Device {
        Device { kind, id }
    }

    /// Whether the CPU may read and write this memory directly: `kDLCPU`, `kDLCUDAHost` and
    /// `kDLROCMHost` (pinned host memory is ordinary host memory to the CPU).
    ///
    /// `kDLCUDAManaged` is deliberately **not** host-addressable here. Managed memory can be
    /// dereferenced by the CPU only while no kernel may be touching it, and on devices without
    /// `concurrentManagedAccess` (pre-Pascal GPUs, Windows, some virtualised setups) a CPU
    /// access during a kernel is a segfault. Making that safe takes a stream synchronisation,
    /// which belongs to the CUDA layer, not to a metadata check; so such tensors are treated
    /// like device memory and read through an explicit copy.
    pub const fn is_cpu(self) -> bool {
        matches!(self.kind, DLDeviceType::CPU | DLDeviceType::CUDAHOST | DLDeviceType::ROCMHOST)
    }

    /// Whether the device type is one DLPack 1.3 defines.
    pub const fn is_known(self) -> bool {
        self.kind.is_known()
    }

    /// The short lower-case name of the device type: `"cpu"`, `"cuda"`, `"cuda_host"`,
    /// `"opencl"`, `"vulkan"`, `"metal"`, `"vpi"`, `"rocm"`, `"rocm_host"`, `"ext_dev"`,
    /// `"cuda_managed"`, `"oneapi"`, `"webgpu"`, `"hexagon"`, `"maia"`, `"trn"`, or
    /// `"unknown"`.
    pub fn kind_name(self) -> &'static str {
        NAMES.iter().find(|(kind, _)| *kind == self.kind).map_or("unknown", |(_, name)| name)
    }

    /// The DLPack form.
    pub const fn to_dlpack(self) -> DLDevice {
        DLDevice { device_type: self.kind, device_id: self.id }
    }

    /// Device types whose ordinal is always 0 print without it (`"cpu"`, not `"cpu:0"`).
    const fn id_is_implicit(self) -> bool {
        self.id == 0
            && matches!(
                self.kind,
                DLDeviceType::CPU
                    | DLDeviceType::CUDAHOST
                    | DLDeviceType::ROCMHOST
                    | DLDeviceType::CUDAMANAGED
            )
    }
}

impl From<DLDevice> for Device {
    fn from(d: DLDevice) -> Device {
        Device { kind: d.device_type, id: d.device_id }
    }
}

impl From<Device> for DLDevice {
    fn from(d: Device) -> DLDevice {
        d.to_dlpack()
    }
}

impl fmt::Display for Device {
    /// `cpu`, `cuda_host`, `cuda:0`, `rocm:1`, `unknown(99):0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_known() {
            return write!(f, "unknown({}):{}", self.kind.0, self.id);
        }
        if self.id_is_implicit() {
            f.write_str(self.kind_name())
        } else {
            write!(f, "{}:{}", self.kind_name(), self.id)
        }
    }
}

impl FromStr for Device {
    type Err = Error;

    /// Parses `"<kind>"` or `"<kind>:<id>"` where `<kind>` is a [`Device::kind_name`]
    /// (`"cpu"`, `"cuda"`, `"cuda:1"`, `"cuda_host"`); a missing id means 0.
    ///
    /// # Errors
    ///
    /// `ERR_INVALID_ARGUMENT` for an unknown kind, an id that is not a non-negative integer,
    /// or an empty string.
    fn from_str(s: &str) -> Result<Device> {
        let bad = || {
            Error::invalid_argument(format!(
                "device {s:?} is not recognised; use \"cpu\", \"cuda\", \"cuda:N\" (N >= 0) or \
                 another DLPack device name such as \"cuda_host\""
            ))
        };
        let (kind_str, id) = match s.split_once(':') {
            None => (s, 0),
            Some((kind, id)) => {
                let valid_digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
                let id: i32 = id.parse().ok().filter(|_| valid_digits).ok_or_else(bad)?;
                (kind, id)
            }
        };
        let kind = NAMES
            .iter()
            .find(|(_, name)| *name == kind_str)
            .map(|(kind, _)| *kind)
            .ok_or_else(bad)?;
        Ok(Device { kind, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_omits_the_ordinal_only_where_it_is_always_zero() {
        assert_eq!(Device::CPU.to_string(), "cpu");
        assert_eq!(Device::cuda(0).to_string(), "cuda:0");
        assert_eq!(Device::cuda(3).to_string(), "cuda:3");
        assert_eq!(Device::new(DLDeviceType::CUDAHOST, 0).to_string(), "cuda_host");
        assert_eq!(Device::new(DLDeviceType(99), 0).to_string(), "unknown(99):0");
    }

    #[test]
    fn parses_cpu_cuda_and_cuda_with_ordinal() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::CPU);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::cuda(0));
        assert_eq!("cuda:7".parse::<Device>().unwrap(), Device::cuda(7));
        assert_eq!("cuda_host".parse::<Device>().unwrap(), Device::new(DLDeviceType::CUDAHOST, 0));
    }

    #[test]
    fn display_and_parse_round_trip_for_every_known_kind() {
        for &kind in DLDeviceType::ALL {
            for id in [0, 2] {
                let d = Device::new(kind, id);
                assert_eq!(d.to_string().parse::<Device>().unwrap(), d, "{d}");
            }
        }
    }

    #[test]
    fn junk_device_strings_are_invalid_arguments() {
        for s in [
            "",
            "gpu",
            "CUDA",
            "cuda:",
            "cuda:-1",
            "cuda:+1",
            "cuda:x",
            "cuda:1:2",
            " cpu",
            "cuda:99999999999",
        ] {
            let err = s.parse::<Device>().unwrap_err();
            assert_eq!(err.code(), "ERR_INVALID_ARGUMENT", "{s:?}");
        }
    }

    #[test]
    fn host_addressable_devices_are_cpu_pinned_cuda_and_pinned_rocm() {
        let host: Vec<_> =
            DLDeviceType::ALL.iter().filter(|k| Device::new(**k, 0).is_cpu()).collect();
        assert_eq!(host, [&DLDeviceType::CPU, &DLDeviceType::CUDAHOST, &DLDeviceType::ROCMHOST]);
        assert!(!Device::new(DLDeviceType::CUDAMANAGED, 0).is_cpu());
    }

    #[test]
    fn dlpack_conversion_round_trips() {
        let d = Device::cuda(1);
        assert_eq!(Device::from(d.to_dlpack()), d);
        assert_eq!(DLDevice::from(d).device_type, DLDeviceType::CUDA);
        assert_eq!(Device::new(DLDeviceType(42), 0).kind_name(), "unknown");
    }
}
