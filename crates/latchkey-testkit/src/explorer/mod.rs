//! The interleaving explorer: concurrent requests through the real latchkey
//! middleware, every interleaving of their store calls, each run checked
//! against the invariants of exact sessions.
//!
//! A [`Scenario`] names a few requests, each a short script of session
//! [`Step`]s run by one handler, and out-of-band [`Action`]s (an admin's
//! delete, "log out everywhere", an expiry) on one logged-in session. Every
//! request runs through its own `SessionMiddleware` on its own view of the
//! store, as if each were served by a different application instance: nothing
//! in the process coordinates them, only the store. Each store call waits at a
//! gate until the scheduler releases it, one at a time, so a run is one
//! interleaving of all the calls, and the explorer walks them:
//! [`Exploration::Exhaustive`] enumerates every interleaving (depth-first over
//! the scheduler's choices), [`Exploration::Sampled`] draws a seeded random
//! sample for scenarios too large to enumerate.
//!
//! After each run the store is checked against what any serial order of the
//! same requests allows:
//!
//! - **no resurrection**: once the session is deleted (purge, delete, expiry or
//!   delete-by-owner) while it is current, no live session carries its data,
//!   whatever cookie a response set;
//! - **no lost or doubled update**: the session's `log` holds each committed
//!   request's `Append` exactly once, no other; without renewals, purges or
//!   deletes every `Append` commits;
//! - **owner index complete**: every live owned session is listed by
//!   `list_by_owner` and removed by `delete_by_owner`;
//! - **limits hold** on every stored record;
//! - **the absolute deadline never moves** (nor the creation time) across
//!   saves and renewals, but for a `login`, which starts a new lifetime;
//! - **removal cookies only after `purge()`** (every cookie here is valid);
//! - **a one-time CSRF token is accepted at most once**, and exactly once when
//!   nothing renews, purges or deletes the session; once accepted it is gone;
//! - **flashes are never lost**: every flash a committed request added is
//!   still stored or was shown, and none a committed request showed is still
//!   stored (two requests loading at once may both show one);
//! - **revoke answers what it did**: a `revoke` answers `true` exactly when
//!   its own delete removed the session, and never deletes it once a save
//!   gave it another owner;
//! - no request fails with a store error.
//!
//! # Examples
//!
//! ```
//! use latchkey_testkit::explorer::{Action, Exploration, Scenario, Step, explore};
//!
//! let scenario = Scenario::new("renew races an admin delete")
//!     .request([Step::Renew, Step::Append])
//!     .action(Action::Delete);
//! actix_web::rt::System::new().block_on(async {
//!     let store = latchkey_memory::MemoryStore::new();
//!     let report = explore(&store, &scenario, Exploration::Exhaustive { max_runs: 1_000 })
//!         .await
//!         .unwrap_or_else(|violation| panic!("{violation}"));
//!     assert!(report.complete);
//! });
//! ```

mod check;
mod gate;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::{App, HttpResponse, test, web};
use latchkey::{Session, SessionMiddleware};
use latchkey_core::{Deadlines, Record, SessionId, SessionStore, SessionToken, Timestamp};

pub use self::gate::Call;
use self::gate::{Event, GatedStore, Hub};

/// The cookie name the explorer's middleware uses.
const COOKIE: &str = "id";
/// The middleware's idle timeout and lifetime in every run.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
const LIFETIME: Duration = Duration::from_secs(2 * 3600);
/// The logged-in session starts half-idle, so a read-only request's idle
/// extension is due and its `touch` is one of the interleaved calls.
const INITIAL_IDLE: Duration = Duration::from_secs(1800);
/// How long one actor may take between two store calls before the run is
/// reported as stalled.
const STALL: Duration = Duration::from_secs(30);

