//! swap
pub mod header;
