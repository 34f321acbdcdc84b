//! pvmux world switch (placeholder).
#![no_std]
