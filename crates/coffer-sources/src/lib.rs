//! Coffer's sources: each module turns one kind of source into repository streams and back.
//! File trees (`files`), and databases (`postgres`, `mysql`, `sqlite`, `redis`) over the
//! shared `database` layer.

pub mod database;
pub mod files;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sqlite;
