//! Outgoing HTTP: preparing each attempt (headers, signatures, credentials) and sending it with
//! one shared client, within the overall and per-host limits and only to allowed addresses.

mod client;
pub mod credentials;
mod guard;
mod http;
mod request;

pub use client::{DeliveryClient, SignerCache};
pub use credentials::{ChallengeCache, CraResult, OAuthClient, TokenCache};
pub use guard::{TargetPolicy, special_kind};
pub use http::{Exchange, HttpSender};
pub use request::{PreparedRequest, Signer, prepare, seal_credentials};
