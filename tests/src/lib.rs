//! Helpers for pvmux integration tests (placeholder).
