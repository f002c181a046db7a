//! What a repository's objects hold, byte for byte (`docs/format.md`): pack files and their
//! trailers ([`pack`]), index files ([`index`]), trees ([`tree`]), key files ([`keyfile`]) and
//! the config ([`config`]). Each module encodes and decodes its object and checks what it reads
//! (lengths capped, versions and ids verified); none of them does I/O.

pub mod config;
pub mod index;
pub mod keyfile;
pub mod pack;
pub mod tree;
