//! `latchkey-bench`: latchkey against actix-session and bare actix-web, side by
//! side in one run.
//!
//! ```text
//! cargo run --release -p latchkey-bench              # full run, writes docs/benchmarks.md
//! cargo run --release -p latchkey-bench -- --quick   # under two minutes, prints only
//! ```
//!
//! Each server kind runs as its own process (this binary's `serve` mode) pinned
//! to core 0; `wrk` drives it from core 1. Load goes to 127.0.0.1 only, and every
//! run stops after its set duration. Redis is a private `redis-server` the
//! benchmark starts and stops; PostgreSQL is the one at `DATABASE_URL`, in a
//! schema of the run's own, dropped at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchkey_bench::load::{Outcome, run_wrk, write_script};
use latchkey_bench::probe::StoreProbe;
use latchkey_bench::report::{Measurements, Run, Settings, render};
use latchkey_bench::server::{Backends, serve};
use latchkey_bench::{Kind, Workload};
use latchkey_testkit::servers::{
    PrivateRedis, database_url, free_port, unique_name, wait_for_port,
};

const SERVER_CORE: usize = 0;
const LOAD_CORE: usize = 1;
const CONNECTIONS: usize = 64;

type Error = Box<dyn std::error::Error>;

/// latchkey against actix-session and bare actix-web, side by side in one run.
///
/// Without options: the full run (about 14 minutes), written into
/// docs/benchmarks.md between its markers.
#[derive(Debug, clap::Parser)]
#[command(name = "latchkey-bench", version)]
struct Cli {
    #[command(subcommand)]
    serve: Option<ServeCommand>,
    #[command(flatten)]
    run: RunOptions,
}

#[derive(Debug, clap::Args)]
struct RunOptions {
    /// Short run (under two minutes) that checks the benchmark works and loses
    /// no update; prints only.
    #[arg(long)]
    quick: bool,
    /// Repetitions of every server and workload.
    #[arg(long)]
    reps: Option<usize>,
    /// Measured seconds per run.
    #[arg(long)]
    duration: Option<f64>,
    /// Sessions created before the timed part.
    #[arg(long)]
    users: Option<usize>,
    /// Servers to run, comma-separated (default: all), e.g. latchkey-redis,raw-redis.
    #[arg(long, value_delimiter = ',')]
    kinds: Option<Vec<Kind>>,
    /// Where to write the results section (default: docs/benchmarks.md for a full run).
    #[arg(long, conflicts_with = "no_write")]
    write: Option<PathBuf>,
    /// Print only; write no file.
    #[arg(long)]
    no_write: bool,
}

#[derive(Debug, clap::Subcommand)]
enum ServeCommand {
    /// Serves one server kind (what the benchmark runs in each child process).
    Serve {
        #[arg(long)]
        kind: Kind,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        redis: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        database: String,
        #[arg(long)]
        schema: String,
    },
}

fn main() {
    let cli = <Cli as clap::Parser>::parse();
    let result = match cli.serve {
        Some(ServeCommand::Serve {
            kind,
            port,
            redis,
            prefix,
            database,
            schema,
        }) => serve_mode(
            kind,
            port,
            Backends {
                redis_url: redis,
                redis_prefix: prefix,
                database_url: database,
                schema,
            },
        ),
        None => bench_mode(&cli.run),
    };
    if let Err(err) = result {
        eprintln!("latchkey-bench: {err}");
        std::process::exit(1);
    }
}

fn serve_mode(kind: Kind, port: u16, backends: Backends) -> Result<(), Error> {
    actix_rt::System::new().block_on(serve(kind, port, backends))?;
    Ok(())
}

/// A server process, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(kind: Kind, backends: &Backends) -> Result<Self, Error> {
        let port = free_port()?;
        let exe = std::env::current_exe()?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(SERVER_CORE.to_string())
            .arg(exe)
            .args(["serve", "--kind", kind.name(), "--port", &port.to_string()])
            .args([
                "--redis",
                &backends.redis_url,
                "--prefix",
                &backends.redis_prefix,
            ])
            .args([
                "--database",
                &backends.database_url,
                "--schema",
                &backends.schema,
            ])
            .stdout(Stdio::null())
            .spawn()?;
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_for_port(port, Duration::from_secs(30))
            .map_err(|e| format!("{kind} did not start: {e}"))?;
        Ok(server)
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    }
}

