// Twin of compile-fail/implement_state.rs: the crate's own states satisfy the bound.
fn main() {}
#[allow(dead_code)]
fn name<S: iommufd::State>() -> &'static str {
    S::NAME
}
#[allow(dead_code)]
fn names() -> [&'static str; 2] {
    [name::<iommufd::Unbound>(), name::<iommufd::BlockDma>()]
}
