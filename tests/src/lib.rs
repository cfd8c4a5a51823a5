//! HTTP flows through the real latchkey middleware; see the `tests/` folder.
