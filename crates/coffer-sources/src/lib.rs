//! Coffer's sources: each module turns one kind of source into repository streams and back.
//! For now: file trees.

pub mod files;
