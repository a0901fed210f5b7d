//! End-to-end tests and the demo federation live in `tests/` and `examples/`.
#![forbid(unsafe_code)]
