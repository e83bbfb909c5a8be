//! PLACEHOLDER replaced by the proxy14 branch.
pub mod discover;
