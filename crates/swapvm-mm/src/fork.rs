//! fork (kernel/fork.c `dup_mmap`, mm/memory.c `copy_page_range`).
//!
//! The child gets a copy of every VMA at the same addresses. A private
//! anonymous VMA is linked into every anon_vma of the parent VMA's chain and
//! gets an anon_vma of its own for the folios it creates later (the
//! kernel's `anon_vma_fork`), so an rmap walk from a folio made before the
//! fork finds both mappings. Its PTEs are copied: present anonymous pages
//! become copy-on-write shared (write-protected in both, mapcount up), swap
//! PTEs take a reference with `swap_dup_entry_direct`. Shared (shmem) VMAs
//! are linked into the inode's i_mmap and their PTEs are not copied: the
//! child faults them in from the page cache, as the kernel does for shared
//! file mappings.

use crate::memory::{AnonVmaChain, Memory, MmId, Vma, VmaKind};
use swapvm_core::{Pte, PteKind, SwpEntry, Vpn};
use swapvm_swap::{SwapError, SwapSubsystem};

/// Why a fork failed. Nothing of the child is left behind.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForkError {
    /// A swap count needed a continuation whose allocation failed
    /// (`add_swap_count_continuation` returning `-ENOMEM`).
    #[error("fork: no memory for the swap count continuation of {entry:?}")]
    NoMem {
        /// The entry being duplicated.
        entry: SwpEntry,
    },
    /// The swap layer refused to duplicate an entry (a contract warning
    /// was recorded).
    #[error("fork: swap_dup_entry_direct refused {entry:?}")]
    Refused {
        /// The entry.
        entry: SwpEntry,
    },
}

impl Memory {
    /// `fork`: a new address space copying `parent`'s.
    ///
    /// # Errors
    /// [`ForkError`] when a swap entry could not be duplicated; the partly
    /// built child is torn down, releasing what it had taken.
    pub fn fork(&mut self, swap: &mut SwapSubsystem, parent: MmId) -> Result<MmId, ForkError> {
        let child = self.mm_create();
        // The child runs in its parent's cgroup.
        self.mm_mut(child).memcg = self.mm(parent).memcg;
        // Same layout: later mmaps must not land on inherited VMAs.
        let next_va = self.mm(parent).next_va;
        self.mm_mut(child).next_va = next_va;
        let vmas: Vec<Vma> = self.mm(parent).vmas.values().cloned().collect();
        for v in vmas {
            let mut cv = Vma {
                anon_vma: None,
                chain: v.chain.clone(),
                ..v.clone()
            };
            match v.kind {
                VmaKind::Anon => {
                    for &a in &v.chain {
                        self.anon_vmas[a as usize].push(AnonVmaChain::new(child, v.start.0));
                    }
                    if let Some(parent_av) = v.anon_vma {
                        let root = self.anon_vma_root(parent_av);
                        let own = self.anon_vma_alloc(child, v.start.0, Some(root));
                        cv.anon_vma = Some(own);
                        cv.chain.push(own);
                    }
                }
                VmaKind::Shmem { inode, .. } => {
                    cv.chain = Vec::new();
                    self.shmem.i_mmap_insert(inode, child, v.start.0);
                }
            }
            let anon = v.kind == VmaKind::Anon;
            self.mm_mut(child).vmas.insert(v.start.0, cv);
            if v.flags & crate::memory::vm::MERGEABLE != 0 {
                self.ksm_enter(child);
            }
            if anon {
                if let Err(e) = self.copy_pte_range(swap, parent, child, v.start, v.end) {
                    self.exit_mmap(swap, child);
                    return Err(e);
                }
            }
        }
        Ok(child)
    }

    /// `copy_pte_range` of one private anonymous VMA.
    fn copy_pte_range(
        &mut self,
        swap: &mut SwapSubsystem,
        parent: MmId,
        child: MmId,
        start: Vpn,
        end: Vpn,
    ) -> Result<(), ForkError> {
        let ppgd = self.mm(parent).pgd;
        let cpgd = self.mm(child).pgd;
        let mut vpn = start;
        while vpn < end {
            let Some(pleaf) = self.pt.walk(ppgd, vpn) else {
                vpn = Vpn((vpn.0 | 511) + 1);
                continue;
            };
            let pte = self.pt.pte(pleaf);
            match pte.kind() {
                PteKind::None => {}
                PteKind::Present { pfn, .. } => {
                    let pfn = self.folio_of(pfn);
                    // Both sides write-protected: the first write copies
                    // (`do_wp_page`). The child's PTE starts old.
                    let wp = pte.without(Pte::WRITE);
                    self.pt.set_pte(pleaf, wp);
                    let cleaf = self.pt.walk_alloc(cpgd, vpn);
                    self.pt.set_pte(cleaf, wp.without(Pte::ACCESSED));
                    self.folios.get_mut(pfn).mapcount += 1;
                    self.mm_mut(child).rss_anon += 1;
                    if self.folios.get(pfn).test(crate::folio::pg::KSM) {
                        self.ksm_add_rmap_item(pfn, child, vpn);
                    }
                }
                PteKind::Swap(entry) => {
                    // Context: the parent's page-table lock covers the entry.
                    let ptl = swap
                        .lockdep()
                        .lock(swapvm_core::LockClass::PageTable { mm: parent.0 });
                    let r = swap.swap_dup_entry_direct(entry);
                    drop(ptl);
                    match r {
                        Ok(()) => {}
                        Err(SwapError::NoMem { .. }) => return Err(ForkError::NoMem { entry }),
                        Err(_) => return Err(ForkError::Refused { entry }),
                    }
                    let cleaf = self.pt.walk_alloc(cpgd, vpn);
                    self.pt.set_pte(cleaf, pte);
                    self.mm_mut(child).rss_swap += 1;
                }
            }
            vpn = vpn.add(1);
        }
        Ok(())
    }
}
