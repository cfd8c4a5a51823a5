//! Property: for any two requests' operations, when request B saves while
//! request A is in flight, the session ends as the documented merge rule says:
//! A's operations replayed, in order, on B's result.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::cookie::{Cookie, Key};
use actix_web::test as actix_test;
use actix_web::{App, HttpResponse, web};
use latchkey::{Session, SessionMiddleware, memory::MemoryStore};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Op {
    Insert(String, i64),
    Remove(String),
    Increment(String),
    Clear,
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (key(), -5i64..5).prop_map(|(k, v)| Op::Insert(k, v)),
        key().prop_map(Op::Remove),
        key().prop_map(Op::Increment),
        Just(Op::Clear),
    ]
}

fn apply_model(state: &mut BTreeMap<String, i64>, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Insert(k, v) => {
                state.insert(k.clone(), *v);
            }
            Op::Remove(k) => {
                state.remove(k);
            }
            Op::Increment(k) => {
                *state.entry(k.clone()).or_insert(0) += 1;
            }
            Op::Clear => state.clear(),
        }
    }
}

fn apply_session(session: &Session, ops: &[Op]) -> Result<(), latchkey::Error> {
    for op in ops {
        match op {
            Op::Insert(k, v) => session.insert(k.clone(), v)?,
            Op::Remove(k) => {
                session.remove(k);
            }
            Op::Increment(k) => {
                session.update(k.clone(), |n: Option<i64>| n.unwrap_or(0) + 1)?;
            }
            Op::Clear => session.clear(),
        }
    }
    Ok(())
}

async fn run(
    base: Vec<Op>,
    a: Vec<Op>,
    b: Vec<Op>,
) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let gate = Arc::new(Notify::new());
    let loaded = Arc::new(Notify::new());
    let (gate_in, loaded_in) = (Arc::clone(&gate), Arc::clone(&loaded));
    let app = actix_test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(MemoryStore::new(), Key::generate())
                    .cookie_secure(false)
                    .build()
                    .unwrap(),
            )
            .route(
                "/apply",
                web::post().to(|session: Session, ops: web::Json<Vec<Op>>| async move {
                    session.insert("_", 0)?;
                    apply_session(&session, &ops)?;
                    Ok::<_, latchkey::Error>(HttpResponse::Ok().finish())
                }),
            )
            .route(
                "/base",
                web::post().to(|session: Session, ops: web::Json<Vec<Op>>| async move {
                    apply_session(&session, &ops)?;
                    // Always leave something, so the session exists.
                    session.insert("_", 0)?;
                    Ok::<_, latchkey::Error>(HttpResponse::Ok().finish())
                }),
            )
            .route(
                "/slow",
                web::post().to(move |session: Session, ops: web::Json<Vec<Op>>| {
                    let (gate, loaded) = (Arc::clone(&gate_in), Arc::clone(&loaded_in));
                    async move {
                        apply_session(&session, &ops)?;
                        loaded.notify_one();
                        gate.notified().await;
                        Ok::<_, latchkey::Error>(HttpResponse::Ok().finish())
                    }
                }),
            )
            .route(
                "/state",
                web::get().to(|session: Session| async move {
                    let mut entries = session.entries();
                    entries.remove("_");
                    HttpResponse::Ok().json(entries)
                }),
            ),
    )
    .await;
    let res = actix_test::call_service(
        &app,
        actix_test::TestRequest::post()
            .uri("/base")
            .set_json(&base)
            .to_request(),
    )
    .await;
    let cookie: Cookie<'static> = res
        .response()
        .cookies()
        .find(|c| c.name() == "id")
        .unwrap()
        .into_owned();
    let slow = async {
        actix_test::call_service(
            &app,
            actix_test::TestRequest::post()
                .uri("/slow")
                .cookie(cookie.clone())
                .set_json(&a)
                .to_request(),
        )
        .await;
    };
    let fast = async {
        loaded.notified().await;
        actix_test::call_service(
            &app,
            actix_test::TestRequest::post()
                .uri("/apply")
                .cookie(cookie.clone())
                .set_json(&b)
                .to_request(),
        )
        .await;
        gate.notify_one();
    };
    tokio::join!(slow, fast);
    let res = actix_test::call_service(
        &app,
        actix_test::TestRequest::get()
            .uri("/state")
            .cookie(cookie.clone())
            .to_request(),
    )
    .await;
    let actual: BTreeMap<String, i64> = actix_test::read_body_json(res).await;

    // The model tracks the routes' "_" key too, as the session does.
    let filler = || [Op::Insert("_".into(), 0)];
    let mut expected = BTreeMap::new();
    apply_model(&mut expected, &base);
    apply_model(&mut expected, &filler());
    // A request whose changes leave the session as it loaded it writes nothing:
    // it takes effect before the other, which then changes the session alone.
    let mut a_alone = expected.clone();
    apply_model(&mut a_alone, &a);
    let a_writes = a_alone != expected;
    apply_model(&mut expected, &filler());
    apply_model(&mut expected, &b);
    if a_writes {
        apply_model(&mut expected, &a);
    }
    expected.remove("_");
    (actual, expected)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_changes_merge_by_replaying_the_later_writer_unless_it_changed_nothing(
        base in prop::collection::vec(op(), 0..4),
        a in prop::collection::vec(op(), 0..6),
        b in prop::collection::vec(op(), 0..6),
    ) {
        let (actual, expected) = actix_rt::System::new().block_on(run(base, a, b));
        prop_assert_eq!(actual, expected);
    }
}
