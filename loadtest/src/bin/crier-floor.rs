//! crier-floor: the floor measurement (work in progress).
fn main() {}
