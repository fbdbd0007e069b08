//! MGLRU (`reclaim.policy = "mglru"`) on the hand-built rig: aging
//! promotes what was accessed, eviction takes the oldest generation first,
//! the PID controller protects a tier that refaults, `min_ttl_ms` asks for
//! an OOM kill rather than evicting a young working set.

use super::{Rig, FRAMES, WMARK};
use swapvm_core::config::{ReclaimConfig, ReclaimPolicy};
use swapvm_core::{PteKind, VmEvent, Vpn};
use swapvm_mm::lru_gen::{folio_lru_gen, lru_gen_from_seq};
use swapvm_mm::{pg, MemcgId};
use swapvm_reclaim::Reclaimer;

/// A rig whose lruvecs run MGLRU, with `min_ttl_ms`.
fn mglru_rig(min_ttl_ms: u64) -> Rig {
    let mut rig = Rig::new();
    rig.mem.lru.set_lru_gen(true);
    let cfg = ReclaimConfig {
        policy: ReclaimPolicy::Mglru,
        min_ttl_ms,
        ..ReclaimConfig::default()
    };
    rig.reclaim = Reclaimer::new(cfg, u64::from(FRAMES));
    rig
}

/// The sequence number of the generation `vpn`'s folio is on.
fn seq_of(rig: &Rig, vpn: Vpn) -> u64 {
    let PteKind::Present { pfn, .. } = rig.pte(vpn) else {
        panic!("{vpn:?} not resident");
    };
    let g = &rig.mem.lru.vec(MemcgId::ROOT).lrugen;
    let gen = folio_lru_gen(rig.mem.folios.get(pfn).flags).expect("on a generation list");
    (g.min_seq..=g.max_seq)
        .find(|&s| lru_gen_from_seq(s) == gen)
        .expect("generation within min_seq..=max_seq")
}

fn age(rig: &mut Rig) {
    let max_seq = rig.mem.lru.vec(MemcgId::ROOT).lrugen.max_seq;
    let now = rig.now;
    assert!(rig
        .reclaim
        .try_to_inc_max_seq(&mut rig.mem, MemcgId::ROOT, max_seq, now));
}

/// Faulted folios start in the second youngest generation. An aging walk
/// finds their fault's accessed bit (first reference: PG_referenced only);
/// the next walk promotes those accessed again to the generation that was
/// youngest, and leaves the others where they were.
#[test]
fn aging_promotes_an_accessed_folio() {
    let mut rig = mglru_rig(0);
    let r = rig.fill(64, 0x51);
    let start = rig.mem.lru.vec(MemcgId::ROOT).lrugen.max_seq;
    assert_eq!(seq_of(&rig, r), start - 1, "a fault adds to max_seq - 1");
    age(&mut rig);
    assert_eq!(seq_of(&rig, r), start - 1, "the first reference only marks");
    for i in 0..8 {
        rig.access(r.add(i), false).unwrap();
    }
    let youngest = rig.mem.lru.vec(MemcgId::ROOT).lrugen.max_seq;
    age(&mut rig);
    for i in 0..64 {
        let want = if i < 8 { youngest } else { start - 1 };
        assert_eq!(seq_of(&rig, r.add(i)), want, "page {i}");
    }
    let pfn = match rig.pte(r) {
        PteKind::Present { pfn, .. } => pfn,
        k => panic!("{k:?}"),
    };
    assert!(rig.mem.folios.get(pfn).test(pg::WORKINGSET));
    rig.assert_clean();
}

/// With an old set in the oldest generation and a new one in a younger
/// one, reclaim evicts from the old set only.
#[test]
fn eviction_takes_the_oldest_generation_first() {
    let mut rig = mglru_rig(0);
    let old = rig.fill(96, 0x52);
    age(&mut rig);
    age(&mut rig);
    let new = rig.fill(96, 0x53);
    assert!(seq_of(&rig, old) < seq_of(&rig, new));
    let p = rig.reclaim.try_to_free_mem_cgroup_pages(
        &mut rig.mem,
        &mut rig.swap,
        MemcgId::ROOT,
        32,
        0,
        0,
    );
    assert!(p.made(), "{p:?}");
    rig.settle();
    let gone = |rig: &Rig, r: Vpn| {
        (0..96)
            .filter(|&i| !matches!(rig.pte(r.add(i)), PteKind::Present { .. }))
            .count()
    };
    assert!(
        gone(&rig, old) >= 32,
        "old set evicted: {}",
        gone(&rig, old)
    );
    assert_eq!(gone(&rig, new), 0, "the younger generation is untouched");
    assert!(rig.stat.get(VmEvent::PswpOut) >= 32);
    rig.assert_clean();
}