fn bench_mode(options: &RunOptions) -> Result<(), Error> {
    let quick = options.quick;
    let mut settings = if quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    if let Some(reps) = options.reps {
        settings.reps = reps;
    }
    if let Some(secs) = options.duration {
        settings.duration = Duration::try_from_secs_f64(secs)?;
    }
    if let Some(users) = options.users {
        settings.users = users;
    }
    let kinds: Vec<Kind> = options.kinds.clone().unwrap_or_else(|| Kind::ALL.to_vec());
    let write_to = match &options.write {
        Some(path) => Some(path.clone()),
        None if !quick && !options.no_write => Some(docs_path()),
        None => None,
    };
    for tool in ["wrk", "taskset"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!("{tool} is missing: apt-get install wrk util-linux").into());
        }
    }

    let redis = PrivateRedis::start()?;
    let backends = Backends {
        redis_url: redis.url(),
        redis_prefix: format!("{}:", unique_name("bench")),
        database_url: database_url(),
        schema: unique_name("bench"),
    };
    let mut probe = StoreProbe::connect(&backends, kinds.iter().any(|k| k.uses_postgres()))?;
    let started = Instant::now();
    let result = measure(&settings, &kinds, &backends, &mut probe);
    if let Err(err) = probe.drop_schema() {
        eprintln!(
            "latchkey-bench: the run's schema {} stays: {err}",
            backends.schema
        );
    }
    let measurements = result?;
    let markdown = render(
        &settings,
        &measurements,
        &command_line(),
        &probe.versions(),
        started.elapsed(),
    );
    println!("{markdown}");
    if let Some(path) = write_to {
        write_section(&path, &markdown)?;
        eprintln!("latchkey-bench: results written to {}", path.display());
    }
    let problems = measurements.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("the run found problems:\n- {}", problems.join("\n- ")).into())
    }
}

fn docs_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md")
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut line = String::from("cargo run --release -p latchkey-bench");
    if !args.is_empty() {
        line.push_str(" -- ");
        line.push_str(&args.join(" "));
    }
    line
}

fn measure(
    settings: &Settings,
    kinds: &[Kind],
    backends: &Backends,
    probe: &mut StoreProbe,
) -> Result<Measurements, Error> {
    let mut measurements = Measurements::default();
    let scripts = std::env::temp_dir().join(unique_name("latchkey_bench_scripts"));
    std::fs::create_dir_all(&scripts)?;
    for rep in 0..settings.reps {
        let mut order = kinds.to_vec();
        order.rotate_left(rep % kinds.len().max(1));
        for kind in order {
            eprintln!(
                "latchkey-bench: repetition {}/{}: {kind}",
                rep + 1,
                settings.reps
            );
            let server = Server::start(kind, backends)?;
            let rss_before = server.status_kib("VmRSS:");
            let store_before = probe.store_bytes(kind);
            let cookies =
                actix_rt::System::new().block_on(create_sessions(&server.url, settings.users))?;
            if rep == 0 {
                let rss_after = server.status_kib("VmRSS:");
                let store_after = probe.store_bytes(kind);
                measurements.record_footprint(
                    kind,
                    settings.users,
                    rss_before,
                    rss_after,
                    store_before,
                    store_after,
                );
            }
            for workload in Workload::ALL {
                let run =
                    run_workload(kind, workload, &server, &cookies, settings, probe, &scripts)?;
                measurements.record(kind, workload, run);
            }
            if let Some(peak) = server.status_kib("VmHWM:") {
                measurements.record_peak_rss(kind, peak * 1024);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scripts);
    Ok(measurements)
}

fn run_workload(
    kind: Kind,
    workload: Workload,
    server: &Server,
    cookies: &[String],
    settings: &Settings,
    probe: &mut StoreProbe,
    scripts: &Path,
) -> Result<Run, Error> {
    let hot_cookie = if workload == Workload::Hot {
        actix_rt::System::new().block_on(create_sessions(&server.url, 1))?
    } else {
        Vec::new()
    };
    let request_cookies: &[String] = match workload {
        Workload::New => &[],
        Workload::Hot => &hot_cookie,
        _ => cookies,
    };
    let script = scripts.join(format!("{}-{}.lua", kind.name(), workload.name()));
    write_script(&script, workload.path(), request_cookies)?;
    let url = format!("{}{}", server.url, workload.path());
    if !settings.warmup.is_zero() && workload != Workload::Hot {
        run_wrk(LOAD_CORE, &url, &script, CONNECTIONS, settings.warmup)?;
    }
    let commands_before = probe.redis_commands(kind);
    let redis = kind.uses_redis().then(|| probe.redis_pid()).flatten();
    let store_ticks = || {
        if kind.uses_postgres() {
            postgres_cpu_ticks()
        } else {
            redis.and_then(cpu_ticks)
        }
    };
    let cpu_before = (cpu_ticks(server.child.id()), store_ticks());
    let outcome: Outcome = run_wrk(LOAD_CORE, &url, &script, CONNECTIONS, settings.duration)?;
    let cpu_after = (cpu_ticks(server.child.id()), store_ticks());
    let commands_after = probe.redis_commands(kind);
    let per_request = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(before), Some(after)) if outcome.requests > 0 => {
            Some(after.saturating_sub(before) as f64 * MICROS_PER_TICK / outcome.requests as f64)
        }
        _ => None,
    };
    let app_cpu_us = per_request(cpu_before.0, cpu_after.0);
    let store_cpu_us = per_request(cpu_before.1, cpu_after.1);
    let commands = match (commands_before, commands_after) {
        (Some(before), Some(after)) if outcome.requests > 0 => {
            Some((after.saturating_sub(before)) as f64 / outcome.requests as f64)
        }
        _ => None,
    };
    let final_count = match workload {
        Workload::Hot if kind.has_sessions() => {
            Some(actix_rt::System::new().block_on(read_count(&server.url, &hot_cookie))?)
        }
        _ => None,
    };
    Ok(Run {
        outcome,
        commands_per_request: commands,
        final_count,
        app_cpu_us,
        store_cpu_us,
    })
}

