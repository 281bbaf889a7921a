//! The game day behind `sre drill`: built-in scenarios on embedded defaults, scenario
//! files in YAML, and a report with a verdict. The binary only parses flags, calls
//! [`run`] and prints [`render_text`] or the JSON form of [`DrillReport`].

use crate::lint;
use crate::model::{FailoverConfig, Mode, Quorum, RawTimings, WitnessLossPolicy, validate_regions};
use crate::sim::{self, Endpoint, Fault, SimSpec, TimedFault, TimelineEvent};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// What a scenario must show besides "no split brain, generations only grow".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Expect {
    /// Some(true): after the first loss of the active, another region must be active
    /// within the promotion bound. Some(false): the first active must never be lost.
    pub promotion: Option<bool>,
    /// A region must be active when the run ends.
    pub active_at_end: bool,
}

/// A named, runnable scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Its name (`--scenario NAME`).
    pub name: String,
    /// One line saying what it shows.
    pub description: String,
    /// The simulation.
    pub spec: SimSpec,
    /// What must hold.
    pub expect: Expect,
}

/// The result of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    /// The scenario's name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Two regions acted as active at the same time.
    pub split_brain: bool,
    /// Most regions active at once.
    pub max_concurrent_active: usize,
    /// Seconds from the first loss of the active to the next active (null if none).
    pub promote_after_s: Option<f64>,
    /// The promotion bound it was held to, in seconds.
    pub bound_s: f64,
    /// A generation went backwards.
    pub generation_regressed: bool,
    /// Whether the scenario passed.
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub failures: Vec<String>,
    /// Who was active when, with which generation.
    pub authority: Vec<sim::AuthorityInterval>,
    /// The timeline.
    pub events: Vec<TimelineEvent>,
}

/// Pass or fail, as the JSON's top-level `verdict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every scenario passed.
    Pass,
    /// At least one failed.
    Fail,
}

/// Everything a drill found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillReport {
    /// Pass only if every scenario passed.
    pub verdict: Verdict,
    /// The seed used for delays and clock drift.
    pub seed: u64,
    /// Per scenario.
    pub scenarios: Vec<ScenarioResult>,
}

/// Why a drill could not run (the binary exits 64 for all of these).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DrillError {
    /// `--scenario` named something that is not built in.
    #[error("unknown scenario {name:?}; built in: {known}")]
    UnknownScenario {
        /// The name given.
        name: String,
        /// The built-in names, comma-separated.
        known: String,
    },
    /// A scenario file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// A scenario file is wrong.
    #[error("{path}:{line}: {reason}", line = line.map_or_else(|| "?".to_string(), |l| l.to_string()))]
    BadScenario {
        /// The file.
        path: PathBuf,
        /// 1-based line, where known.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
}

impl DrillError {
    /// Stable label for logs and metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownScenario { .. } => "unknown-scenario",
            Self::Io { .. } => "io",
            Self::BadScenario { .. } => "bad-scenario",
        }
    }
}

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillOptions {
    /// Built-in scenarios by name; all of them when this and `files` are empty.
    pub scenarios: Vec<String>,
    /// Scenario files.
    pub files: Vec<PathBuf>,
    /// Seed for witness delay and clock drift.
    pub seed: u64,
}

const RESOLVERS: [&str; 3] = ["google", "cloudflare", "quad9"];

fn base_config(regions: &[&str]) -> FailoverConfig {
    FailoverConfig {
        regions: regions
            .iter()
            .map(|r| sre_core::RegionId::from(*r))
            .collect(),
        this_region: sre_core::RegionId::from(regions[0]),
        timings: crate::model::Timings::handbook(),
        mode: Mode::Automatic,
        witness_loss: WitnessLossPolicy::DnsQuorum,
        quorum: Quorum::TWO_OF_THREE,
    }
}

fn at(s: u64, fault: Fault) -> TimedFault {
    TimedFault {
        at: Duration::from_secs(s),
        fault,
    }
}

/// The names of the built-in scenarios, in the order they run.
pub const BUILTIN: [&str; 7] = [
    "clean-failover",
    "region-partition",
    "witness-loss-dns-quorum",
    "witness-loss-lying-resolver",
    "clock-skew",
    "flapping-network",
    "crash-during-promotion",
];

