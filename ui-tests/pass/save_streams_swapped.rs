// Twin of compile-fail/save_streams_swapped.rs: swapping the borrowing views swaps nothing but the views; each still reads its own device's stream.
use iommufd::migration::PreCopy;
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(mut a: Migration<PreCopy, Attached>, mut b: Migration<PreCopy, Attached>) {
    std::mem::swap(&mut a.stream(), &mut b.stream());
}
