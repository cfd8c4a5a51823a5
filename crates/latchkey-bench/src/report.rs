//! Collecting runs and rendering the results table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::load::Outcome;
use crate::{Kind, Workload};

/// Requests that may still be in flight when wrk stops counting: one per connection.
const IN_FLIGHT: u64 = 64;

/// How long and how often to measure.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Sessions created before the timed part.
    pub users: usize,
    /// Load before each timed run, not counted.
    pub warmup: Duration,
    /// Length of each timed run.
    pub duration: Duration,
    /// Repetitions of the whole matrix.
    pub reps: usize,
    /// Whether this is the quick development mode.
    pub quick: bool,
}

impl Settings {
    /// Under two minutes: for development and the test command.
    pub fn quick() -> Self {
        Self {
            users: 100,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            reps: 1,
            quick: true,
        }
    }

    /// The documented run.
    pub fn full() -> Self {
        Self {
            users: 2_000,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            reps: 3,
            quick: false,
        }
    }
}

/// One timed run.
#[derive(Clone, Debug)]
pub struct Run {
    /// What wrk measured.
    pub outcome: Outcome,
    /// Store commands per request (Redis kinds).
    pub commands_per_request: Option<f64>,
    /// The hot counter's value afterwards.
    pub final_count: Option<u64>,
    /// CPU time of the server process per request, in microseconds.
    pub app_cpu_us: Option<f64>,
    /// CPU time of the store's server per request, in microseconds: the Redis
    /// server, or every PostgreSQL process.
    pub store_cpu_us: Option<f64>,
}

/// Everything a benchmark run measured.
#[derive(Debug, Default)]
pub struct Measurements {
    runs: BTreeMap<(usize, Workload), Vec<Run>>,
    peak_rss: BTreeMap<usize, u64>,
    bytes_per_session: BTreeMap<usize, (Option<u64>, Option<u64>)>,
}

fn index(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

impl Measurements {
    /// Adds one run.
    pub fn record(&mut self, kind: Kind, workload: Workload, run: Run) {
        self.runs
            .entry((index(kind), workload))
            .or_default()
            .push(run);
    }

    /// Keeps the highest peak RSS seen for the kind's server.
    pub fn record_peak_rss(&mut self, kind: Kind, bytes: u64) {
        let peak = self.peak_rss.entry(index(kind)).or_default();
        *peak = (*peak).max(bytes);
    }

    /// Records what creating `users` sessions cost in server memory and in the store.
    pub fn record_footprint(
        &mut self,
        kind: Kind,
        users: usize,
        rss_before_kib: Option<u64>,
        rss_after_kib: Option<u64>,
        store_before: Option<u64>,
        store_after: Option<u64>,
    ) {
        let per = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) if users > 0 => Some(a.saturating_sub(b) / users as u64),
            _ => None,
        };
        let process = per(
            rss_before_kib.map(|k| k * 1024),
            rss_after_kib.map(|k| k * 1024),
        );
        self.bytes_per_session
            .insert(index(kind), (process, per(store_before, store_after)));
    }

    fn runs(&self, kind: Kind, workload: Workload) -> &[Run] {
        self.runs
            .get(&(index(kind), workload))
            .map_or(&[], Vec::as_slice)
    }

    /// Median requests per second.
    pub fn rps(&self, kind: Kind, workload: Workload) -> Option<f64> {
        let runs = self.runs(kind, workload);
        (!runs.is_empty())
            .then(|| median(runs.iter().map(|r| r.outcome.requests_per_sec).collect()))
    }

    fn latency(
        &self,
        kind: Kind,
        workload: Workload,
        pick: fn(&Outcome) -> Duration,
    ) -> Option<f64> {
        let runs = self.runs(kind, workload);
        (!runs.is_empty()).then(|| {
            median(
                runs.iter()
                    .map(|r| pick(&r.outcome).as_secs_f64() * 1e3)
                    .collect(),
            )
        })
    }

    fn errors(&self, kind: Kind, workload: Workload) -> u64 {
        self.runs(kind, workload)
            .iter()
            .map(|r| r.outcome.errors)
            .sum()
    }

    /// What went wrong: errors where none are expected, lost hot increments on latchkey.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for kind in Kind::ALL {
            for workload in Workload::ALL {
                let errors = self.errors(kind, workload);
                if errors > 0 && kind.name().starts_with("latchkey") {
                    problems.push(format!(
                        "{kind} {}: {errors} failed requests",
                        workload.name()
                    ));
                }
            }
            if kind.name().starts_with("latchkey") {
                for run in self.runs(kind, Workload::Hot) {
                    let successes = run.outcome.requests - run.outcome.errors;
                    // wrk stops counting at its deadline while up to one request
                    // per connection is still being served, so the counter may
                    // end that many above wrk's count, never below it.
                    let plausible = successes..=successes + IN_FLIGHT;
                    if !run
                        .final_count
                        .is_some_and(|count| plausible.contains(&count))
                    {
                        problems.push(format!(
                            "{kind} hot: counter ended at {:?} after {successes} successful increments",
                            run.final_count
                        ));
                    }
                }
            }
        }
        problems
    }
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
}