/// The built-in scenarios: two regions (`eu` first in promotion order, `us`), a witness
/// and three resolvers, handbook timings. `seed` picks the witness delay and clock drift.
#[must_use]
#[allow(clippy::too_many_lines)] // one literal list of scenarios reads best in one place
pub fn builtin(seed: u64) -> Vec<Scenario> {
    use Endpoint::{Internet, Region, Resolver, Witness};
    let mut rng = SmallRng::seed_from_u64(seed);
    let delay = Duration::from_millis(rng.random_range(10..=300));
    let drift: [i32; 2] = [
        rng.random_range(-1000..=1000),
        rng.random_range(-1000..=1000),
    ];
    let (eu, us) = (0, 1);
    let spec = |faults: Vec<TimedFault>| {
        let mut f = vec![
            at(0, Fault::Drift(eu, drift[0])),
            at(0, Fault::Drift(us, drift[1])),
        ];
        f.extend(faults);
        SimSpec {
            config: base_config(&["eu", "us"]),
            resolvers: RESOLVERS.iter().map(ToString::to_string).collect(),
            tick: Duration::from_millis(500),
            duration: Duration::from_mins(4),
            witness_delay: delay,
            faults: f,
            record_timeline: true,
        }
    };
    let promote = Expect {
        promotion: Some(true),
        active_at_end: true,
    };
    let hold = Expect {
        promotion: Some(false),
        active_at_end: true,
    };
    let mut flaps = Vec::new();
    for k in 0..20 {
        flaps.push(at(40 + k * 6, Fault::Partition(Region(eu), Internet)));
        flaps.push(at(43 + k * 6, Fault::Heal(Region(eu), Internet)));
    }
    let scenario = |name: &str, description: &str, spec: SimSpec, expect: Expect| Scenario {
        name: name.into(),
        description: description.into(),
        spec,
        expect,
    };
    vec![
        scenario(
            "clean-failover",
            "the active region crashes; the standby takes the lease once it lapsed",
            spec(vec![at(60, Fault::Crash(eu))]),
            promote,
        ),
        scenario(
            "region-partition",
            "the regions cannot see each other but both reach the witness: the active keeps renewing, nobody promotes",
            spec(vec![
                at(60, Fault::Partition(Region(eu), Region(us))),
                at(150, Fault::Heal(Region(eu), Region(us))),
            ]),
            hold,
        ),
        scenario(
            "witness-loss-dns-quorum",
            "the witness goes away; the active keeps serving on the DNS quorum, then crashes and the standby promotes on the quorum",
            spec(vec![
                at(50, Fault::Partition(Witness, Internet)),
                at(100, Fault::Crash(eu)),
            ]),
            promote,
        ),
        scenario(
            "witness-loss-lying-resolver",
            "witness gone and one resolver lies that the active is unreachable: the other two outvote it; a real crash later is still detected",
            spec(vec![
                at(50, Fault::Partition(Witness, Internet)),
                at(60, Fault::ResolverLie(2)),
                at(160, Fault::Crash(eu)),
            ]),
            promote,
        ),
        scenario(
            "clock-skew",
            "wall clocks 5s apart in opposite directions and monotonic drift; the active crashes",
            spec(vec![
                at(20, Fault::Skew(eu, 5000)),
                at(20, Fault::Skew(us, -5000)),
                at(20, Fault::Drift(eu, 3000)),
                at(20, Fault::Drift(us, -3000)),
                at(100, Fault::Crash(eu)),
            ]),
            promote,
        ),
        scenario(
            "flapping-network",
            "the active's internet link flaps (3s down, 3s up) for two minutes; it never lapses and nobody else promotes",
            spec(flaps),
            hold,
        ),
        scenario(
            "crash-during-promotion",
            "the active crashes, the standby crashes right after winning the lease; both restart and one takes the lapsed lease",
            spec(vec![
                at(60, Fault::Crash(eu)),
                at(97, Fault::Crash(us)),
                at(110, Fault::Restart(eu)),
                at(130, Fault::Restart(us)),
                at(131, Fault::Partition(Region(us), Resolver(0))),
                at(140, Fault::Heal(Region(us), Resolver(0))),
            ]),
            Expect {
                promotion: Some(true),
                active_at_end: true,
            },
        ),
    ]
}

