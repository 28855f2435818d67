//! Switchboard: the routing engine behind a contact center's *Ongoing record
//! conversations* view.
//!
//! A request flows HTTP → service → routing policy → store:
//!
//! - [`http`] (axum) authenticates the bearer token, checks the role, parses the body,
//!   path and query into domain values, and maps results to JSON or problem+json. It
//!   also serves the supervisor's web view (`web/`, compiled in), a client of the same API.
//! - [`service::Supervisor`] is one method per operation: assign, transfer, release,
//!   remove (one or in bulk), distribution, lifecycle events, the directory, candidates,
//!   statistics. It takes the routing snapshot in force once per request, decides
//!   eligibility off the store's writer, and commits with the facts the decision relied
//!   on as preconditions.
//! - [`routing`] holds the routing state in memory ([`routing::Directory`]: every
//!   representative and queue, compiled into the rules' columns and kept current by
//!   each write; [`routing::Backlog`]: the conversations not closed, per queue, for
//!   statistics and distribution) and decides which targets are eligible and how they
//!   rank (no rules: all).
//! - [`store`] applies each change in one durable transaction (SQLite, group commit),
//!   running the status table of [`domain`] inside it and re-checking the decision's
//!   preconditions, and serves reads. It knows no routing policy.
//!
//! [`domain`] is pure data and rules of the status model; it does no I/O.
//! [`bench`] is the `switchboard bench` load generator, an HTTP client of the daemon.

pub mod auth;
pub mod bench;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod http;
pub mod output;
pub mod plugins;
pub mod plugintest;
pub mod reload;
pub mod replay;
pub mod routing;
pub mod rules;
pub mod ruletest;
pub mod scaffold;
pub mod seed;
pub mod service;
pub mod store;
