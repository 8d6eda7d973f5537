//! nnguard model
