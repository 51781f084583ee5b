//! The services layer: the router, client sessions and one module per XEP
//! area, over the sans-IO core and the store traits. No sockets here: the
//! runtime hands sessions a [`transport::Transport`].

pub mod component;
pub mod config;
pub mod hub;
pub mod limits;
pub mod modules;
pub mod requests;
pub mod resumption;
pub mod router;
pub mod session;
pub mod transport;

pub use config::Config;
pub use hub::Server;

/// The maps on the per-stanza path (sessions, block lists, archive
/// preferences, domains): foldhash is several times cheaper than SipHash
/// on short keys and still seeded per process, so keys chosen by users
/// cannot be made to collide.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
