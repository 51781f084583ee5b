//! The sans-IO XMPP core: everything here is a pure function or a state
//! machine that takes input and returns output, so it is tested without a
//! socket (as str0m and quinn-proto are). The services layer drives it.

pub mod component;
pub mod forms;
pub mod framing;
pub mod invite;
mod lexer;
pub mod ns;
pub mod sasl;
pub mod sm;
pub mod stanza;
pub mod stream;
pub mod time;
mod tree;

pub use minidom::Element;
