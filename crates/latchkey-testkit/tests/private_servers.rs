//! The private servers start, answer, and leave nothing behind when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;

use latchkey_testkit::servers::PrivatePostgres;

#[test]
fn a_private_postgres_serves_until_dropped() {
    let server = PrivatePostgres::start().expect("a private PostgreSQL");
    let port = server.port();
    assert!(server.url().ends_with(&format!(":{port}/postgres")));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(server);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens after the drop"
    );
}