/// One thing a request's handler does with its session, in script order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Reads a value: the session is loaded and otherwise unchanged.
    Read,
    /// Appends the request's name to the list under `log`, with `update`, so
    /// the explorer can tell which requests' changes landed, and how often.
    Append,
    /// Inserts the request's number under this key.
    Insert(String),
    /// Removes this key (a no-op when absent, which must write nothing).
    Remove(String),
    /// Sets the owner to the one the session already has (a no-op).
    SetOwner,
    /// `renew()`.
    Renew,
    /// `login(owner)` with the owner the session already has: a renewal that
    /// starts a new lifetime.
    Login,
    /// `purge()`; steps after it fill a brand-new session.
    Purge,
    /// `consume_csrf_token` of the one-time CSRF token the session starts
    /// with (it starts with one when any request has this step).
    ConsumeCsrf,
    /// `flash` of a message naming the request.
    Flash,
    /// `take_flashes()`: the flashes shown are reported.
    TakeFlashes,
    /// `revoke` of the logged-in session by its id, from the owner's other
    /// device: a request with this step carries the cookie of a second
    /// session of the same owner, made when any request has this step.
    Revoke,
    /// `set_owner` to another user than the session's.
    ChangeOwner,
}

/// Something done to the session outside any request, as one store call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// `delete` of the logged-in session's id (an admin revoking it).
    Delete,
    /// `delete_by_owner` of its owner ("log out everywhere").
    DeleteByOwner,
    /// Its idle deadline set to now: it expires.
    Expire,
}

/// Concurrent requests on one logged-in session, and out-of-band actions.
///
/// The session starts with `{"origin": 1}`, an owner, and half its idle time
/// left. Every request carries its cookie.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// Each request's script.
    pub requests: Vec<Vec<Step>>,
    /// The out-of-band actions, each one store call.
    pub actions: Vec<Action>,
    /// The middleware's `max_keys`, when the scenario tests limits.
    pub max_keys: Option<usize>,
    /// The middleware's `max_session_bytes`, when the scenario tests limits.
    pub max_bytes: Option<usize>,
}

impl Scenario {
    /// An empty scenario called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Adds a request running `steps`.
    #[must_use]
    pub fn request(mut self, steps: impl IntoIterator<Item = Step>) -> Self {
        self.requests.push(steps.into_iter().collect());
        self
    }

    /// Adds an out-of-band action.
    #[must_use]
    pub fn action(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }

    /// Sets the middleware's `max_keys`.
    #[must_use]
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = Some(keys);
        self
    }

    /// Sets the middleware's `max_session_bytes`.
    #[must_use]
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    fn has_limits(&self) -> bool {
        self.max_keys.is_some() || self.max_bytes.is_some()
    }

    fn has_step(&self, request: usize, wanted: &Step) -> bool {
        self.requests
            .get(request)
            .is_some_and(|steps| steps.contains(wanted))
    }
}

/// How many interleavings to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exploration {
    /// Every interleaving, stopping (with `complete: false`) after `max_runs`.
    Exhaustive {
        /// The most runs to make.
        max_runs: u64,
    },
    /// `runs` interleavings chosen at random from `seed`: the same seed explores
    /// the same interleavings.
    Sampled {
        /// How many runs.
        runs: u64,
        /// The random seed.
        seed: u64,
    },
}

/// What an exploration covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Interleavings run (and checked).
    pub runs: u64,
    /// Whether an exhaustive exploration enumerated every interleaving.
    pub complete: bool,
}

