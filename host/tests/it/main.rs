//! Host integration tests: real components through the real runtime.
//! One binary, one module per area (see `tests/README.md`).

mod support;

mod crypto;
mod hostile;
mod http;
mod loading;
mod reference;
mod shadow;
mod swap;
mod trust;
mod watch;
