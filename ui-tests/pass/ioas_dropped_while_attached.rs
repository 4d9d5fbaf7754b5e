// Rule 9, made impossible instead: an attached device holds a handle on its IOAS,
// so dropping the caller's handle compiles and the IOAS lives on until the
// device detaches (the guest test `ioas_handle_dropped_while_attached` shows DMA still works).
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables)]
fn case() -> Result<(), Box<dyn std::error::Error>> {
    let fd = Iommufd::open()?;
    let ioas = fd.alloc_ioas()?;
    let dev = Device::open("0000:00:02.0")?.bind(&fd)?.attach(&ioas)?;
    drop(ioas);
    let still_there: &Ioas = dev.ioas();
    Ok(())
}
