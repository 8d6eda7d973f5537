//! Subcommands, one module each.

pub mod assess;
pub mod attack;
pub mod bench;
pub mod certify;
pub mod common;
pub mod convert;
pub mod data;
pub mod defended;
pub mod detect;
pub mod eval;
pub mod info;
pub mod keygen;
pub mod predict;
pub mod report;
pub mod scan;
pub mod sign;
pub mod train;
pub mod verify;
