//! Subcommands, one module each.

pub mod assess;
pub mod bench;
pub mod certify;
pub mod common;
pub mod convert;
pub mod data;
pub mod info;
pub mod keygen;
pub mod predict;
pub mod scan;
pub mod sign;
pub mod train;
pub mod verify;
