//! Backups of a node (issue: backups and restores through Trove's backup
//! API). Built up in pieces; so far the encryption of the stream.

pub mod crypt;
