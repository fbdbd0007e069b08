//! anon_vmas and their chains (mm/rmap.c's `anon_vma`, `anon_vma_chain`).
//!
//! An anonymous folio's `mapping` names an anon_vma; the rmap walk visits
//! the VMAs chained to it in link order. Most anon_vmas chain one VMA (the
//! one that faulted the folio in; fork adds the children's), so the first
//! entry is kept inline: reclaim reads it for every folio it looks at, and
//! a separate allocation per anon_vma was a cache miss of its own on top of
//! the anon_vma's.

use crate::memory::{MmId, MmStruct, Vma};
use std::cell::Cell;

/// One `anon_vma_chain` entry: a VMA, by address space and start page.
#[derive(Debug, Clone)]
pub struct AnonVmaChain {
    /// The VMA's address space.
    pub mm: MmId,
    /// The VMA's start page (its key in the address space's VMAs).
    pub start: u64,
    /// Where the VMA sat among its address space's VMAs when last found
    /// (a hint, checked before use: inserts and removals move VMAs), so an
    /// rmap walk finds it without a search, as the kernel's chain entry
    /// points at its VMA.
    pos: Cell<u32>,
}

impl AnonVmaChain {
    /// An entry for the VMA of `mm` starting at `start`.
    pub fn new(mm: MmId, start: u64) -> Self {
        AnonVmaChain {
            mm,
            start,
            pos: Cell::new(0),
        }
    }

    /// The VMA this entry names, if `mm` (its address space) still has one
    /// starting there.
    #[inline]
    pub fn vma<'a>(&self, mm: &'a MmStruct) -> Option<&'a Vma> {
        mm.vmas.get_hinted(self.start, &self.pos)
    }
}

/// An anon_vma: the VMAs a folio's rmap walk visits, in link order.
#[derive(Debug, Default, Clone)]
pub struct AnonVma {
    /// The oldest anon_vma of its fork family (`anon_vma->root`): itself
    /// when made by `anon_vma_prepare`, the parent's root when made by
    /// fork. Every VMA of the family is linked into it.
    pub root: u32,
    /// The first entry; `None` only when the chain is empty.
    first: Option<AnonVmaChain>,
    /// The entries after the first.
    rest: Vec<AnonVmaChain>,
}

impl AnonVma {
    /// An anon_vma of family `root` chaining one VMA (`anon_vma_alloc` +
    /// link).
    pub fn new(c: AnonVmaChain, root: u32) -> Self {
        AnonVma {
            root,
            first: Some(c),
            rest: Vec::new(),
        }
    }

    /// Entries chained.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// True if no VMA is chained.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// The first entry.
    #[inline]
    pub fn first(&self) -> Option<&AnonVmaChain> {
        self.first.as_ref()
    }

    /// The `i`-th entry in link order.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&AnonVmaChain> {
        match i {
            0 => self.first.as_ref(),
            _ => self.rest.get(i - 1),
        }
    }

    /// Links a VMA after the others (`anon_vma_chain_link`).
    pub fn push(&mut self, c: AnonVmaChain) {
        if self.first.is_none() {
            self.first = Some(c);
        } else {
            self.rest.push(c);
        }
    }

    /// Keeps the entries for which `keep` is true, in order (unlinking the
    /// others, as munmap does).
    pub fn retain(&mut self, mut keep: impl FnMut(&AnonVmaChain) -> bool) {
        let first = self.first.take().filter(|c| keep(c));
        self.rest.retain(|c| keep(c));
        self.first = match first {
            Some(c) => Some(c),
            None if self.rest.is_empty() => None,
            None => Some(self.rest.remove(0)),
        };
    }

    /// The entries in link order.
    pub fn iter(&self) -> impl Iterator<Item = &AnonVmaChain> + '_ {
        self.first.iter().chain(&self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swapvm_core::SimRng;

    /// Under a seeded random mix of pushes, retains, indexed and first
    /// lookups, an anon_vma holds the entries a plain `Vec` does, in the
    /// same order; the seed is in the failure message.
    #[test]
    fn matches_vec() {
        for seed in 0..32u64 {
            let mut rng = SimRng::new(seed);
            let mut av = AnonVma::default();
            let mut model: Vec<(MmId, u64)> = Vec::new();
            for step in 0..2000 {
                let why = format!("seed {seed} step {step}");
                match rng.below(4) {
                    0 | 1 => {
                        let (mm, start) = (MmId(rng.below(4) as u32), rng.below(8));
                        av.push(AnonVmaChain::new(mm, start));
                        model.push((mm, start));
                    }
                    2 => {
                        let (mm, start) = (MmId(rng.below(4) as u32), rng.below(8));
                        av.retain(|c| !(c.mm == mm && c.start == start));
                        model.retain(|&(m, s)| !(m == mm && s == start));
                    }
                    _ => {
                        let i = rng.below(6) as usize;
                        let got = av.get(i).map(|c| (c.mm, c.start));
                        assert_eq!(got, model.get(i).copied(), "{why} get {i}");
                        let got = av.first().map(|c| (c.mm, c.start));
                        assert_eq!(got, model.first().copied(), "{why} first");
                    }
                }
                assert_eq!(av.len(), model.len(), "{why}");
                assert_eq!(av.is_empty(), model.is_empty(), "{why}");
                assert!(
                    av.iter().map(|c| (c.mm, c.start)).eq(model.iter().copied()),
                    "{why}"
                );
            }
        }
    }
}
