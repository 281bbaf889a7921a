//! Simulator property tests (layer 2 of the test pyramid): random fault schedules
//! against the three invariants, the two-liar counterexample that shows why the
//! assumption matters, and the drill's behaviour on scenario files.

use sre_core::RegionId;
use sre_failover::drill::{self, DrillError, DrillOptions, Verdict};
use sre_failover::sim::{self, Endpoint, Fault, RandomKnobs, SimSpec, TimedFault, run_random};
use sre_failover::{FailoverConfig, Mode, Quorum, Timings, WitnessLossPolicy};
use std::path::Path;
use std::time::Duration;

fn config(regions: &[&str]) -> FailoverConfig {
    FailoverConfig {
        regions: regions.iter().map(|r| RegionId::from(*r)).collect(),
        this_region: RegionId::from(regions[0]),
        timings: Timings::handbook(),
        mode: Mode::Automatic,
        witness_loss: WitnessLossPolicy::DnsQuorum,
        quorum: Quorum::TWO_OF_THREE,
    }
}

/// Invariants (a), (b), (c) over 1000 random schedules within the assumptions, 2 and 3
/// regions. A failure names the seed; replay it with
/// `cargo run --release -p sre-failover --features sim --example soak -- seed=SEED REGIONS`.
/// Seeds the soak found split brains with, kept as regression cases (odd: 3 regions).
/// 30511: a witness-loss active kept its authority while a returning region, hidden from
/// it by a lying resolver with another one down, won the lease (rule A6, README).
const REGRESSIONS: [u64; 1] = [30511];

#[test]
fn random_schedules_keep_the_invariants() {
    let (two, three) = (config(&["eu", "us"]), config(&["eu", "us", "ap"]));
    let mut worst: f64 = 0.0;
    for seed in (0..1000u64).chain(REGRESSIONS) {
        let (cfg, k) = if seed % 2 == 0 {
            (&two, 2)
        } else {
            (&three, 3)
        };
        let out = run_random(
            cfg,
            seed,
            RandomKnobs {
                within_assumptions: true,
                regions: k,
                record_timeline: false,
            },
        );
        let r = &out.report;
        assert!(
            !r.split_brain,
            "(a) split brain: seed={seed} regions={k} at {:?}s",
            r.split_brain_at_s
        );
        assert!(
            !r.generation_regressed,
            "(c) generation went backwards: seed={seed} regions={k}"
        );
        assert!(
            out.active_at_crash,
            "no region active 120s after every fault healed: seed={seed} regions={k}"
        );
        let t = out.promotion_s.unwrap_or(f64::INFINITY);
        assert!(
            t <= out.bound_s,
            "(b) promotion took {t}s > {}s: seed={seed} regions={k}",
            out.bound_s
        );
        worst = worst.max(t);
    }
    assert!(
        worst > 30.0,
        "promotions cannot beat TTL: worst was {worst}s"
    );
}

fn liar_spec(liars: &[usize]) -> SimSpec {
    // The witness is gone for everyone; the active keeps serving on the DNS quorum.
    // Lying resolvers tell each region "you are reachable, the other is not".
    let mut faults = vec![TimedFault {
        at: Duration::from_secs(40),
        fault: Fault::Partition(Endpoint::Witness, Endpoint::Internet),
    }];
    for k in liars {
        faults.push(TimedFault {
            at: Duration::from_secs(45),
            fault: Fault::ResolverLie(*k),
        });
    }
    SimSpec {
        config: config(&["eu", "us"]),
        resolvers: vec!["google".into(), "cloudflare".into(), "quad9".into()],
        tick: Duration::from_millis(500),
        duration: Duration::from_secs(200),
        witness_delay: Duration::from_millis(50),
        faults,
        record_timeline: true,
    }
}

#[test]
fn one_liar_is_outvoted_but_two_liars_make_a_split_brain_and_the_checker_sees_it() {
    let one = sim::run(&liar_spec(&[2]));
    assert!(
        !one.split_brain,
        "one liar must not split: {:#?}",
        one.timeline
    );
    assert_eq!(one.intervals.len(), 1);
    let two = sim::run(&liar_spec(&[1, 2]));
    assert!(
        two.split_brain,
        "two liars are outside the assumptions and must show"
    );
    assert_eq!(two.max_concurrent_active, 2);
    assert!(two.timeline.iter().any(|e| e.event.contains("SPLIT BRAIN")));
}

#[test]
fn outside_the_assumptions_random_schedules_do_find_split_brains() {
    let cfg = config(&["eu", "us"]);
    let found = (0..300u64).any(|seed| {
        run_random(
            &cfg,
            seed,
            RandomKnobs {
                within_assumptions: false,
                regions: 2,
                record_timeline: false,
            },
        )
        .report
        .split_brain
    });
    assert!(
        found,
        "several liars and wild drift should break safety somewhere in 300 schedules"
    );
}

fn parse(text: &str) -> Result<drill::Scenario, DrillError> {
    drill::parse_scenario(Path::new("game.yaml"), text)
}

#[test]
fn scenario_files_run_and_bad_ones_name_the_line() {
    let ok = "name: custom\nregions: [a, b]\nduration: 200s\nexpect_promotion: true\nevents:\n  - at: 60s\n    partition: [a, internet]\n  - at: 70s\n    skew: b -3s\n  - at: 80s\n    resolver-lie: quad9\n";
    let s = parse(ok).expect("valid scenario");
    let r = drill::run_scenario(&s);
    assert!(r.passed, "{:?}", r.failures);
    assert!(r.promote_after_s.is_some());

    let unknown =
        "regions: [a, b]\nevents:\n  - at: 10s\n    crash: a\n  - at: 20s\n    crash: c\n";
    match parse(unknown) {
        Err(DrillError::BadScenario { line, reason, .. }) => {
            assert_eq!(line, Some(5));
            assert!(reason.contains("unknown region \"c\""), "{reason}");
        }
        other => panic!("expected a bad scenario, got {other:?}"),
    }
    let typo = "regions: [a, b]\nevents:\n  - at: 10s\n    crsh: a\n";
    assert!(matches!(
        parse(typo),
        Err(DrillError::BadScenario { line: Some(4), .. })
    ));
    let unsafe_t = "regions: [a, b]\ntimings:\n  retries: 3\n";
    match parse(unsafe_t) {
        Err(DrillError::BadScenario { line, reason, .. }) => {
            assert_eq!(line, Some(2));
            assert!(reason.contains("unsafe timings"), "{reason}");
        }
        other => panic!("expected unsafe timings, got {other:?}"),
    }
    assert!(matches!(
        drill::run(&DrillOptions {
            scenarios: vec!["nope".into()],
            ..DrillOptions::default()
        }),
        Err(DrillError::UnknownScenario { .. })
    ));
}

#[test]
fn drill_json_has_the_promised_shape() {
    let r = drill::run(&DrillOptions {
        scenarios: vec!["clean-failover".into()],
        ..DrillOptions::default()
    })
    .expect("built-in");
    assert_eq!(r.verdict, Verdict::Pass);
    let v = serde_json::to_value(&r).expect("serialises");
    assert_eq!(v["verdict"], "pass");
    let s = &v["scenarios"][0];
    assert_eq!(s["name"], "clean-failover");
    assert_eq!(s["split_brain"], false);
    assert_eq!(s["max_concurrent_active"], 1);
    assert!(
        s["promote_after_s"]
            .as_f64()
            .is_some_and(|t| t > 30.0 && t <= 48.0)
    );
    assert!(s["events"].as_array().is_some_and(|e| !e.is_empty()));
}
