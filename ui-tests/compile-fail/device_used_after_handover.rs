// Rule 20: a device handed over to another process is gone from this one: the handover owns it, and a successful send forgets it without detaching or unbinding.
use iommufd::handover::Handover;
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(dev: Device<Attached<Ioas>>, fd: Iommufd, sock: std::os::unix::net::UnixStream) -> Result<(), Box<dyn std::error::Error>> {
    let mut h = Handover::new(fd).map_err(Error::from)?;
    h.device(dev).map_err(Error::from)?;
    h.send(&sock).map_err(Error::from)?;
    let id = dev.mmio(0)?.read32(0)?;
    Ok(())
}
