// Rule 18: a data stream lives in its state; a state lends it out only as a borrowing `SaveStream`, never as `&mut` to what owns it, so two devices' streams cannot be swapped.
use iommufd::migration::PreCopy;
use iommufd::*;
fn main() {}
#[allow(dead_code, unused_variables, unused_mut)]
fn case(mut a: Migration<PreCopy, Attached>, mut b: Migration<PreCopy, Attached>) {
    std::mem::swap(a.stream(), b.stream());
}
