//! Seeded simulator runs of the election.
//!
//! `SIM_SEEDS=n cargo test seeded` changes how many runs (default 10,000);
//! `SEED=0x… cargo test seeded -- --nocapture` replays one run and prints its
//! trace (`SIM_KIND=sync|faulty|crash` for a seed printed by a mutation test;
//! those replay without the mutation, so they pass).

use super::election::{failover, run, HubFailure, Kind, Report, RunOpts, Scenario};
use super::trace::mix;
use crate::election::Config;
use crate::election::Mutation;

/// The scenario seed of run number `k`.
fn seed_of(k: u64) -> u64 {
    mix(0x7e4_u64 << 32 | k)
}

/// 20 % no-fault-but-racy, 10 % crash-heavy, 70 % everything.
fn kind_of(seed: u64) -> Kind {
    match seed % 10 {
        0 | 1 => Kind::Sync,
        2 => Kind::CrashHeavy,
        _ => Kind::Faulty,
    }
}

fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn print_failure(sc: &Scenario, r: &Report, mutation: Mutation) {
    let full = run(
        sc,
        &RunOpts {
            trace: true,
            mutation,
        },
    );
    let tail = full.trace.len().saturating_sub(400);
    eprintln!(
        "---- trace (last {} of {} lines) ----",
        full.trace.len() - tail,
        full.trace.len()
    );
    for l in &full.trace[tail..] {
        eprintln!("{l}");
    }
    eprintln!("scenario: {sc:#?}");
    eprintln!("SEED={:#x} kind={:?} violations:", r.seed, r.kind);
    for v in &r.violations {
        eprintln!("  {v}");
    }
}

