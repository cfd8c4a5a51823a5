//! Two application processes behind one store: a login on one is valid on the
//! other, increments split across both stay exact, and "log out everywhere else"
//! on one is seen by the other at once. On Redis, a Redis Cluster and
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_web::cookie::Cookie;
use latchkey_testkit::servers::{
    PrivateRedis, PrivateRedisCluster, database_url, free_port, unique_name, wait_for_port,
};

const KEY: &str =
    "multi-instance-test-key-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUV";

/// An application process, killed on drop.
struct Instance {
    child: Child,
    base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(store: &str) -> Instance {
    start_with(store, &[])
}

/// An instance on `store`, with `args` added to its command line.
fn start_with(store: &str, args: &[&str]) -> Instance {
    let port = free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_instance"))
        .args(args)
        .env("LATCHKEY_STORE", store)
        .env("LATCHKEY_KEY", KEY)
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let instance = Instance {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    wait_for_port(port, Duration::from_secs(30)).expect("the instance starts");
    instance
}

/// The CSRF token a page's forms carry.
fn form_token(page: &str) -> String {
    let field = r#"name="csrf_token" value=""#;
    let start = page.find(field).expect("a form with a token") + field.len();
    let len = page[start..].find('"').expect("a closed attribute");
    page[start..start + len].to_owned()
}

/// Opens the login form (which gives a session and its CSRF token), then logs in.
async fn login(client: &awc::Client, instance: &Instance, email: &str) -> Cookie<'static> {
    let mut form = client
        .get(format!("{}/", instance.base))
        .send()
        .await
        .unwrap();
    let visitor = form.cookie("id").expect("the form's session").into_owned();
    let token = form_token(std::str::from_utf8(&form.body().await.unwrap()).unwrap());
    let res = client
        .post(format!("{}/login", instance.base))
        .cookie(visitor)
        .send_form(&[
            ("csrf_token", token.as_str()),
            ("email", email),
            ("password", "pw"),
        ])
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    res.cookie("id").expect("logged in").into_owned()
}

async fn page(
    client: &awc::Client,
    instance: &Instance,
    path: &str,
    cookie: &Cookie<'static>,
) -> String {
    let mut res = client
        .get(format!("{}{path}", instance.base))
        .cookie(cookie.clone())
        .send()
        .await
        .unwrap();
    String::from_utf8(res.body().await.unwrap().to_vec()).unwrap()
}

async fn two_instances_share_sessions(name: &str, store: &str) {
    let (a, b) = (start(store), start(store));
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(64))
        .disable_redirects()
        .finish();
    let email = format!("{}@example.com", unique_name("multi"));

    let laptop = login(&client, &a, &email).await;
    assert!(
        page(&client, &b, "/admin", &laptop)
            .await
            .contains(&format!("Hello {email}")),
        "{name}: a login on A works on B"
    );

    // Increments split across both instances, all at once.
    let mut first = client
        .get(format!("{}/counter/", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        first.body().await.unwrap(),
        latchkey_examples::counter::FIRST_VISIT
    );
    let counter = first.cookie("id").unwrap().into_owned();
    let requests = (0..64).map(|i| {
        let instance = if i % 2 == 0 { &a } else { &b };
        let request = client
            .get(format!("{}/counter/", instance.base))
            .cookie(counter.clone());
        async move {
            let res = request.send().await.unwrap();
            assert!(res.status().is_success(), "status {}", res.status());
        }
    });
    futures_util::future::join_all(requests).await;
    assert_eq!(
        page(&client, &b, "/counter/", &counter).await,
        "Number of visits: 66",
        "{name}: 64 increments over two instances, none lost"
    );

    // Log out everywhere else from A: the phone, logged in on B, is out at once.
    let phone = login(&client, &b, &email).await;
    assert!(page(&client, &b, "/admin", &phone).await.contains("Hello"));
    let token = form_token(&page(&client, &a, "/sessions", &laptop).await);
    let res = client
        .post(format!("{}/sessions/revoke-others", a.base))
        .cookie(laptop.clone())
        .send_form(&[("csrf_token", token.as_str())])
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(
        page(&client, &b, "/admin", &phone)
            .await
            .contains("Please login first."),
        "{name}: revoked on B at once"
    );
    assert!(
        page(&client, &b, "/admin", &laptop).await.contains("Hello"),
        "{name}: the laptop stays, seen from B"
    );
}

#[actix_rt::test]
async fn on_redis() {
    let redis = PrivateRedis::start().unwrap();
    two_instances_share_sessions("redis", &redis.url()).await;
}

#[actix_rt::test]
async fn on_a_redis_cluster() {
    let cluster = PrivateRedisCluster::start().unwrap();
    let nodes: Vec<String> = cluster
        .urls()
        .iter()
        .map(|u| u.trim_start_matches("redis://").to_owned())
        .collect();
    two_instances_share_sessions(
        "redis cluster",
        &format!("redis-cluster://{}", nodes.join(",")),
    )
    .await;
}

#[actix_rt::test]
async fn on_postgres() {
    two_instances_share_sessions("postgres", &database_url()).await;
}

/// The session counters are served only on the metrics port, when one is
/// given, never on the application's own port.
#[actix_web::test]
async fn metrics_are_served_only_on_their_own_port() {
    let client = awc::Client::default();
    let public = start("memory");
    let res = client
        .get(format!("{}/metrics", public.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "no counters on the public port");

    let metrics_port = free_port().unwrap();
    let instance = start_with("memory", &["--metrics-port", &metrics_port.to_string()]);
    wait_for_port(metrics_port, Duration::from_secs(30)).unwrap();
    let res = client
        .get(format!("{}/counter/", instance.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut res = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(
        text.contains("latchkey_sessions_created_total 1"),
        "the counter request's session is counted:\n{text}"
    );
    let res = client
        .get(format!("{}/metrics", instance.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "still none on the public port");
}
