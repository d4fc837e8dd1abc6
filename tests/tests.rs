//! End-to-end tests of the `pactum` binary. One test binary with a module per area, so the
//! suite links once.

mod common;

mod backup;
mod commands;
mod crash;
mod damage;
mod data_files;
mod demo;
mod golden;
mod limits;
mod refusals;
mod semantics;
mod store_errors;
