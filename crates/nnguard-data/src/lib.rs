//! nnguard data
