//! zram swap devices: a header built in memory (there is no image file)
//! and the compressing engine of swapvm-io, shared so the report can read
//! its memory figures.

use crate::report::ZramReport;
use std::sync::Arc;
use swapvm_core::config::{Compressor, SwapDeviceConfig};
use swapvm_core::SwapType;
use swapvm_io::{BlockEngine, IoCompletion, IoError, IoRequest, ZramEngine};
use swapvm_swap::header::SwapHeader;
use swapvm_swap::{SwapError, SwapOnOptions, SwapSubsystem};

/// The machine's zram engines by device.
pub(crate) type ZramDevices = Vec<(SwapType, Arc<ZramEngine>)>;

/// The engine, shared between the swap layer (which owns a boxed engine)
/// and the report.
struct Shared(Arc<ZramEngine>);

impl BlockEngine for Shared {
    fn submit(&self, req: IoRequest) -> Result<(), IoError> {
        self.0.submit(req)
    }
    fn try_complete(&self) -> Option<IoCompletion> {
        self.0.try_complete()
    }
    fn wait_complete(&self) -> Result<IoCompletion, IoError> {
        self.0.wait_complete()
    }
    fn in_flight(&self) -> usize {
        self.0.in_flight()
    }
    fn size_bytes(&self) -> u64 {
        self.0.size_bytes()
    }
}

/// Enables a zram device of `s.size_mib` MiB; no file is touched.
pub(crate) fn swapon_zram(
    s: &SwapDeviceConfig,
    o: &SwapOnOptions,
    swap: &mut SwapSubsystem,
    devices: &mut ZramDevices,
) -> Result<SwapType, SwapError> {
    let pages = s.size_mib * 256;
    let header = SwapHeader::new(pages, [0; 16], &s.label)?;
    let comp = match s.compressor {
        Compressor::Lz4 => swapvm_io::Compressor::Lz4,
        Compressor::Zstd => swapvm_io::Compressor::Zstd {
            level: swapvm_io::Compressor::ZSTD_LEVEL_DEFAULT,
        },
    };
    let engine = Arc::new(ZramEngine::new(pages * 4096, comp));
    let ty = swap.swapon_engine(o, header, Box::new(Shared(Arc::clone(&engine))))?;
    devices.push((ty, engine));
    Ok(ty)
}

/// The memory figures of zram device `ty`.
pub(crate) fn stats(devices: &ZramDevices, ty: SwapType) -> Option<ZramReport> {
    let (_, e) = devices.iter().find(|(t, _)| *t == ty)?;
    let st = e.stats();
    Some(ZramReport {
        orig_data_size: st.orig_data_size,
        compr_data_size: st.compr_data_size,
        // Only same-filled pages stored: no compressed bytes; JSON has no
        // infinity, so report 0 ("no ratio").
        compression_ratio: Some(st.compression_ratio())
            .filter(|r| r.is_finite())
            .unwrap_or(0.0),
    })
}
