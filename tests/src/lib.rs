//! Support for the HTTP flow tests in `tests/`: the stores every flow runs
//! against, and store wrappers that count or fail calls.

pub mod http;
pub mod stores;

/// Expands to one test per store for each named `async fn(AnyStore)`, in
/// modules `memory`, `redis` and `postgres`, so a failing store does not hide
/// the others.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[actix_web::test]
            async fn $name() {
                super::$name(latchkey::AnyStore::new(latchkey::memory::MemoryStore::new())).await;
            })*
        }
        mod redis {
            $(#[actix_web::test]
            async fn $name() {
                super::$name(latchkey::AnyStore::new(latchkey_tests::stores::redis_store().await)).await;
            })*
        }
        mod postgres {
            $(#[actix_web::test]
            async fn $name() {
                super::$name(latchkey::AnyStore::new(latchkey_tests::stores::postgres_store().await)).await;
            })*
        }
    };
}
