//! simbatch engine: the use-case facade and the background machinery.
//!
//! - [`service`]: the use cases (submit, read, cancel, retry, single orders)
//!   that the native API and every dialect call; knows no HTTP.
//! - [`worker`]: claim, execute, complete, under leases.
//! - [`sweeper`]: retention and expired-key sweeping.
//! - [`webhooks`]: the outbox dispatcher (Standard Webhooks signing).
//! - [`push`]: dialect push formats the dispatcher renders (Smarthub notifications).

pub mod push;
pub mod service;
pub mod sweeper;
pub mod webhooks;
pub mod worker;
