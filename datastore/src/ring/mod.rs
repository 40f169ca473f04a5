//! The ring: this node's place among the servers of a chmpx ring, and the
//! steps that change it without losing a key (CONTRACTS.md §6–§7).
//!
//! | module   | what                                                          |
//! |----------|---------------------------------------------------------------|
//! | `view`   | this node as the steps see it ([`RingView`]), its status, the members' control addresses |
//! | `converge` | a member's ini and chmpx reaching every member              |
//! | `join`   | `SERVICEIN`, a lone node's join, k2hdkc attached again        |
//! | `leave`  | `SERVICEOUT` of this node (stop) or of a member (shrink)      |
//! | `merge`  | merging the whole ring, with its repairs                      |
//! | `rejoin` | a member back from a crash or reboot merges what it missed    |
//!
//! The cluster module above is the contract of the `k2hdkc_ring_*` guest
//! methods over these; the node uses them to stop, restart and resume.

pub mod converge;
pub mod join;
pub mod leave;
pub mod merge;
pub mod rejoin;
pub mod view;

pub use view::RingView;
