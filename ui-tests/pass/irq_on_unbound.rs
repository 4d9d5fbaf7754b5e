// Twin of compile-fail/irq_on_unbound.rs: bound first.
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let dev = Device::open("0000:00:02.0")?.bind(&fd)?;
    let ev = EventFd::new()?;
    dev.set_irq_eventfds(pci::MSI_IRQ, 0, &[std::os::fd::AsFd::as_fd(&ev)])?;
    Ok(())
}