/// A desktop browser's user agent, for the sessions the read and counter
/// workloads use: latchkey records it with each session.
const BROWSER_USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// Creates `count` sessions through `GET /new`, returning each one's `Cookie` value.
async fn create_sessions(base: &str, count: usize) -> Result<Vec<String>, Error> {
    let client = awc::Client::default();
    let mut cookies = Vec::with_capacity(count);
    for _ in 0..count {
        let res = client
            .get(format!("{base}{}", Workload::New.path()))
            .insert_header(("User-Agent", BROWSER_USER_AGENT))
            .send()
            .await
            .map_err(|e| format!("setup request failed: {e}"))?;
        let cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
            .unwrap_or_default();
        cookies.push(cookie);
    }
    Ok(cookies)
}

async fn read_count(base: &str, cookie: &[String]) -> Result<u64, Error> {
    let client = awc::Client::default();
    let mut req = client.get(format!("{base}{}", latchkey_bench::routes::COUNT));
    if let Some(cookie) = cookie.first() {
        req = req.insert_header(("Cookie", cookie.as_str()));
    }
    let mut res = req
        .send()
        .await
        .map_err(|e| format!("count request failed: {e}"))?;
    let body = res.body().await?;
    Ok(String::from_utf8_lossy(&body).trim().parse().unwrap_or(0))
}

/// Linux accounts process CPU time in ticks of 10 ms (`CLK_TCK` = 100).
const MICROS_PER_TICK: f64 = 10_000.0;

/// A process's user plus system CPU time so far, in ticks, from `/proc`.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The CPU time so far of every PostgreSQL server process (backends, WAL
/// writer, checkpointer, autovacuum), in ticks. The benchmark is the only
/// client while it runs, so their growth is the store's cost of its load.
fn postgres_cpu_ticks() -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let is_postgres = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end() == "postgres");
        if is_postgres {
            total += cpu_ticks(pid).unwrap_or(0);
        }
    }
    Some(total)
}

const BEGIN: &str = "<!-- latchkey-bench:begin -->";
const END: &str = "<!-- latchkey-bench:end -->";

/// Replaces the benchmark's section of `path`, or appends one.
fn write_section(path: &Path, markdown: &str) -> std::io::Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{BEGIN}\n{markdown}\n{END}");
    let updated = match (current.find(BEGIN), current.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!(
                "{}{section}{}",
                &current[..begin],
                &current[end + END.len()..]
            )
        }
        _ => format!("{}\n{section}\n", current.trim_end()),
    };
    std::fs::write(path, updated)
}
