//! The conference focus at `focus.<host>` (what Jicofo is to Jitsi):
//! `jingle` speaks the wire dialect, `conference` keeps one meeting's
//! state sans IO, and `service` plugs both into the hub.

pub mod cascade;
pub mod colibri2;
pub mod conference;
pub mod jingle;
pub mod service;

pub use service::{FocusSettings, SERVICE, install};
