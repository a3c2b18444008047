//! Seeded simulator runs of the shared state.
//!
//! `SIM_SEEDS=n cargo test --features sim state_seeded` changes how many
//! runs (default 2,000); `SEED=0x… cargo test state_seeded -- --nocapture`
//! replays one with its trace.

use super::state::{run, seed_of, Report, RunOpts};
use crate::state::mutation::Mutation;

fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Runs `count` seeds on all cores; returns the reports in seed order.
fn run_many(count: u64, mutation: Mutation) -> Vec<Report> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8) as u64;
    let mut reports: Vec<Report> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (0..count).filter(|k| k % threads == t).map(|k| run(seed_of(k), RunOpts { trace: false, mutation })).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    reports.sort_by_key(|r| r.seed);
    reports
}

#[test]
fn state_seeded_runs_converge_to_the_oracle() {
    if let Some(seed) = std::env::var("SEED").ok().as_deref().and_then(parse_seed) {
        let r = run(seed, RunOpts { trace: true, mutation: Mutation::None });
        for l in &r.trace {
            println!("{l}");
        }
        println!("SEED={seed:#x} committed={} conflicts={} sessions={} hash={:#x}", r.committed, r.conflicts, r.sessions, r.hash);
        assert!(r.violations.is_empty(), "SEED={seed:#x}: {:#?}", r.violations);
        return;
    }
    let count = std::env::var("SIM_SEEDS").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(2_000);
    let reports = run_many(count, Mutation::None);
    let committed: usize = reports.iter().map(|r| r.committed).sum();
    let conflicts: usize = reports.iter().map(|r| r.conflicts).sum();
    let sessions: usize = reports.iter().map(|r| r.sessions).sum();
    let steps: u64 = reports.iter().map(|r| r.steps).sum();
    println!(
        "state sim: {} runs, {committed} writes committed, {conflicts} conflict entries, {sessions} reconciliations, {steps} simulated events",
        reports.len()
    );
    let failed: Vec<&Report> = reports.iter().filter(|r| !r.violations.is_empty()).collect();
    for r in failed.iter().take(8) {
        eprintln!("SEED={:#x}: {}", r.seed, r.violations[0]);
    }
    if let Some(r) = failed.first() {
        panic!("{} of {} runs failed; first SEED={:#x}: {:#?}", failed.len(), reports.len(), r.seed, r.violations);
    }
    assert_eq!(reports.len() as u64, count);
    assert!(conflicts > 0 && committed > 0);
}

#[test]
fn state_same_seed_same_trace() {
    for k in 0..10 {
        let a = run(seed_of(k), RunOpts::default());
        let b = run(seed_of(k), RunOpts { trace: true, mutation: Mutation::None });
        assert_eq!((a.hash, a.steps), (b.hash, b.steps), "seed {k} is not deterministic");
        assert!(!b.trace.is_empty());
    }
    assert_ne!(run(seed_of(1), RunOpts::default()).hash, run(seed_of(2), RunOpts::default()).hash);
}

/// Each deliberately broken rule must make the checker object within a
/// few hundred seeds.
#[test]
fn state_broken_rules_are_caught() {
    for m in [Mutation::IgnoreUpdatedAt, Mutation::CounterMax, Mutation::AuditWithoutContext, Mutation::AuditNothing, Mutation::IgnoreMissing] {
        let caught = (0..400).find_map(|k| {
            let r = run(seed_of(1_000_000 + k), RunOpts { trace: false, mutation: m });
            (!r.violations.is_empty()).then(|| (k + 1, r.seed, r.violations[0].clone()))
        });
        let (runs, seed, why) = caught.unwrap_or_else(|| panic!("{m:?} was never caught"));
        println!("{m:?} caught after {runs} runs, SEED={seed:#x}: {why}");
    }
}
