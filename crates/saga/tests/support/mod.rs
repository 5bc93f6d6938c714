#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
pub mod five_steps;
pub mod journals;
pub mod scripted;
