//! The login example driven in headless Chromium through WebDriver, on every
//! store: one test per store, each with a chromedriver of its own, one at a
//! time (a lock here for `cargo test`, a test group in `.config/nextest.toml`
//! for nextest, which runs each test in a process of its own).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_web::cookie::Key;
use actix_web::{App, HttpServer};
use fantoccini::{Client, ClientBuilder, Locator};
use latchkey::store::SessionStore as _;
use latchkey::{AnyStore, SessionMiddleware};
use latchkey_examples::login;
use latchkey_testkit::servers::{free_port, wait_for_port};
use latchkey_tests::on_every_store;

const CHROMIUM: &str = "/usr/bin/chromium";
const HOW_TO_INSTALL: &str = "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); scripts/test.sh does";

/// A chromedriver of this test's own, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_driver() -> (Driver, u16) {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: {HOW_TO_INSTALL}"
    );
    let port = free_port().unwrap();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run chromedriver ({e}): {HOW_TO_INSTALL}"));
    let driver = Driver(child);
    wait_for_port(port, Duration::from_secs(20)).expect("chromedriver listens");
    (driver, port)
}

async fn browser(driver_port: u16, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .unwrap_or_else(|e| panic!("chromedriver did not start a browser ({e}): {HOW_TO_INSTALL}"))
}

async fn page_text(client: &Client) -> String {
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn wait_for_path(client: &Client, path: &str) {
    for _ in 0..100 {
        if client.current_url().await.unwrap().path() == path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the browser never reached {path}; it is at {}",
        client.current_url().await.unwrap()
    );
}

on_every_store!(a_person_logs_in_and_out_in_a_real_browser);

/// Held by the browser test running in this process.
static ONE_BROWSER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

// The lock is held across awaits on purpose: each test runs on a runtime of
// its own thread, and waits for the others' whole runs.
#[allow(clippy::await_holding_lock)]
async fn a_person_logs_in_and_out_in_a_real_browser(store: AnyStore) {
    // Another test's failure poisons the lock, and must not fail this one.
    let _turn = ONE_BROWSER_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (_driver, driver_port) = start_driver();
    let backend = store.name();
    let sessions = SessionMiddleware::builder(store, Key::generate())
        .cookie_secure(false)
        .idle_timeout(login::DEFAULT_IDLE)
        .build()
        .unwrap();
    let server =
        HttpServer::new(move || App::new().wrap(sessions.clone()).configure(login::routes))
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let profile =
        std::env::temp_dir().join(latchkey_testkit::servers::unique_name("chromium_profile"));
    let client = browser(driver_port, &profile).await;
    client.goto(&format!("{base}/")).await.unwrap();
    client
        .find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys("ann@example.com")
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("correct horse")
        .await
        .unwrap();
    client
        .find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&client, "/admin").await;
    assert!(
        page_text(&client).await.contains("Hello ann@example.com"),
        "{backend}"
    );

    if std::env::var_os("LATCHKEY_SCREENSHOT").is_some() {
        std::fs::write(
            format!("login-{backend}.png"),
            client.screenshot().await.unwrap(),
        )
        .unwrap();
    }

    client
        .find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&client, "/").await;
    assert!(
        client.find(Locator::Id("email")).await.is_ok(),
        "{backend}: back on the login form"
    );
    client.goto(&format!("{base}/admin")).await.unwrap();
    assert!(
        page_text(&client).await.contains("Please login first."),
        "{backend}"
    );

    client.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    handle.stop(true).await;
}
