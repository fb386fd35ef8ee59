//! Domain rules as plain functions: no database, no HTTP. Resolvers and workers both reach
//! them through the services in `crate::service`, and unit tests reach them directly.

pub mod breaker;
pub mod filter;
pub mod headers;
pub mod item;
pub mod itemtype;
pub mod matching;
pub mod outcome;
pub mod payload;
pub mod render;
pub mod retry;
pub mod signing;
pub mod target;
pub mod template;
pub mod tree;
pub mod webhook;
