//! Driving load with `wrk` and reading its report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What one `wrk` run measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Completed requests per second.
    pub requests_per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
    /// Completed requests.
    pub requests: u64,
    /// Responses other than 2xx/3xx, plus socket errors.
    pub errors: u64,
}

/// Writes a `wrk` Lua script that requests `path`, rotating through `cookies`
/// (one `Cookie` header value each; none when empty).
///
/// # Errors
///
/// When the script cannot be written.
pub fn write_script(file: &Path, path: &str, cookies: &[String]) -> std::io::Result<()> {
    let list: String = cookies
        .iter()
        .map(|c| format!("  \"{}\",\n", c.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    let script = format!(
        r#"local cookies = {{
{list}}}
local i = 0
request = function()
  if #cookies == 0 then
    return wrk.format("GET", "{path}")
  end
  i = i + 1
  return wrk.format("GET", "{path}", {{ ["Cookie"] = cookies[(i % #cookies) + 1] }})
end
"#
    );
    std::fs::write(file, script)
}

/// Runs `wrk` pinned to `core` for `duration` (whole seconds, at least one: wrk
/// takes no finer unit) with `connections` connections.
///
/// # Errors
///
/// When `wrk` cannot run or its report cannot be read.
pub fn run_wrk(
    core: usize,
    url: &str,
    script: &Path,
    connections: usize,
    duration: Duration,
) -> std::io::Result<Outcome> {
    let output = Command::new("taskset")
        .arg("-c")
        .arg(core.to_string())
        .arg("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs().max(1)),
            "--latency",
            "--timeout",
            "5s",
        ])
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot run wrk ({e}); install it: apt-get install wrk"),
            )
        })?;
    if !output.status.success() {
        return Err(std::io::Error::other(format!(
            "wrk failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    parse(&String::from_utf8_lossy(&output.stdout))
}

fn duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// Reads `wrk --latency` output.
///
/// # Errors
///
/// When the figures are missing.
pub fn parse(report: &str) -> std::io::Result<Outcome> {
    let mut outcome = Outcome::default();
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rps] => outcome.requests_per_sec = rps.parse().unwrap_or(0.0),
            ["50%", latency] => outcome.p50 = duration(latency).unwrap_or_default(),
            ["99%", latency] => outcome.p99 = duration(latency).unwrap_or_default(),
            [count, "requests", "in", ..] => outcome.requests = count.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                outcome.errors += n.parse::<u64>().unwrap_or(0)
            }
            ["Socket", "errors:", rest @ ..] => {
                outcome.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if outcome.requests_per_sec == 0.0 && outcome.requests == 0 {
        return Err(std::io::Error::other(format!(
            "no figures in wrk's report:\n{report}"
        )));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let report = "Running 1s test @ http://127.0.0.1:1/read
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  300.00us   9.00ms   90.00%
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%    1.50ms
     99%    3.25ms
  52000 requests in 1.00s, 7.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  51999.50
Transfer/sec:      6.99MB
";
        let outcome = parse(report).unwrap();
        assert_eq!(outcome.requests, 52_000);
        assert_eq!(outcome.errors, 8);
        assert_eq!(outcome.p50, Duration::from_micros(812));
        assert_eq!(outcome.p99, Duration::from_micros(3250));
        assert!((outcome.requests_per_sec - 51_999.5).abs() < 0.01);
    }
}
