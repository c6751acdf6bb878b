//! crier — a real-time connection hub.
pub mod hub;
