#![allow(dead_code)]
pub mod five_steps;
