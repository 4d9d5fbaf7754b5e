// Twin of compile-fail/device_used_after_handover.rs: the device is used before it is handed over.
use iommufd::handover::Handover;
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: Device<Attached<Ioas>>, fd: Iommufd, sock: std::os::unix::net::UnixStream) -> Result<(), Box<dyn std::error::Error>> {
    let id = dev.mmio(0)?.read32(0)?;
    let mut h = Handover::new(fd).map_err(Error::from)?;
    h.device(dev).map_err(Error::from)?;
    h.send(&sock).map_err(Error::from)?;
    Ok(())
}