fn ratio(num: Option<f64>, den: Option<f64>) -> String {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => format!("{:.2}×", n / d),
        _ => "—".to_owned(),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(|| "?".into(), |kib| format!("{} GiB", kib / (1024 * 1024)));
    format!("{cpu}, {cores} cores, {memory}")
}

fn version(command: &str, args: &[&str]) -> String {
    std::process::Command::new(command)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("{command}: unknown"))
}

/// The results as Markdown.
pub fn render(
    settings: &Settings,
    m: &Measurements,
    command: &str,
    servers: &str,
    elapsed: Duration,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Side by side: latchkey, actix-session, bare actix-web\n"
    );
    let _ = writeln!(
        out,
        "Command: `{command}` ({:.0} s)\n",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "- machine: {}", machine());
    let _ = writeln!(out, "- {}; {servers}", version("rustc", &["--version"]),);
    let _ = writeln!(
        out,
        "- method: each server a separate process with one actix worker pinned to core 0; `wrk -t1 -c64` pinned to core 1; \
         {} sessions created before the timed part; {:.1} s warm-up, then {:.1} s measured; {} repetition(s), servers alternating; medians reported. \
         Redis is a private `redis-server`, PostgreSQL the local server; both share the two cores with the benchmark.{}\n",
        settings.users,
        settings.warmup.as_secs_f64(),
        settings.duration.as_secs_f64(),
        settings.reps,
        if settings.quick {
            " **Quick mode: figures are indicative only.**"
        } else {
            ""
        }
    );

    let _ = writeln!(out, "### Requests per second (median)\n");
    let _ = writeln!(out, "| server | anon | new | read | counter | hot |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for kind in Kind::ALL {
        let cells: Vec<String> = Workload::ALL
            .iter()
            .map(|w| cell(m.rps(kind, *w), 0))
            .collect();
        let _ = writeln!(out, "| {kind} | {} |", cells.join(" | "));
    }

    let _ = writeln!(
        out,
        "\n### Latency p50 / p99 in ms (median over repetitions), errors\n"
    );
    let _ = writeln!(
        out,
        "| server | anon | new | read | counter | hot | errors |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for kind in Kind::ALL {
        let cells: Vec<String> = Workload::ALL
            .iter()
            .map(|w| {
                format!(
                    "{} / {}",
                    cell(m.latency(kind, *w, |o| o.p50), 2),
                    cell(m.latency(kind, *w, |o| o.p99), 2)
                )
            })
            .collect();
        let errors: u64 = Workload::ALL.iter().map(|w| m.errors(kind, *w)).sum();
        let _ = writeln!(out, "| {kind} | {} | {errors} |", cells.join(" | "));
    }

    let _ = writeln!(
        out,
        "\n### latchkey relative to the others (requests per second)\n"
    );
    let _ = writeln!(
        out,
        "| latchkey on | compared with | anon | new | read | counter |"
    );
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: |");
    let pairs = [
        (Kind::LatchkeyMemory, Kind::Bare),
        (Kind::LatchkeyMemory, Kind::ActixCookie),
        (Kind::LatchkeyRedis, Kind::Bare),
        (Kind::LatchkeyRedis, Kind::ActixRedis),
        (Kind::LatchkeyRedis, Kind::RawRedis),
        (Kind::LatchkeyRedisCached, Kind::LatchkeyRedis),
        (Kind::LatchkeyRedisCached, Kind::RawRedis),
        (Kind::LatchkeyPostgres, Kind::Bare),
        (Kind::LatchkeyPostgres, Kind::RawPostgres),
    ];
    for (ours, theirs) in pairs {
        let cells: Vec<String> = [
            Workload::Anon,
            Workload::New,
            Workload::Read,
            Workload::Counter,
        ]
        .iter()
        .map(|w| ratio(m.rps(ours, *w), m.rps(theirs, *w)))
        .collect();
        let _ = writeln!(
            out,
            "| {} | {theirs} | {} |",
            ours.name().trim_start_matches("latchkey-"),
            cells.join(" | ")
        );
    }

    let _ = writeln!(
        out,
        "\n### `hot`: 64 clients incrementing one session's counter\n"
    );
    let _ = writeln!(
        out,
        "| server | successful requests | final count | increments lost |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    for kind in Kind::ALL.into_iter().filter(|k| k.has_sessions()) {
        for run in m.runs(kind, Workload::Hot) {
            let successes = run.outcome.requests - run.outcome.errors;
            let count = run.final_count.unwrap_or(0);
            let _ = writeln!(
                out,
                "| {kind} | {successes} | {count} | {} |",
                successes.saturating_sub(count)
            );
        }
    }

    let _ = writeln!(
        out,
        "\n### Store round trips per request (Redis commands, from `INFO commandstats`)\n"
    );
    let _ = writeln!(out, "| server | anon | new | read | counter |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
    for kind in Kind::ALL.into_iter().filter(|k| k.uses_redis()) {
        let cells: Vec<String> = [
            Workload::Anon,
            Workload::New,
            Workload::Read,
            Workload::Counter,
        ]
        .iter()
        .map(|w| {
            let values: Vec<f64> = m
                .runs(kind, *w)
                .iter()
                .filter_map(|r| r.commands_per_request)
                .collect();
            cell((!values.is_empty()).then(|| median(values)), 2)
        })
        .collect();
        let _ = writeln!(out, "| {kind} | {} |", cells.join(" | "));
    }

    let _ = writeln!(
        out,
        "\n### CPU per request: application / store (Redis, or all PostgreSQL processes), in µs (from `/proc/<pid>/stat`)\n"
    );
    let _ = writeln!(out, "| server | anon | new | read | counter | hot |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for kind in Kind::ALL {
        let cells: Vec<String> = Workload::ALL
            .iter()
            .map(|w| {
                let runs = m.runs(kind, *w);
                let app: Vec<f64> = runs.iter().filter_map(|r| r.app_cpu_us).collect();
                let store: Vec<f64> = runs.iter().filter_map(|r| r.store_cpu_us).collect();
                let app = cell((!app.is_empty()).then(|| median(app)), 1);
                if store.is_empty() {
                    app
                } else {
                    format!("{app} / {}", cell(Some(median(store)), 1))
                }
            })
            .collect();
        if cells.iter().all(|c| c.starts_with('—')) {
            continue;
        }
        let _ = writeln!(out, "| {kind} | {} |", cells.join(" | "));
    }

    let _ = writeln!(out, "\n### Memory\n");
    let _ = writeln!(
        out,
        "| server | peak RSS | server bytes per session | store bytes per session |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    for kind in Kind::ALL {
        let peak = m.peak_rss.get(&index(kind)).map_or_else(
            || "—".into(),
            |b| format!("{:.1} MiB", *b as f64 / 1048576.0),
        );
        let (process, store) = m
            .bytes_per_session
            .get(&index(kind))
            .copied()
            .unwrap_or((None, None));
        let show = |v: Option<u64>| v.map_or_else(|| "—".into(), |b| b.to_string());
        let _ = writeln!(
            out,
            "| {kind} | {peak} | {} | {} |",
            show(process),
            show(store)
        );
    }
    out
}
