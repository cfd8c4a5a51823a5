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
//! Every binary takes these options (`--help` lists them), each also from the
//! environment:
//!
//! | option | variable | meaning | default |
//! | --- | --- | --- | --- |
//! | `--port` | `PORT` | port on 127.0.0.1 to listen on | `8080` |
//! | `--store` | `LATCHKEY_STORE` | which store: `memory`, a `redis://host:port`, `redis-cluster://host:port,host:port` or `postgres://user@host/db` URL | `memory` |
//! | `--key` | `LATCHKEY_KEY` | cookie key, at least 64 bytes of secret text | a fresh random key, with a warning |
//! | `--secure-cookie` | `LATCHKEY_SECURE_COOKIE` | mark the cookie `Secure` (behind TLS) | off, see below |
//! | `--idle SECONDS` | `LATCHKEY_IDLE_SECS` | idle timeout | 24 h; 260 s for `login` and `devices` |
//! | `--metrics-port PORT` | `LATCHKEY_METRICS_PORT` | serve the session counters at `/metrics` on this separate port | not served |
//! | | `RUST_LOG` | log filter | `info` |
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
