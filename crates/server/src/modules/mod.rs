//! One module per XEP area, each exposing one `MODULE` (what it handles
//! and advertises). Routing-level behaviour (presence, messages) has its
//! entry points called by the hub directly.

pub mod adhoc;
pub mod avatar;
pub mod blocking;
pub mod caps;
pub mod carbons;
pub mod disco;
pub mod extdisco;
pub mod forms;
pub mod invites;
pub mod legacy_session;
pub mod mam;
pub mod message;
pub mod muc;
pub mod pep;
pub mod ping;
pub mod presence;
pub mod private;
pub mod push;
pub mod register;
pub mod retention;
pub mod retraction;
pub mod roster;
pub mod time;
pub mod upload;
pub mod vcard;
pub mod version;

use crate::hub::Module;

/// Every module the server knows, in disco order.
pub const ALL: &[&Module] = &[
    &roster::MODULE,
    &message::MODULE,
    &carbons::MODULE,
    &blocking::MODULE,
    &push::MODULE,
    &mam::MODULE,
    &retraction::MODULE,
    &ping::MODULE,
    &version::MODULE,
    &time::MODULE,
    &vcard::MODULE,
    &pep::MODULE,
    &avatar::MODULE,
    &private::MODULE,
    &register::MODULE,
    &extdisco::MODULE,
    &disco::MODULE,
    &adhoc::MODULE,
    &legacy_session::MODULE,
];

/// Services on domains of their own under each host.
pub const SERVICES: &[&crate::hub::Service] =
    &[&muc::SERVICE, &muc::lobby::SERVICE, &upload::SERVICE];

pub(crate) fn always(_: &crate::config::Config) -> bool {
    true
}