/// Runs one scenario and judges it.
#[must_use]
pub fn run_scenario(s: &Scenario) -> ScenarioResult {
    let report = sim::run(&s.spec);
    let bound = sim::promotion_bound(
        &s.spec,
        s.spec.witness_delay.max(Duration::from_millis(900)),
    );
    let bound_s = bound.as_secs_f64();
    let promote_after_s = report.first_promotion_after_loss();
    let mut failures = Vec::new();
    if report.split_brain {
        failures.push(format!(
            "split brain at {:.1}s: {} regions active at once",
            report.split_brain_at_s.unwrap_or_default(),
            report.max_concurrent_active
        ));
    }
    if report.generation_regressed {
        failures.push("a generation went backwards".into());
    }
    match (s.expect.promotion, promote_after_s) {
        (Some(true), None) => {
            failures.push("expected a promotion after the active was lost; none happened".into());
        }
        (Some(true), Some(t)) if t > bound_s => {
            failures.push(format!(
                "took {t:.1}s to promote, over the bound of {bound_s:.1}s"
            ));
        }
        (Some(false), _) if !report.outages.is_empty() || report.intervals.len() != 1 => {
            failures.push(format!(
                "expected the first active to keep serving; saw {} authority intervals",
                report.intervals.len()
            ));
        }
        _ => {}
    }
    if s.expect.active_at_end && report.intervals.last().is_none_or(|i| i.until_s.is_some()) {
        failures.push("no region is active at the end".into());
    }
    ScenarioResult {
        name: s.name.clone(),
        description: s.description.clone(),
        split_brain: report.split_brain,
        max_concurrent_active: report.max_concurrent_active,
        promote_after_s,
        bound_s,
        generation_regressed: report.generation_regressed,
        passed: failures.is_empty(),
        failures,
        authority: report.intervals,
        events: report.timeline,
    }
}

/// Runs what `opts` asks for.
pub fn run(opts: &DrillOptions) -> Result<DrillReport, DrillError> {
    let all = builtin(opts.seed);
    let mut chosen: Vec<Scenario> = Vec::new();
    for name in &opts.scenarios {
        let s =
            all.iter()
                .find(|s| s.name == *name)
                .ok_or_else(|| DrillError::UnknownScenario {
                    name: name.clone(),
                    known: BUILTIN.join(", "),
                })?;
        chosen.push(s.clone());
    }
    for path in &opts.files {
        chosen.push(load_scenario(path)?);
    }
    if opts.scenarios.is_empty() && opts.files.is_empty() {
        chosen = all;
    }
    let scenarios: Vec<ScenarioResult> = chosen.iter().map(run_scenario).collect();
    let verdict = if scenarios.iter().all(|s| s.passed) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    Ok(DrillReport {
        verdict,
        seed: opts.seed,
        scenarios,
    })
}

/// The human-readable report: a timeline per scenario and the verdicts.
#[must_use]
pub fn render_text(r: &DrillReport) -> String {
    let mut out = String::new();
    for s in &r.scenarios {
        let _ = writeln!(out, "== {} — {}", s.name, s.description);
        for e in &s.events {
            let _ = writeln!(
                out,
                "  {:>7.1}s  {:<9} {}",
                e.at_s,
                e.region.as_deref().unwrap_or(""),
                e.event
            );
        }
        let promote = s.promote_after_s.map_or_else(
            || "no promotion".to_string(),
            |t| {
                format!(
                    "promoted {t:.1}s after the active was lost (bound {:.1}s)",
                    s.bound_s
                )
            },
        );
        let _ = writeln!(
            out,
            "  -> {}: split brain: {}, max concurrent active: {}, {}",
            if s.passed { "PASS" } else { "FAIL" },
            if s.split_brain { "YES" } else { "no" },
            s.max_concurrent_active,
            promote
        );
        for f in &s.failures {
            let _ = writeln!(out, "     ! {f}");
        }
        out.push('\n');
    }
    let passed = r.scenarios.iter().filter(|s| s.passed).count();
    let _ = writeln!(
        out,
        "verdict: {} ({passed}/{} scenarios passed, seed {})",
        if r.verdict == Verdict::Pass {
            "PASS"
        } else {
            "FAIL"
        },
        r.scenarios.len(),
        r.seed
    );
    out
}

/// A scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    #[serde(default)]
    description: String,
    regions: Vec<String>,
    #[serde(default)]
    resolvers: Option<Vec<String>>,
    #[serde(default)]
    timings: RawTimings,
    #[serde(default = "d_policy")]
    witness_loss: WitnessLossPolicy,
    #[serde(default = "d_tick", with = "humantime_serde")]
    tick: Duration,
    #[serde(default = "d_duration", with = "humantime_serde")]
    duration: Duration,
    #[serde(default = "d_delay", with = "humantime_serde")]
    witness_delay: Duration,
    #[serde(default)]
    expect_promotion: Option<bool>,
    #[serde(default)]
    events: Vec<RawEvent>,
}

fn d_policy() -> WitnessLossPolicy {
    WitnessLossPolicy::DnsQuorum
}
fn d_tick() -> Duration {
    Duration::from_millis(500)
}
fn d_duration() -> Duration {
    Duration::from_mins(4)
}
fn d_delay() -> Duration {
    Duration::from_millis(50)
}

