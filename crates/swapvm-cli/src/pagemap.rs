//! A process's present pages and their page frames, from
//! `/proc/PID/maps` and `/proc/PID/pagemap` (Documentation/admin-guide/mm/
//! pagemap.rst): one little-endian u64 per virtual page, bit 63 "present",
//! bits 0-54 the page frame number. The kernel shows frame numbers to
//! CAP_SYS_ADMIN only (zeros otherwise).

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;

const PRESENT: u64 = 1 << 63;
const PFN_MASK: u64 = (1 << 55) - 1;

/// Entries read per `pread`.
const CHUNK: u64 = 1 << 15;

/// A present page: virtual page number and its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Present {
    pub vpage: u64,
    pub pfn: u64,
}

/// The mapped ranges of `/proc/PID/maps`, in pages, but for the kernel's
/// own special mappings.
fn vmas(pid: u32) -> std::io::Result<Vec<(u64, u64)>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut out = Vec::new();
    for line in maps.lines() {
        if ["[vsyscall]", "[vvar]", "[vdso]", "[vvar_vclock]"]
            .iter()
            .any(|s| line.ends_with(s))
        {
            continue;
        }
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
            out.push((a >> 12, b >> 12));
        }
    }
    Ok(out)
}

/// The present pages of `pid` in address order; `None` once the process
/// is gone.
///
/// # Errors
///
/// A pagemap that cannot be read, or that shows no frame numbers (not
/// root).
pub fn present_pages(pid: u32, out: &mut Vec<Present>) -> Result<Option<()>> {
    out.clear();
    let gone =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::NotFound) || e.raw_os_error() == Some(3);
    let vmas = match vmas(pid) {
        Ok(v) => v,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(e).context(format!("cannot read /proc/{pid}/maps")),
    };
    let f = match File::open(format!("/proc/{pid}/pagemap")) {
        Ok(f) => f,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(e).context(format!("cannot open /proc/{pid}/pagemap")),
    };
    let mut buf = vec![0u8; (CHUNK * 8) as usize];
    let mut zero_pfns = 0u64;
    for (start, end) in vmas {
        let mut p = start;
        while p < end {
            let n = (end - p).min(CHUNK);
            let bytes = &mut buf[..(n * 8) as usize];
            let got = match f.read_at(bytes, p * 8) {
                Ok(k) => k / 8,
                // The mapping went away between maps and pagemap.
                Err(e) if gone(&e) => return Ok(None),
                Err(_) => break,
            };
            if got == 0 {
                break;
            }
            for (i, e) in bytes[..got * 8].chunks_exact(8).enumerate() {
                let e = u64::from_le_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
                if e & PRESENT != 0 {
                    let pfn = e & PFN_MASK;
                    zero_pfns += u64::from(pfn == 0);
                    out.push(Present {
                        vpage: p + i as u64,
                        pfn,
                    });
                }
            }
            p += got as u64;
        }
    }
    if !out.is_empty() && zero_pfns == out.len() as u64 {
        bail!("/proc/{pid}/pagemap shows no page frame numbers: the DAMON capture must run as root (CAP_SYS_ADMIN)");
    }
    Ok(Some(()))
}

/// `pages`' frames merged into at most `cap` byte ranges (end exclusive):
/// runs of frames joined across gaps of up to `gap` frames, the gap
/// doubled until the ranges fit.
pub fn frame_ranges(pages: &[Present], cap: usize) -> Vec<(u64, u64)> {
    let mut pfns: Vec<u64> = pages.iter().map(|p| p.pfn).collect();
    pfns.sort_unstable();
    pfns.dedup();
    let mut gap = 0u64;
    loop {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &f in &pfns {
            match out.last_mut() {
                Some(last) if f <= last.1 + gap => last.1 = f + 1,
                _ => out.push((f, f + 1)),
            }
        }
        if out.len() <= cap.max(1) {
            return out.into_iter().map(|(a, b)| (a << 12, b << 12)).collect();
        }
        gap = (gap * 2).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pfn: u64) -> Present {
        Present { vpage: 0, pfn }
    }

    #[test]
    fn frames_merge_into_as_few_ranges_as_asked() {
        let pages: Vec<_> = [1, 2, 3, 10, 11, 40].into_iter().map(p).collect();
        assert_eq!(
            frame_ranges(&pages, 3),
            vec![
                (1 << 12, 4 << 12),
                (10 << 12, 12 << 12),
                (40 << 12, 41 << 12)
            ]
        );
        let two = frame_ranges(&pages, 2);
        assert_eq!(two, vec![(1 << 12, 12 << 12), (40 << 12, 41 << 12)]);
        assert_eq!(frame_ranges(&pages, 1), vec![(1 << 12, 41 << 12)]);
    }

    #[test]
    fn this_process_has_present_pages_in_address_order() {
        let v = vec![7u8; 1 << 20];
        let mut out = Vec::new();
        match present_pages(std::process::id(), &mut out) {
            Ok(Some(())) => {}
            Err(e) if e.to_string().contains("root") => {
                return assert!(!rustix::process::geteuid().is_root())
            }
            other => panic!("{other:?}"),
        }
        assert!(out.windows(2).all(|w| w[0].vpage < w[1].vpage));
        let page = v.as_ptr() as u64 >> 12;
        assert!(
            out.iter().any(|x| x.vpage == page + 1),
            "the buffer's pages are present"
        );
        assert!(present_pages(u32::MAX - 1, &mut out).unwrap().is_none());
    }
}
