//! The client stack: the provision and deprovision sagas over the four providers, the
//! templates they apply, configuration, the CLI and (later) the HTTP API. It knows the
//! providers only through `providers` and durability only through `saga`.

pub mod api;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod event_feed;
pub mod journal_outage;
pub mod local_postgres;
pub mod logging;
pub mod manifest;
pub mod migrate;
pub mod notify;
pub mod outcome;
pub mod progress;
pub mod record;
pub mod sagas;
pub mod stack;
pub mod steps;
pub mod templates;
pub mod tenant_db;