/// One timed event: `at` plus exactly one of the fault keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawEvent {
    #[serde(with = "humantime_serde")]
    at: Duration,
    partition: Option<[String; 2]>,
    heal: Option<[String; 2]>,
    crash: Option<String>,
    restart: Option<String>,
    /// `"a +5s"`: set region a's wall clock 5s ahead.
    skew: Option<String>,
    /// `"a +2000"`: region a's monotonic clock runs 2000 ppm fast.
    drift: Option<String>,
    resolver_down: Option<String>,
    resolver_up: Option<String>,
    resolver_lie: Option<String>,
    resolver_honest: Option<String>,
}

fn bad(path: &Path, line: Option<usize>, reason: impl Into<String>) -> DrillError {
    DrillError::BadScenario {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// 1-based line of the `index`-th item of the top-level `events:` list.
fn event_line(text: &str, index: usize) -> Option<usize> {
    let mut lines = text
        .lines()
        .enumerate()
        .skip_while(|(_, l)| !l.starts_with("events:"));
    lines.next()?;
    let mut indent = None;
    let mut seen = 0;
    for (n, l) in lines {
        let trimmed = l.trim_start();
        if !l.is_empty() && !l.starts_with(' ') && !l.starts_with('-') {
            break;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            let ind = l.len() - trimmed.len();
            if *indent.get_or_insert(ind) == ind {
                if seen == index {
                    return Some(n + 1);
                }
                seen += 1;
            }
        }
    }
    None
}

/// Reads and checks a scenario file: every error names the line and the reason; unknown
/// region or resolver names are errors; unsafe timings are refused by the lint.
pub fn load_scenario(path: &Path) -> Result<Scenario, DrillError> {
    let text = std::fs::read_to_string(path).map_err(|source| DrillError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_scenario(path, &text)
}

/// [`load_scenario`] on text already read (`path` is only used in messages).
#[allow(clippy::too_many_lines)]
pub fn parse_scenario(path: &Path, text: &str) -> Result<Scenario, DrillError> {
    let raw: RawScenario = serde_norway::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        bad(path, line, e.to_string())
    })?;
    let line_of = |key: &str| text.lines().position(|l| l.starts_with(key)).map(|n| n + 1);
    let mut errs = Vec::new();
    let regions = validate_regions("regions", &raw.regions, &mut errs);
    if let Some(e) = errs.first() {
        return Err(bad(path, line_of("regions"), e.to_string()));
    }
    let timings = raw.timings.validate(&mut errs);
    if let Some(e) = errs.first() {
        return Err(bad(path, line_of("timings"), e.to_string()));
    }
    let mut config = base_config(&["x"]);
    config.regions.clone_from(&regions);
    config.this_region = regions[0].clone();
    config.timings = timings;
    config.witness_loss = raw.witness_loss;
    let violations = lint::check(&config);
    if !violations.is_empty() {
        let all: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(bad(
            path,
            line_of("timings"),
            format!("unsafe timings: {}", all.join("; ")),
        ));
    }
    if raw.tick.is_zero() || raw.tick > timings.renew_interval {
        return Err(bad(
            path,
            line_of("tick"),
            "tick must be above zero and at most the renew interval",
        ));
    }
    let resolvers = raw
        .resolvers
        .unwrap_or_else(|| RESOLVERS.iter().map(ToString::to_string).collect());
    if resolvers.len() != 3 {
        return Err(bad(
            path,
            line_of("resolvers"),
            "the drill's quorum is 2 of 3: give exactly three resolvers",
        ));
    }
    let region = |name: &str| regions.iter().position(|r| r.as_str() == name);
    let resolver = |name: &str| resolvers.iter().position(|r| r == name);
    let endpoint = |name: &str| -> Option<Endpoint> {
        match name {
            "witness" => Some(Endpoint::Witness),
            "internet" => Some(Endpoint::Internet),
            n => region(n)
                .map(Endpoint::Region)
                .or_else(|| resolver(n).map(Endpoint::Resolver)),
        }
    };
    let mut faults = Vec::new();
    for (i, ev) in raw.events.iter().enumerate() {
        let line = event_line(text, i);
        let err = |reason: String| bad(path, line, format!("event {}: {reason}", i + 1));
        let unknown_region = |n: &str| {
            err(format!(
                "unknown region {n:?} (regions: {})",
                raw.regions.join(", ")
            ))
        };
        let unknown_resolver = |n: &str| {
            err(format!(
                "unknown resolver {n:?} (resolvers: {})",
                resolvers.join(", ")
            ))
        };
        let cut_pair = |pair: &[String; 2]| -> Result<(Endpoint, Endpoint), DrillError> {
            let a = endpoint(&pair[0]).ok_or_else(|| unknown_region(&pair[0]))?;
            let b = endpoint(&pair[1]).ok_or_else(|| unknown_region(&pair[1]))?;
            if a == b {
                return Err(err(format!("cannot cut {:?} from itself", pair[0])));
            }
            Ok((a, b))
        };
        let signed = |spec: &str, what: &str| -> Result<(usize, String), DrillError> {
            let mut it = spec.split_whitespace();
            let (Some(r), Some(v), None) = (it.next(), it.next(), it.next()) else {
                return Err(err(format!("{what} wants \"REGION +VALUE\", got {spec:?}")));
            };
            Ok((region(r).ok_or_else(|| unknown_region(r))?, v.to_string()))
        };
        let mut found = Vec::new();
        if let Some(p) = &ev.partition {
            let (a, b) = cut_pair(p)?;
            found.push(Fault::Partition(a, b));
        }
        if let Some(p) = &ev.heal {
            let (a, b) = cut_pair(p)?;
            found.push(Fault::Heal(a, b));
        }
        if let Some(r) = &ev.crash {
            found.push(Fault::Crash(region(r).ok_or_else(|| unknown_region(r))?));
        }
        if let Some(r) = &ev.restart {
            found.push(Fault::Restart(region(r).ok_or_else(|| unknown_region(r))?));
        }
        if let Some(s) = &ev.skew {
            let (r, v) = signed(s, "skew")?;
            let (neg, body) = match v.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, v.strip_prefix('+').unwrap_or(&v)),
            };
            let d = humantime::parse_duration(body).map_err(|e| err(format!("skew {v:?}: {e}")))?;
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            found.push(Fault::Skew(r, if neg { -ms } else { ms }));
        }
        if let Some(s) = &ev.drift {
            let (r, v) = signed(s, "drift")?;
            let ppm: i32 = v
                .trim_start_matches('+')
                .parse()
                .map_err(|_| err(format!("drift {v:?} is not a ppm integer")))?;
            found.push(Fault::Drift(r, ppm));
        }
        for (value, make) in [
            (&ev.resolver_down, Fault::ResolverDown as fn(usize) -> Fault),
            (&ev.resolver_up, Fault::ResolverUp),
            (&ev.resolver_lie, Fault::ResolverLie),
            (&ev.resolver_honest, Fault::ResolverHonest),
        ] {
            if let Some(n) = value {
                found.push(make(resolver(n).ok_or_else(|| unknown_resolver(n))?));
            }
        }
        match found.as_slice() {
            [f] => faults.push(TimedFault {
                at: ev.at,
                fault: *f,
            }),
            [] => {
                return Err(err(
                    "no event given (partition, heal, crash, restart, skew, drift, resolver-*)"
                        .into(),
                ));
            }
            _ => return Err(err("one event per list item".into())),
        }
        if ev.at > raw.duration {
            return Err(err(format!(
                "at {} is after the end of the run ({})",
                humantime::format_duration(ev.at),
                humantime::format_duration(raw.duration)
            )));
        }
    }
    let name = raw
        .name
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "scenario".into());
    Ok(Scenario {
        name,
        description: if raw.description.is_empty() {
            format!("from {}", path.display())
        } else {
            raw.description
        },
        spec: SimSpec {
            config,
            resolvers,
            tick: raw.tick,
            duration: raw.duration,
            witness_delay: raw.witness_delay,
            faults,
            record_timeline: true,
        },
        expect: Expect {
            promotion: raw.expect_promotion,
            active_at_end: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_found() {
        let t = "regions: [a, b]\nevents:\n  - at: 1s\n    crash: a\n  - at: 2s\n    restart: a\nduration: 3s\n";
        assert_eq!(event_line(t, 0), Some(3));
        assert_eq!(event_line(t, 1), Some(5));
        assert_eq!(event_line(t, 2), None);
    }

    #[test]
    fn every_builtin_scenario_passes_for_several_seeds() {
        for seed in [0, 1, 7, 42] {
            let r = run(&DrillOptions {
                seed,
                ..DrillOptions::default()
            })
            .expect("built-ins always load");
            assert_eq!(r.scenarios.len(), BUILTIN.len());
            for s in &r.scenarios {
                assert!(
                    s.passed,
                    "seed {seed} {}: {:?}\n{}",
                    s.name,
                    s.failures,
                    render_text(&r)
                );
            }
            assert_eq!(r.verdict, Verdict::Pass);
        }
    }
}