/// A broken invariant, with the interleaving that broke it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The scenario's name.
    pub scenario: String,
    /// The rule that broke.
    pub rule: String,
    /// The scheduler's choice at each step, to replay the run.
    pub schedule: Vec<usize>,
    /// Every store call of the run in order: actor (requests first, then
    /// actions) and call.
    pub calls: Vec<(usize, Call)>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario {:?}: {}", self.scenario, self.rule)?;
        writeln!(f, "schedule {:?}; store calls in order:", self.schedule)?;
        for (actor, call) in &self.calls {
            writeln!(f, "  actor {actor}: {call:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// Explores `scenario` on `store` and checks every run.
///
/// Runs on the current actix-web system (inside `actix_web::rt::System` or an
/// `#[actix_web::test]`). Each run uses a fresh owner and fresh tokens and
/// deletes what it created, so explorations sharing one store (one Redis, one
/// table) do not see each other.
///
/// # Errors
///
/// The first [`Violation`] found.
pub async fn explore<S>(
    store: &S,
    scenario: &Scenario,
    exploration: Exploration,
) -> Result<Report, Violation>
where
    S: SessionStore + Clone,
{
    let key = Key::generate();
    let mut runs = 0;
    match exploration {
        Exploration::Exhaustive { max_runs } => {
            let mut prefix = Vec::new();
            loop {
                let decisions =
                    run_once(store, scenario, &key, &mut Chooser::Replay(&prefix)).await?;
                runs += 1;
                let Some(next) = next_prefix(&decisions) else {
                    return Ok(report(scenario, runs, true));
                };
                if runs >= max_runs {
                    return Ok(report(scenario, runs, false));
                }
                prefix = next;
            }
        }
        Exploration::Sampled { runs: wanted, seed } => {
            for run in 0..wanted {
                let mut random = Random::new(seed ^ run.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                run_once(store, scenario, &key, &mut Chooser::Random(&mut random)).await?;
                runs += 1;
            }
            Ok(report(scenario, runs, false))
        }
    }
}

fn report(scenario: &Scenario, runs: u64, complete: bool) -> Report {
    Report {
        scenario: scenario.name.clone(),
        runs,
        complete,
    }
}

/// The next interleaving in depth-first order: the last decision that has an
/// untried option, moved to that option.
fn next_prefix(decisions: &[(usize, usize)]) -> Option<Vec<usize>> {
    let last = decisions
        .iter()
        .rposition(|&(choice, options)| choice + 1 < options)?;
    let mut prefix: Vec<usize> = decisions[..last]
        .iter()
        .map(|&(choice, _)| choice)
        .collect();
    prefix.push(decisions[last].0 + 1);
    Some(prefix)
}

/// Picks which held call goes next.
enum Chooser<'a> {
    /// Follows a prefix of choices, then always the first option.
    Replay(&'a [usize]),
    /// Chooses at random.
    Random(&'a mut Random),
}

impl Chooser<'_> {
    fn choose(&mut self, step: usize, options: usize) -> usize {
        let wanted = match self {
            Chooser::Replay(prefix) => prefix.get(step).copied().unwrap_or(0),
            Chooser::Random(random) => usize::try_from(random.next() % options as u64).unwrap_or(0),
        };
        wanted.min(options.saturating_sub(1))
    }
}

/// xorshift64*: enough randomness to sample schedules, reproducible by seed.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// What a request's response did with the cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CookieSeen {
    Untouched,
    Removed,
    Set(SessionId),
    /// A cookie the explorer's key does not verify: a bug in itself.
    Unreadable,
}

#[derive(Clone, Debug)]
struct Response {
    status: u16,
    cookie: CookieSeen,
    /// What the steps observed: `consumed`, `revoked`, `shown:<message>`,
    /// one per line.
    observed: Vec<String>,
}

/// The one-time CSRF token the session starts with, for [`Step::ConsumeCsrf`].
const ONE_TIME_TOKEN: &str = "explorer-one-time-token";

/// The logged-in session every run starts from.
#[derive(Clone, Debug)]
struct Initial {
    id: SessionId,
    owner: String,
    record: Record,
    /// The owner's second session, for the requests that revoke from it.
    sibling: Option<(SessionId, SessionToken)>,
}

/// What one handler runs.
#[derive(Clone, Debug)]
struct Script {
    name: String,
    number: usize,
    owner: String,
    steps: Vec<Step>,
    /// The logged-in session, which `Revoke` ends.
    target: SessionId,
}

async fn run_script(
    session: Session,
    script: web::Data<Script>,
) -> Result<HttpResponse, latchkey::Error> {
    let mut observed = Vec::new();
    for step in &script.steps {
        match step {
            Step::Read => {
                session.get::<serde_json::Value>("origin")?;
            }
            Step::Append => {
                let name = script.name.clone();
                session.update("log", move |log: Option<Vec<String>>| {
                    let mut log = log.unwrap_or_default();
                    log.push(name.clone());
                    log
                })?;
            }
            Step::Insert(key) => session.insert(key.clone(), script.number)?,
            Step::Remove(key) => {
                session.remove(key);
            }
            Step::SetOwner => session.set_owner(script.owner.clone()),
            Step::Renew => session.renew(),
            Step::Login => session.login(script.owner.clone()),
            Step::Purge => session.purge(),
            Step::ConsumeCsrf => {
                if session.consume_csrf_token(ONE_TIME_TOKEN).await? {
                    observed.push("consumed".to_owned());
                }
            }
            Step::Flash => session.flash(latchkey::FlashLevel::Info, script.name.clone())?,
            Step::TakeFlashes => {
                for flash in session.take_flashes()? {
                    observed.push(format!("shown:{}", flash.message));
                }
            }
            Step::Revoke => {
                if session.revoke(&script.target).await? {
                    observed.push("revoked".to_owned());
                }
            }
            Step::ChangeOwner => session.set_owner(format!("other-{}", script.owner)),
        }
    }
    Ok(HttpResponse::Ok().body(observed.join("\n")))
}

fn failure(scenario: &Scenario, rule: impl Into<String>) -> Violation {
    Violation {
        scenario: scenario.name.clone(),
        rule: rule.into(),
        schedule: Vec::new(),
        calls: Vec::new(),
    }
}

/// Makes the logged-in session, straight in the store.
async fn log_in<S: SessionStore>(
    store: &S,
    scenario: &Scenario,
) -> Result<(Initial, SessionToken), Violation> {
    let random = || SessionToken::generate().map_err(|e| failure(scenario, e.to_string()));
    let token = random()?;
    let id = token.id();
    let owner = format!("explorer-{}", random()?.id().to_hex());
    let now = Timestamp::now();
    let mut record = Record::new(now, Deadlines::starting_at(now, INITIAL_IDLE, LIFETIME));
    record.data.insert("origin".into(), 1.into());
    if scenario
        .requests
        .iter()
        .any(|steps| steps.contains(&Step::ConsumeCsrf))
    {
        record
            .data
            .insert("latchkey.csrf_once".into(), vec![ONE_TIME_TOKEN].into());
    }
    record.owner = Some(owner.clone());
    store
        .create(&id, &record)
        .await
        .map_err(|e| failure(scenario, format!("setting up: {e}")))?;
    record.version = 1;
    let sibling = if scenario
        .requests
        .iter()
        .any(|steps| steps.contains(&Step::Revoke))
    {
        let token = random()?;
        let mut other = Record::new(now, Deadlines::starting_at(now, IDLE_TIMEOUT, LIFETIME));
        other.data.insert("sibling".into(), true.into());
        other.owner = Some(owner.clone());
        store
            .create(&token.id(), &other)
            .await
            .map_err(|e| failure(scenario, format!("setting up: {e}")))?;
        Some((token.id(), token))
    } else {
        None
    };
    Ok((
        Initial {
            id,
            owner,
            record,
            sibling,
        },
        token,
    ))
}

fn signed_cookie(token: &SessionToken, key: &Key) -> Cookie<'static> {
    let mut jar = CookieJar::new();
    jar.signed_mut(key).add(Cookie::new(COOKIE, token.encode()));
    let value = jar
        .get(COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    Cookie::new(COOKIE, value)
}

fn read_cookie<B>(res: &actix_web::dev::ServiceResponse<B>, key: &Key) -> CookieSeen {
    let Some(cookie) = res.response().cookies().find(|c| c.name() == COOKIE) else {
        return CookieSeen::Untouched;
    };
    if cookie.value().is_empty() {
        return CookieSeen::Removed;
    }
    CookieJar::new()
        .signed(key)
        .verify(cookie.into_owned())
        .and_then(|plain| SessionToken::decode(plain.value()).ok())
        .map_or(CookieSeen::Unreadable, |token| CookieSeen::Set(token.id()))
}

/// One interleaving: returns the scheduler's decisions (choice, options).
async fn run_once<S>(
    store: &S,
    scenario: &Scenario,
    key: &Key,
    chooser: &mut Chooser<'_>,
) -> Result<Vec<(usize, usize)>, Violation>
where
    S: SessionStore + Clone,
{
    let (initial, token) = log_in(store, scenario).await?;
    let cookie = signed_cookie(&token, key);
    let (hub, mut events) = Hub::new();
    let responses: Rc<RefCell<BTreeMap<usize, Response>>> = Rc::default();
    let requests = scenario.requests.len();

    for (number, steps) in scenario.requests.iter().enumerate() {
        let gated = GatedStore {
            inner: store.clone(),
            actor: number,
            hub: Arc::clone(&hub),
        };
        let mut builder = SessionMiddleware::builder(gated, key.clone())
            .cookie_name(COOKIE)
            .cookie_secure(false)
            .idle_timeout(IDLE_TIMEOUT)
            .lifetime(LIFETIME)
            .session_deadline(STALL * 2);
        if let Some(max_keys) = scenario.max_keys {
            builder = builder.max_keys(max_keys);
        }
        if let Some(max_bytes) = scenario.max_bytes {
            builder = builder.max_session_bytes(max_bytes);
        }
        let middleware = builder
            .build()
            .map_err(|e| failure(scenario, format!("middleware: {e}")))?;
        let script = Script {
            name: format!("r{number}"),
            number,
            owner: initial.owner.clone(),
            steps: steps.clone(),
            target: initial.id,
        };
        let cookie = match &initial.sibling {
            Some((_, sibling)) if steps.contains(&Step::Revoke) => signed_cookie(sibling, key),
            _ => cookie.clone(),
        };
        let (cookie, key, hub, responses) =
            (cookie, key.clone(), Arc::clone(&hub), Rc::clone(&responses));
        actix_web::rt::spawn(async move {
            let app = test::init_service(
                App::new()
                    .wrap(middleware)
                    .app_data(web::Data::new(script))
                    .default_service(web::to(run_script)),
            )
            .await;
            let res =
                test::call_service(&app, test::TestRequest::get().cookie(cookie).to_request())
                    .await;
            let (status, cookie) = (res.status().as_u16(), read_cookie(&res, &key));
            let body = test::read_body(res).await;
            let response = Response {
                status,
                cookie,
                observed: String::from_utf8_lossy(&body)
                    .lines()
                    .map(str::to_owned)
                    .collect(),
            };
            responses.borrow_mut().insert(number, response);
            hub.finished(number);
        });
    }
    for (offset, action) in scenario.actions.iter().enumerate() {
        let actor = requests + offset;
        let gated = GatedStore {
            inner: store.clone(),
            actor,
            hub: Arc::clone(&hub),
        };
        let (initial, action) = (initial.clone(), *action);
        actix_web::rt::spawn(async move {
            let _ = match action {
                Action::Delete => gated.delete(&initial.id).await,
                Action::DeleteByOwner => {
                    gated.delete_by_owner(&initial.owner, None).await.map(drop)
                }
                Action::Expire => {
                    let expired = Deadlines {
                        idle: Timestamp::now(),
                        absolute: initial.record.deadlines.absolute,
                    };
                    gated
                        .touch(&initial.id, expired, initial.record.last_seen)
                        .await
                        .map(drop)
                }
            };
            gated.hub.finished(actor);
        });
    }

    let decisions = schedule(
        scenario,
        requests + scenario.actions.len(),
        &mut events,
        chooser,
    )
    .await;
    let calls = hub.take_log();
    let decisions = decisions.map_err(|rule| Violation {
        scenario: scenario.name.clone(),
        rule,
        schedule: Vec::new(),
        calls: calls.clone(),
    })?;
    let responses = responses.borrow().clone();
    let checked = check::run(store, scenario, &initial, &calls, &responses).await;
    checked.map_err(|rule| Violation {
        scenario: scenario.name.clone(),
        rule,
        schedule: decisions.iter().map(|&(choice, _)| choice).collect(),
        calls,
    })?;
    Ok(decisions)
}

/// Lets the held calls through one at a time, waiting after each release until
/// its actor is held again or done.
async fn schedule(
    scenario: &Scenario,
    actors: usize,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    chooser: &mut Chooser<'_>,
) -> Result<Vec<(usize, usize)>, String> {
    let mut running: BTreeSet<usize> = (0..actors).collect();
    let mut held = BTreeMap::new();
    let mut decisions = Vec::new();
    loop {
        while !running.is_empty() {
            match tokio::time::timeout(STALL, events.recv()).await {
                Ok(Some(Event::Arrived(arrival))) => {
                    running.remove(&arrival.actor);
                    held.insert(arrival.actor, arrival.release);
                }
                Ok(Some(Event::Finished(actor))) => {
                    running.remove(&actor);
                }
                Ok(None) => return Err("the actors' channel closed".into()),
                Err(_) => {
                    return Err(format!(
                        "actors {running:?} of {:?} neither reached a store call nor finished",
                        scenario.name
                    ));
                }
            }
        }
        if held.is_empty() {
            return Ok(decisions);
        }
        let choice = chooser.choose(decisions.len(), held.len());
        decisions.push((choice, held.len()));
        let Some(&actor) = held.keys().nth(choice) else {
            return Err("scheduler chose past the held calls".into());
        };
        if let Some(release) = held.remove(&actor) {
            running.insert(actor);
            let _ = release.send(());
        }
    }
}
