//! Soak: runs N random schedules (default 100000) on the simulator and prints how many
//! ran, how many ended in split brain, and the worst promotion time after the active was
//! lost. `cargo xtask soak failover` runs it in release.
//!
//! Usage: `cargo run --release -p sre-failover --features sim --example soak -- [N] [REGIONS]`

use sre_core::RegionId;
use sre_failover::sim::{RandomKnobs, run_random};
use sre_failover::{FailoverConfig, Mode, Quorum, Timings, WitnessLossPolicy};
use std::process::ExitCode;

const NAMES: [&str; 4] = ["eu", "us", "ap", "sa"];

fn config(k: usize) -> FailoverConfig {
    FailoverConfig {
        regions: NAMES[..k].iter().map(|r| RegionId::from(*r)).collect(),
        this_region: RegionId::from(NAMES[0]),
        timings: Timings::handbook(),
        mode: Mode::Automatic,
        witness_loss: WitnessLossPolicy::DnsQuorum,
        quorum: Quorum::TWO_OF_THREE,
    }
}

/// `soak seed=S [REGIONS]`: replays one schedule with its timeline.
fn replay(seed: u64, k: usize) -> ExitCode {
    let out = run_random(
        &config(k),
        seed,
        RandomKnobs {
            within_assumptions: true,
            regions: k,
            record_timeline: true,
        },
    );
    for e in &out.report.timeline {
        println!(
            "{:>8.2}s {:<4} {}",
            e.at_s,
            e.region.as_deref().unwrap_or("-"),
            e.event
        );
    }
    println!(
        "split_brain={} regressed={} active_at_crash={} promotion={:?}",
        out.report.split_brain,
        out.report.generation_regressed,
        out.active_at_crash,
        out.promotion_s
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if let Some(seed) = args
        .peek()
        .and_then(|a| a.strip_prefix("seed="))
        .and_then(|s| s.parse::<u64>().ok())
    {
        return replay(seed, args.nth(1).and_then(|a| a.parse().ok()).unwrap_or(2));
    }
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let regions: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let (mut split, mut worst, mut not_promoted, mut no_active, mut over_bound, mut regressed) =
        (0u64, 0f64, 0u64, 0u64, 0u64, 0u64);
    let mut first_bad = None;
    for seed in 0..n {
        // Alternate 2- and 3-region layouts unless told, so both are soaked.
        let k = if regions >= 2 {
            regions.min(4)
        } else {
            2 + usize::try_from(seed % 2).unwrap_or(0)
        };
        let config = config(k);
        let out = run_random(
            &config,
            seed,
            RandomKnobs {
                within_assumptions: true,
                regions: k,
                record_timeline: false,
            },
        );
        if out.report.split_brain {
            split += 1;
            first_bad.get_or_insert(seed);
        }
        regressed += u64::from(out.report.generation_regressed);
        if out.report.generation_regressed && regressed <= 3 {
            println!("generation regressed: seed {seed} regions {k}");
        }
        match (out.active_at_crash, out.promotion_s) {
            (false, _) => {
                no_active += 1;
                if no_active <= 3 {
                    println!("no active at probe: seed {seed} regions {k}");
                }
            }
            (true, None) => not_promoted += 1,
            (true, Some(t)) => {
                worst = worst.max(t);
                over_bound += u64::from(t > out.bound_s);
            }
        }
    }
    println!("schedules            {n}");
    println!("split-brain          {split}");
    println!("generation regressed {regressed}");
    println!(
        "worst promotion      {worst:.1}s (bound TTL + renew + skew = 45s, plus ticks and witness round trip)"
    );
    println!("over the bound       {over_bound}");
    println!("not promoted         {not_promoted}");
    println!("no active at probe   {no_active}");
    if let Some(seed) = first_bad {
        println!("first split-brain seed: {seed}");
    }
    if split == 0 && regressed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
