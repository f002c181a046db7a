//! prune tests (placeholder until prune lands).
