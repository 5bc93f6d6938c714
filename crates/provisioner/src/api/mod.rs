//! The HTTP API.

pub mod health;
pub mod metrics;
