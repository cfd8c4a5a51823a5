//! Support for the HTTP flow tests in `tests/`: the stores every flow runs
//! against, and store wrappers that count or fail calls.

pub mod http;
pub mod stores;