/// Runs `count` seeds on all cores; returns the reports in seed order.
fn run_many(count: u64, mutation: Mutation, kind: Option<Kind>) -> Vec<Report> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8) as u64;
    let mut reports: Vec<Report> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (0..count)
                        .filter(|k| k % threads == t)
                        .map(|k| {
                            let seed = seed_of(k);
                            let sc =
                                Scenario::generate(seed, kind.unwrap_or_else(|| kind_of(seed)));
                            run(
                                &sc,
                                &RunOpts {
                                    trace: false,
                                    mutation,
                                },
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    reports.sort_by_key(|r| r.seed);
    reports
}

#[test]
fn seeded_runs_keep_one_hub_per_term() {
    if let Some(seed) = std::env::var("SEED").ok().as_deref().and_then(parse_seed) {
        // SIM_KIND=sync|faulty|crash replays a seed printed by the mutation tests
        let kind = match std::env::var("SIM_KIND").as_deref() {
            Ok("sync") => Kind::Sync,
            Ok("faulty") => Kind::Faulty,
            Ok("crash") => Kind::CrashHeavy,
            _ => kind_of(seed),
        };
        let sc = Scenario::generate(seed, kind);
        let r = run(
            &sc,
            &RunOpts {
                trace: true,
                mutation: Mutation::None,
            },
        );
        for l in &r.trace {
            println!("{l}");
        }
        println!(
            "SEED={seed:#x} kind={:?} hash={:#x} settle={:?}/{} ms",
            r.kind, r.hash, r.settle_ms, r.bound_ms
        );
        if !r.violations.is_empty() {
            print_failure(&sc, &r, Mutation::None);
            panic!("SEED={seed:#x} failed");
        }
        return;
    }
    let count = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(10_000);
    let reports = run_many(count, Mutation::None, None);
    let failed: Vec<&Report> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .collect();
    let steps: u64 = reports.iter().map(|r| r.steps).sum();
    let elections: usize = reports.iter().map(|r| r.elections).sum();
    let collisions: usize = reports.iter().map(|r| r.number_collisions).sum();
    let worst = reports
        .iter()
        .filter_map(|r| {
            r.settle_ms
                .map(|s| (s as f64 / r.bound_ms.max(1) as f64, s, r.bound_ms, r.seed))
        })
        .fold((0.0, 0, 0, 0), |a, b| if b.0 > a.0 { b } else { a });
    println!(
        "{} runs ({} sync, {} crash-heavy), {steps} simulated events, {elections} hubs elected, \
         {collisions} term-number collisions (all outside sync runs), worst settle {} ms of bound {} ms \
         ({:.0} %, SEED={:#x})",
        reports.len(),
        reports.iter().filter(|r| r.kind == Kind::Sync).count(),
        reports.iter().filter(|r| r.kind == Kind::CrashHeavy).count(),
        worst.1,
        worst.2,
        worst.0 * 100.0,
        worst.3
    );
    if let Some(r) = failed.first() {
        let sc = Scenario::generate(r.seed, r.kind);
        print_failure(&sc, r, Mutation::None);
        panic!(
            "{} of {} runs failed; first SEED={:#x}",
            failed.len(),
            reports.len(),
            r.seed
        );
    }
    assert_eq!(reports.len() as u64, count);
}

#[test]
fn same_seed_same_trace_hash() {
    for k in 0..30 {
        let seed = seed_of(k);
        let sc = Scenario::generate(seed, kind_of(seed));
        let a = run(&sc, &RunOpts::default());
        let b = run(&sc, &RunOpts::default());
        assert_eq!(a.hash, b.hash, "SEED={seed:#x} is not deterministic");
        assert_eq!(a.steps, b.steps);
        // the text trace is the same run
        let c = run(
            &sc,
            &RunOpts {
                trace: true,
                mutation: Mutation::None,
            },
        );
        assert_eq!(a.hash, c.hash);
        assert!(!c.trace.is_empty());
    }
    let h = |k| {
        run(
            &Scenario::generate(seed_of(k), Kind::Faulty),
            &RunOpts::default(),
        )
        .hash
    };
    assert_ne!(h(1), h(2));
}

/// Runs seeds of `kind` with a broken rule until the checker objects.
fn caught(
    kind: Kind,
    mutation: Mutation,
    zero_window: bool,
    max: u64,
) -> Option<(u64, u64, Vec<String>)> {
    (0..max).find_map(|k| {
        let seed = seed_of(1_000_000 + k);
        let mut sc = Scenario::generate(seed, kind);
        if zero_window {
            sc.config.claim_window = 0;
        }
        let r = run(
            &sc,
            &RunOpts {
                trace: false,
                mutation,
            },
        );
        (!r.violations.is_empty()).then_some((k + 1, seed, r.violations))
    })
}

#[test]
fn skipping_the_claim_window_is_caught() {
    let found = caught(Kind::Sync, Mutation::None, true, 3_000);
    let (runs, seed, v) =
        found.expect("a zero claim window must let two nodes act in one term number");
    println!(
        "claim_window = 0 caught after {runs} runs, SEED={seed:#x} (sync): {}",
        v[0]
    );
    assert!(v.iter().any(|v| v.contains("number")), "{v:?}");
}

#[test]
fn acting_before_the_persist_is_caught() {
    let found = caught(Kind::CrashHeavy, Mutation::ActBeforePersist, false, 3_000);
    let (runs, seed, v) =
        found.expect("acting before the claim is durable must let a restart reuse a term");
    println!(
        "ActBeforePersist caught after {runs} runs, SEED={seed:#x} (crash-heavy): {}",
        v[0]
    );
}

#[test]
fn a_hub_ignoring_higher_terms_is_caught() {
    let found = caught(Kind::Faulty, Mutation::KeepHubOnHigherTerm, false, 3_000);
    let (runs, seed, v) = found.expect("a hub that never steps down must leave two hubs");
    println!(
        "KeepHubOnHigherTerm caught after {runs} runs, SEED={seed:#x} (faulty): {}",
        v[0]
    );
}

/// `Config::fast()` (300 ms heartbeats, 3 missed, 400 ms window), delay ≤ 50 ms:
/// every failover within its documented bound, a hung hub within 2 s.
#[test]
fn fast_config_failover_times() {
    let c = Config::fast();
    for how in [HubFailure::Hang, HubFailure::Leave, HubFailure::Crash] {
        let mut worst = (0, 0);
        for k in 0..100 {
            let seed = seed_of(2_000_000 + k);
            let (took, d) = failover(seed, &c, how)
                .unwrap_or_else(|| panic!("{how:?}: no new hub, SEED={seed:#x}"));
            // detection + claim window + the new hub's first heartbeat (+1 ms steps)
            let bound = match how {
                HubFailure::Hang => c.gone_after() + c.claim_window + 2 * d + 2,
                HubFailure::Leave => c.claim_window + 2 * d + 2,
                HubFailure::Crash => 150 + c.claim_window + 2 * d + 2,
            };
            assert!(
                took <= bound,
                "{how:?} took {took} ms > {bound} ms, SEED={seed:#x}"
            );
            worst = worst.max((took, bound));
        }
        println!(
            "fast config, {how:?}: worst failover {} ms over 100 seeds (bound {} ms)",
            worst.0, worst.1
        );
        if how == HubFailure::Hang {
            assert!(worst.0 < 2_000);
        }
    }
}
