//! The media bridge (SFU). See `api` for what the focus asks of it.

pub mod api;
