//! pvmux host runtime (placeholder).
