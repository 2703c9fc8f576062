// Placeholder until the coordination benches land.
fn main() {}
