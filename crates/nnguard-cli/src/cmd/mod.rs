//! Subcommands, one module each.

pub mod convert;
pub mod scan;
