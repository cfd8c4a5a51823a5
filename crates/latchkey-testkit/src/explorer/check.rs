//! The invariants every run must keep, checked on the store after the run.

use std::collections::{BTreeMap, BTreeSet};

use latchkey_core::{DeleteOutcome, Record, SaveOutcome, SessionId, SessionStore};
use serde_json::Value;

use super::{Action, Call, CookieSeen, Initial, Response, Scenario, Step};

/// Where the logged-in session is after the run, followed through the calls.
struct Lineage {
    /// Its current id, if it still lives.
    current: Option<SessionId>,
    /// The call that ended it, if one did.
    ended_by: Option<usize>,
    /// Whether any request renewed it.
    renewed: bool,
    /// The request whose renewal made the current id, if one did.
    renewed_by: Option<usize>,
}

fn follow(
    scenario: &Scenario,
    initial: &Initial,
    calls: &[(usize, Call)],
) -> Result<Lineage, String> {
    let requests = scenario.requests.len();
    let mut lineage = Lineage {
        current: Some(initial.id),
        ended_by: None,
        renewed: false,
        renewed_by: None,
    };
    let mut created: BTreeMap<usize, SessionId> = BTreeMap::new();
    for (index, (actor, call)) in calls.iter().enumerate() {
        let current = lineage.current;
        let is_current = |id: &SessionId| current.as_ref() == Some(id);
        let ends = match call {
            Call::Create(id) => {
                created.insert(*actor, *id);
                false
            }
            Call::DeleteAtVersion(id, Some(DeleteOutcome::Deleted)) if is_current(id) => {
                match created.get(actor) {
                    Some(successor) => {
                        lineage.current = Some(*successor);
                        lineage.renewed = true;
                        lineage.renewed_by = Some(*actor);
                        false
                    }
                    // The revoking request runs on the other session, which
                    // it never renews: its delete of this one is the revoke.
                    None if scenario.has_step(*actor, &Step::Revoke) => true,
                    None => {
                        return Err(format!(
                            "call {index}: actor {actor} retired the session without creating its successor"
                        ));
                    }
                }
            }
            Call::Delete(id) => is_current(id),
            Call::Touch(id, true) => {
                *actor >= requests
                    && scenario.actions.get(actor - requests) == Some(&Action::Expire)
                    && is_current(id)
            }
            Call::DeleteByOwner(owner) => *owner == initial.owner && current.is_some(),
            _ => false,
        };
        if ends {
            lineage.current = None;
            lineage.ended_by = Some(index);
        }
    }
    Ok(lineage)
}

/// Whether `request` committed its change: its last compare-and-set (a save or
/// the retirement of a renewal) succeeded.
fn committed(request: usize, calls: &[(usize, Call)]) -> bool {
    calls
        .iter()
        .rev()
        .filter(|(actor, _)| *actor == request)
        .filter_map(|(_, call)| match call {
            Call::Save(_, outcome) => Some(matches!(outcome, Some(SaveOutcome::Saved(_)))),
            Call::DeleteAtVersion(_, outcome) => {
                Some(matches!(outcome, Some(DeleteOutcome::Deleted)))
            }
            _ => None,
        })
        .next()
        .unwrap_or(false)
}

fn log_of(record: &Record) -> Result<Vec<String>, String> {
    match record.data.get("log") {
        None => Ok(Vec::new()),
        Some(value) => {
            serde_json::from_value(value.clone()).map_err(|e| format!("log is not a list: {e}"))
        }
    }
}

pub(super) async fn run<S: SessionStore>(
    store: &S,
    scenario: &Scenario,
    initial: &Initial,
    calls: &[(usize, Call)],
    responses: &BTreeMap<usize, Response>,
) -> Result<(), String> {
    let lineage = follow(scenario, initial, calls)?;

    // Every session the run may have left alive: the logged-in one, every one
    // created, and every one a cookie points at.
    let mut candidates: BTreeSet<SessionId> = BTreeSet::from([initial.id]);
    if let Some((sibling, _)) = &initial.sibling {
        candidates.insert(*sibling);
    }
    for (_, call) in calls {
        if let Call::Create(id) = call {
            candidates.insert(*id);
        }
    }
    for response in responses.values() {
        if let CookieSeen::Set(id) = response.cookie {
            candidates.insert(id);
        }
    }
    let mut live = BTreeMap::new();
    for id in &candidates {
        if let Some(record) = store.load(id).await.map_err(|e| format!("checking: {e}"))? {
            live.insert(*id, record);
        }
    }
    let outcome = judge(scenario, initial, calls, responses, &lineage, &live, store).await;
    for id in live.keys() {
        let _ = store.delete(id).await;
    }
    outcome
}

