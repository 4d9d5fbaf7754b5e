// Rule 10: the state trait is sealed: no one outside the crate can invent a state.
fn main() {}
struct Bypass;
impl iommufd::State for Bypass {
    const NAME: &'static str = "Bypass";
}
