//! What several of this crate's test files do to a private server.

#![allow(clippy::unwrap_used)]

/// Empties the script cache of the server at `url`, as a restart or a
/// failover to a replica that never saw the scripts would.
pub(crate) async fn flush_script_cache(url: &str) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}
