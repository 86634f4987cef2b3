//! Which device the encoders run on.

use std::str::FromStr;

use candle_core::Device;

use crate::EmbedError;

/// The device setting: `cpu` (the default), `cuda[:N]` or `metal[:N]`. The GPU choices work
/// in builds with the matching cargo feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Cpu,
    Cuda(usize),
    Metal(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, ordinal) = match s.split_once(':') {
            Some((k, n)) => (
                k,
                n.parse::<usize>()
                    .map_err(|_| format!("device ordinal in {s:?} must be a number"))?,
            ),
            None => (s, 0),
        };
        match kind {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(ordinal)),
            "metal" => Ok(DeviceChoice::Metal(ordinal)),
            _ => Err(format!(
                "unknown device {s:?}: expected cpu, cuda[:N] or metal[:N]"
            )),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceChoice::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Opens the device; a GPU choice in a build without its feature is a clear error.
    pub fn open(self) -> Result<Device, EmbedError> {
        let device = match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) => Device::new_cuda(n),
            DeviceChoice::Metal(n) => Device::new_metal(n),
        };
        device.map_err(|e| EmbedError::Device {
            device: self.to_string(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_settings() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:1".parse(), Ok(DeviceChoice::Cuda(1)));
        assert_eq!("metal:0".parse(), Ok(DeviceChoice::Metal(0)));
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }
}
