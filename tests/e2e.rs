//! End-to-end tests: the built rule component and hostile test components, through the
//! harness library and the `rule-harness` executable.

mod batches;
mod cache;
mod cli;
mod formats;
mod memory;
mod pipelines;
mod platform;
mod reliability;
mod sandbox;
mod state;
mod support;
