//! The conference focus at `focus.<host>` (what Jicofo is to Jitsi).

pub mod jingle;
