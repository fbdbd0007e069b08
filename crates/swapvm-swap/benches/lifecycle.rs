//! Micro-benchmarks of the swap-entry lifecycle on a real (sparse) image:
//! `folio_alloc_swap` + `folio_free_swap` of order 0 and order 4, and a
//! `folio_dup_swap` + `folio_put_swap` pair. No I/O is issued.
//!
//! Run: `cargo bench -p swapvm-swap --bench lifecycle`.

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use std::sync::Arc;
use swapvm_core::{Order, Pfn, SwpEntry, VmStat, Warnings};
use swapvm_swap::header::mkswap;
use swapvm_swap::{SwapFolio, SwapOnOptions, SwapSubsystem};

struct F {
    order: Order,
    swap: Option<SwpEntry>,
}

impl SwapFolio for F {
    fn pfn(&self) -> Pfn {
        Pfn(1)
    }
    fn order(&self) -> Order {
        self.order
    }
    fn is_locked(&self) -> bool {
        true
    }
    fn is_writeback(&self) -> bool {
        false
    }
    fn swap(&self) -> Option<SwpEntry> {
        self.swap
    }
    fn set_swap(&mut self, e: Option<SwpEntry>) {
        self.swap = e;
    }
}

fn device() -> (SwapSubsystem, tempfile::NamedTempFile) {
    let img = tempfile::Builder::new()
        .prefix("swapvm-bench-")
        .tempfile_in("/var/tmp")
        .unwrap();
    mkswap(img.path(), 1 << 30, "", None).unwrap();
    let mut swap = SwapSubsystem::new(
        Arc::new(VmStat::new()),
        Arc::new(Warnings::new(false)),
        1,
        1,
    );
    swap.swapon(&SwapOnOptions {
        path: img.path().to_owned(),
        ..Default::default()
    })
    .unwrap();
    (swap, img)
}

/// Half-fills the device with order-0 folios so allocation runs against a
/// realistic mix of partly used clusters.
fn half_full(swap: &mut SwapSubsystem) -> Vec<F> {
    let n = swap.total_swap_pages() / 2;
    (0..n)
        .map(|_| {
            let mut f = F {
                order: Order::new(0),
                swap: None,
            };
            swap.folio_alloc_swap(&mut f, 0).unwrap();
            f
        })
        .collect()
}

fn alloc_free(c: &mut Criterion) {
    for order in [0u8, 4] {
        let (mut swap, _img) = device();
        let _held = half_full(&mut swap);
        c.bench_function(
            &format!("folio_alloc_swap+folio_free_swap order {order}"),
            |b| {
                b.iter_batched_ref(
                    || F {
                        order: Order::new(order),
                        swap: None,
                    },
                    |f| {
                        black_box(swap.folio_alloc_swap(f, 0).unwrap());
                        assert!(swap.folio_free_swap(f));
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
}

fn dup_put(c: &mut Criterion) {
    let (mut swap, _img) = device();
    let mut f = F {
        order: Order::new(0),
        swap: None,
    };
    swap.folio_alloc_swap(&mut f, 0).unwrap();
    c.bench_function("folio_dup_swap+folio_put_swap", |b| {
        b.iter(|| {
            swap.folio_dup_swap(&f, None).unwrap();
            swap.folio_put_swap(black_box(&f), None);
        })
    });
}

criterion_group!(benches, alloc_free, dup_put);
criterion_main!(benches);