/// Workingset folios (the top tier) in the oldest generation are evicted
/// like the rest while their tier refaults no more than tier 0; once the
/// PID controller sees their tier refault far more, they are protected:
/// moved one generation up and counted `protected`, the others evicted.
#[test]
fn a_refaulting_tier_is_protected() {
    for refaulting in [false, true] {
        let mut rig = mglru_rig(0);
        let r = rig.fill(128, 0x54);
        age(&mut rig);
        age(&mut rig);
        for i in (0..128).step_by(2) {
            let PteKind::Present { pfn, .. } = rig.pte(r.add(i)) else {
                panic!()
            };
            rig.mem.folios.get_mut(pfn).set(pg::WORKINGSET);
        }
        let tiers = &mut rig.mem.lru.vec_mut(MemcgId::ROOT).lrugen.tiers;
        tiers.avg_total = [100_000, 0, 0, 100_000];
        tiers.avg_refaulted = [0, 0, 0, if refaulting { 50_000 } else { 0 }];
        rig.reclaim.try_to_free_mem_cgroup_pages(
            &mut rig.mem,
            &mut rig.swap,
            MemcgId::ROOT,
            32,
            0,
            0,
        );
        rig.settle();
        let evicted_ws = (0..128)
            .step_by(2)
            .filter(|&i| !matches!(rig.pte(r.add(i)), PteKind::Present { .. }))
            .count();
        let evicted_other = (1..128)
            .step_by(2)
            .filter(|&i| !matches!(rig.pte(r.add(i)), PteKind::Present { .. }))
            .count();
        let protected = rig.mem.lru.vec(MemcgId::ROOT).lrugen.tiers.protected[3];
        assert!(evicted_other > 0, "refaulting {refaulting}");
        if refaulting {
            assert_eq!(evicted_ws, 0, "the top tier is protected");
            assert!(protected > 0);
        } else {
            assert!(evicted_ws > 0, "no refaults: no protection");
            assert_eq!(protected, 0);
        }
        rig.assert_clean();
    }
}

/// Under pressure, kswapd asks for an OOM kill while every generation is
/// younger than `min_ttl_ms`, and does not without the knob. (The rig's
/// lruvec is below `lruvec_is_sizable` at the first priority whatever its
/// age, which also means "kill": the machine tests cover an old enough
/// generation.)
#[test]
fn min_ttl_asks_for_oom_instead_of_thrashing() {
    for (min_ttl, now, oom) in [(1000, 10, true), (0, 10, false)] {
        let mut rig = mglru_rig(min_ttl);
        rig.fill(u64::from(FRAMES) - WMARK.low + 4, 0x55);
        rig.now = now;
        rig.reclaim.maybe_wake_kswapd(&rig.mem);
        assert!(rig.reclaim.kswapd_awake());
        rig.reclaim
            .kswapd_tick(&mut rig.mem, &mut rig.swap, 0, rig.now);
        assert_eq!(
            rig.reclaim.take_oom_request(),
            oom,
            "min_ttl {min_ttl} at {now}"
        );
        assert!(!rig.reclaim.take_oom_request(), "the request is taken once");
    }
}

/// The debugfs commands: `+` ages only at the youngest seq and, with all
/// generations in use, only with force_scan; `-` needs `MIN_NR_GENS`
/// younger generations and evicts from the oldest up to its seq, as many
/// pages as asked.
#[test]
fn debugfs_commands_age_and_evict_as_the_kernel_does() {
    use swapvm_core::config::lru_gen::LruGenCmd;
    use swapvm_reclaim::mglru::LruGenCmdError;
    let mut rig = mglru_rig(0);
    let old = rig.fill(96, 0x56);
    let max = |rig: &Rig| rig.mem.lru.vec(MemcgId::ROOT).lrugen.max_seq;
    let cmd = |rig: &mut Rig, text: &str| {
        let c = LruGenCmd::parse(text).unwrap();
        let now = rig.now;
        rig.reclaim
            .lru_gen_cmd(&mut rig.mem, &mut rig.swap, c, 0, now)
    };
    let m = max(&rig);
    assert_eq!(
        cmd(&mut rig, &format!("+ 0 0 {m}")),
        Err(LruGenCmdError::Range)
    );
    assert_eq!(
        cmd(&mut rig, &format!("+ 0 0 {}", m + 1)),
        Err(LruGenCmdError::Inval)
    );
    assert_eq!(
        cmd(&mut rig, &format!("+ 9 0 {m}")),
        Err(LruGenCmdError::Inval)
    );
    assert_eq!(cmd(&mut rig, &format!("+ 0 0 {} 60 1", m)), Ok(0));
    assert_eq!(max(&rig), m + 1, "force_scan ages");
    assert_eq!(cmd(&mut rig, &format!("+ 0 0 {m}")), Ok(0));
    assert_eq!(max(&rig), m + 1, "an older seq: someone aged already");
    age(&mut rig);
    let new = rig.fill(96, 0x57);
    let m = max(&rig);
    assert_eq!(
        cmd(&mut rig, &format!("- 0 0 {}", m - 1)),
        Err(LruGenCmdError::Inval)
    );
    let oldest = seq_of(&rig, old);
    assert!(oldest + 2 <= m && seq_of(&rig, new) > oldest);
    let got = cmd(&mut rig, &format!("- 0 0 {oldest} 60 16")).unwrap();
    assert!((16..96).contains(&got), "asked 16, got {got}");
    rig.settle();
    let gone = |rig: &Rig, r: Vpn| {
        (0..96)
            .filter(|&i| !matches!(rig.pte(r.add(i)), PteKind::Present { .. }))
            .count() as u64
    };
    assert_eq!(gone(&rig, old), got);
    assert_eq!(gone(&rig, new), 0);
    assert_eq!(
        cmd(&mut rig, &format!("- 0 0 {oldest} 0")),
        Ok(0),
        "swappiness 0"
    );
    rig.assert_clean();
    let mut classic = Rig::new();
    assert_eq!(
        cmd(&mut classic, "+ 0 0 3"),
        Err(LruGenCmdError::NotSupported)
    );
}
