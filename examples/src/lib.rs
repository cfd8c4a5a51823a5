//! Runnable example flows for latchkey, one binary per flow.
//!
//! Each flow's routes and middleware live here as functions so that the binaries
//! and the HTTP tests build exactly the same app.
//!
//! | binary | what it shows |
//! | --- | --- |
//! | `counter` | the seed flow: count a visitor's requests |
//! | `login` | log in with a form (renewing the session id), greet, log out |
//! | `user` | the classic tutorial's routes: set a name, show it, log out |
//! | `devices` | log in from several clients, list them, log out the others |
//!
//! Every binary reads:
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `PORT` | port on 127.0.0.1 to listen on | `8080` |
//! | `LATCHKEY_STORE` | which store: `memory`, a `redis://host:port`, `redis-cluster://host:port,host:port` or `postgres://user@host/db` URL | `memory` |
//! | `LATCHKEY_KEY` | cookie key, at least 64 bytes of secret text | a fresh random key, with a warning |
//! | `LATCHKEY_SECURE_COOKIE` | `1` to mark the cookie `Secure` (behind TLS) | off, see below |
//! | `LATCHKEY_IDLE_SECS` (or `--idle SECONDS`) | idle timeout | 24 h; 260 s for `login` and `devices` |
//! | `RUST_LOG` | log filter | `info` |
//!
//! The examples serve plain HTTP on 127.0.0.1, so they turn the cookie's
//! `Secure` flag off: a client that honours it (curl, for one) would otherwise
//! never send the cookie back over `http://`. The library's default stays `Secure`.

pub mod counter;
pub mod devices;
pub mod html;
pub mod login;
pub mod support;
pub mod user;
