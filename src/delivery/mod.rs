//! Outgoing HTTP: preparing each attempt (headers, signatures) and sending it with one shared
//! client, within the overall and per-host limits.

mod http;
mod request;

pub use http::HttpSender;
pub use request::{PreparedRequest, Signer, prepare};
