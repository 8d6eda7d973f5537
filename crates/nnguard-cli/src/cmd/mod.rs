//! Subcommands, one module each.

pub mod convert;
pub mod keygen;
pub mod scan;
pub mod sign;
pub mod verify;
