//! The HTTP API.

pub mod auth;
