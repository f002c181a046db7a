//! scheduler tests (placeholder until the scheduler lands).