async fn judge<S: SessionStore>(
    scenario: &Scenario,
    initial: &Initial,
    calls: &[(usize, Call)],
    responses: &BTreeMap<usize, Response>,
    lineage: &Lineage,
    live: &BTreeMap<SessionId, Record>,
    store: &S,
) -> Result<(), String> {
    for (request, response) in responses {
        let limited = scenario.has_limits() && response.status == 500;
        if response.status != 200 && !limited {
            return Err(format!("request r{request} answered {}", response.status));
        }
        match response.cookie {
            CookieSeen::Removed if !scenario.has_step(*request, &Step::Purge) => {
                return Err(format!(
                    "request r{request} sent a removal cookie without purge(): it would log out a concurrent login"
                ));
            }
            CookieSeen::Unreadable => {
                return Err(format!(
                    "request r{request} set a cookie that does not verify"
                ));
            }
            _ => {}
        }
    }
    if responses.len() != scenario.requests.len() {
        return Err("a request never answered".into());
    }

    let observed = |what: &str| {
        responses
            .iter()
            .filter(|(_, response)| response.observed.iter().any(|o| o == what))
            .map(|(request, _)| *request)
            .collect::<Vec<usize>>()
    };
    let revoked_at = |request: usize| {
        calls.iter().position(|(actor, call)| {
            *actor == request
                && *call == Call::DeleteAtVersion(initial.id, Some(DeleteOutcome::Deleted))
        })
    };
    let answered = observed("revoked");
    for request in (0..scenario.requests.len()).filter(|&r| scenario.has_step(r, &Step::Revoke)) {
        let deleted = revoked_at(request);
        if deleted.is_some() != answered.contains(&request) {
            return Err(format!(
                "r{request}'s revoke answered {} but its delete {}",
                answered.contains(&request),
                if deleted.is_some() {
                    "removed the session"
                } else {
                    "did not"
                }
            ));
        }
        let given_away = calls.iter().position(|(actor, call)| {
            scenario.has_step(*actor, &Step::ChangeOwner)
                && matches!(call, Call::Save(id, Some(SaveOutcome::Saved(_))) if *id == initial.id)
        });
        if let (Some(deleted), Some(given_away)) = (deleted, given_away)
            && deleted > given_away
        {
            return Err(format!(
                "r{request} revoked the session after call {given_away} gave it another owner"
            ));
        }
    }
    let consumers = observed("consumed");
    let acceptances: usize = responses
        .values()
        .map(|response| {
            response
                .observed
                .iter()
                .filter(|o| *o == "consumed")
                .count()
        })
        .sum();
    if acceptances > 1 {
        return Err(format!(
            "the one-time token was accepted by {consumers:?}: more than once"
        ));
    }
    let steps_used = |step: &Step| (0..scenario.requests.len()).any(|r| scenario.has_step(r, step));
    let disturbed = lineage.renewed
        || !scenario.actions.is_empty()
        || steps_used(&Step::Purge)
        || steps_used(&Step::Revoke);
    if steps_used(&Step::ConsumeCsrf) && !disturbed && consumers.is_empty() {
        return Err(
            "the one-time token was accepted by nobody, with nothing ending the session".into(),
        );
    }

    let carriers: Vec<&SessionId> = live
        .iter()
        .filter(|(_, record)| record.data.get("origin") == Some(&Value::from(1)))
        .map(|(id, _)| id)
        .collect();
    match (lineage.current, lineage.ended_by) {
        (None, ended_by) => {
            if let Some(id) = carriers.first() {
                return Err(format!(
                    "resurrection: session {id} carries the session's data after call {ended_by:?} ended it"
                ));
            }
        }
        (Some(current), _) => {
            if carriers != [&current] {
                return Err(format!(
                    "the live session should be exactly {current}, found {carriers:?}"
                ));
            }
        }
    }

    for (id, record) in live {
        if let Some(max_keys) = scenario.max_keys
            && record.data.len() > max_keys
        {
            return Err(format!(
                "session {id} holds {} keys, over the limit of {max_keys}",
                record.data.len()
            ));
        }
        let bytes = serde_json::to_vec(&record.data).map_or(usize::MAX, |json| json.len());
        if let Some(max_bytes) = scenario.max_bytes
            && bytes > max_bytes
        {
            return Err(format!(
                "session {id} holds {bytes} bytes, over the limit of {max_bytes}"
            ));
        }
        if record.deadlines.idle > record.deadlines.absolute {
            return Err(format!("session {id}: idle deadline past the absolute one"));
        }
    }

    if let Some(current) = lineage.current.and_then(|id| live.get(&id)) {
        let logged_in = lineage
            .renewed_by
            .is_some_and(|request| scenario.has_step(request, &Step::Login));
        if logged_in {
            // A new lifetime, from the login on.
            if current.created_at < initial.record.created_at
                || current
                    .deadlines
                    .absolute
                    .saturating_since(current.created_at)
                    != super::LIFETIME
            {
                return Err(format!(
                    "a login's session should live {:?} from its creation: {:?} / {:?}",
                    super::LIFETIME,
                    current.created_at,
                    current.deadlines.absolute
                ));
            }
        } else if current.deadlines.absolute != initial.record.deadlines.absolute
            || current.created_at != initial.record.created_at
        {
            return Err(format!(
                "the absolute deadline or creation time moved: {:?} / {:?}, was {:?} / {:?}",
                current.deadlines.absolute,
                current.created_at,
                initial.record.deadlines.absolute,
                initial.record.created_at
            ));
        }
        if !consumers.is_empty() {
            let held = current.data.get("latchkey.csrf_once").cloned();
            if held.is_some_and(|tokens| tokens.to_string().contains(super::ONE_TIME_TOKEN)) {
                return Err("the one-time token was accepted and is still stored".into());
            }
        }
        let stored_flashes: Vec<String> = current
            .data
            .get("latchkey.flash")
            .and_then(|value| value.as_array())
            .map(|flashes| {
                flashes
                    .iter()
                    .filter_map(|flash| flash.get("message").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for request in 0..scenario.requests.len() {
            let name = format!("r{request}");
            let shown = !observed(&format!("shown:{name}")).is_empty();
            if scenario.has_step(request, &Step::Flash)
                && committed(request, calls)
                && !shown
                && !stored_flashes.contains(&name)
            {
                return Err(format!(
                    "the flash {name} was lost: neither shown nor stored"
                ));
            }
            let shown_by_committed = observed(&format!("shown:{name}"))
                .into_iter()
                .any(|shower| committed(shower, calls));
            if shown_by_committed && stored_flashes.contains(&name) {
                return Err(format!("the flash {name} was shown and is still stored"));
            }
        }
        let log = log_of(current)?;
        let unique: BTreeSet<&String> = log.iter().collect();
        if unique.len() != log.len() {
            return Err(format!("an update was applied twice: log {log:?}"));
        }
        let expected: BTreeSet<String> = (0..scenario.requests.len())
            .filter(|&r| scenario.has_step(r, &Step::Append) && committed(r, calls))
            .map(|r| format!("r{r}"))
            .collect();
        let found: BTreeSet<String> = log.into_iter().collect();
        if found != expected {
            return Err(format!(
                "the log holds {found:?}, but the requests that committed are {expected:?}"
            ));
        }
        let undisturbed = !lineage.renewed
            && scenario.actions.is_empty()
            && !scenario
                .requests
                .iter()
                .any(|steps| steps.contains(&Step::Purge));
        if undisturbed && !scenario.has_limits() {
            let appending = (0..scenario.requests.len())
                .filter(|&r| scenario.has_step(r, &Step::Append))
                .count();
            if expected.len() != appending {
                return Err(format!(
                    "lost update: {} of {appending} appends committed with nothing deleting or renewing the session",
                    expected.len()
                ));
            }
        }
    }

    // The owner index lists every live owned session, and revoking by owner
    // removes every one of them.
    let owned: Vec<&SessionId> = live
        .iter()
        .filter(|(_, record)| record.owner.as_deref() == Some(initial.owner.as_str()))
        .map(|(id, _)| id)
        .collect();
    let listed: BTreeSet<SessionId> = store
        .list_by_owner(&initial.owner)
        .await
        .map_err(|e| format!("checking: {e}"))?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if let Some(missing) = owned.iter().find(|id| !listed.contains(id)) {
        return Err(format!("owner index misses live session {missing}"));
    }
    store
        .delete_by_owner(&initial.owner, None)
        .await
        .map_err(|e| format!("checking: {e}"))?;
    for id in owned {
        if store
            .load(id)
            .await
            .map_err(|e| format!("checking: {e}"))?
            .is_some()
        {
            return Err(format!("delete_by_owner left owned session {id} alive"));
        }
    }
    Ok(())
}
