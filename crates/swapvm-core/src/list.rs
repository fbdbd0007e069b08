//! Intrusive doubly linked lists over array indices.
//!
//! The kernel links clusters and folios through `list_head`s embedded in
//! their structs; swapvm keeps the links in the owner's arrays and the list
//! head here, so moving an element between lists is O(1) and allocates
//! nothing. An element is on at most one list at a time per link field.

/// "No element".
pub const NIL: u32 = u32::MAX;

/// The links embedded in an element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Previous element, or [`NIL`].
    pub prev: u32,
    /// Next element, or [`NIL`].
    pub next: u32,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            prev: NIL,
            next: NIL,
        }
    }
}

/// Access to the links of the elements a list threads through.
pub trait Linked {
    /// The links of element `i`.
    fn link(&mut self, i: u32) -> &mut Link;
}

impl Linked for [Link] {
    fn link(&mut self, i: u32) -> &mut Link {
        &mut self[i as usize]
    }
}

impl Linked for Vec<Link> {
    fn link(&mut self, i: u32) -> &mut Link {
        &mut self[i as usize]
    }
}

/// A list head: first and last element and the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListHead {
    head: u32,
    tail: u32,
    len: u32,
}

impl Default for ListHead {
    fn default() -> Self {
        ListHead {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl ListHead {
    /// Elements on the list.
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }
    /// True if the list is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// First element.
    #[inline]
    pub fn first(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }
    /// Last element.
    #[inline]
    pub fn last(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// Adds `i` at the front (`list_add`).
    pub fn push_front<L: Linked + ?Sized>(&mut self, links: &mut L, i: u32) {
        *links.link(i) = Link {
            prev: NIL,
            next: self.head,
        };
        if self.head != NIL {
            links.link(self.head).prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
        self.len += 1;
    }

    /// Adds `i` at the back (`list_add_tail`).
    pub fn push_back<L: Linked + ?Sized>(&mut self, links: &mut L, i: u32) {
        *links.link(i) = Link {
            prev: self.tail,
            next: NIL,
        };
        if self.tail != NIL {
            links.link(self.tail).next = i;
        } else {
            self.head = i;
        }
        self.tail = i;
        self.len += 1;
    }

    /// Unlinks `i`, which must be on this list (`list_del`).
    pub fn remove<L: Linked + ?Sized>(&mut self, links: &mut L, i: u32) {
        let Link { prev, next } = *links.link(i);
        if prev != NIL {
            links.link(prev).next = next;
        } else {
            debug_assert_eq!(self.head, i);
            self.head = next;
        }
        if next != NIL {
            links.link(next).prev = prev;
        } else {
            debug_assert_eq!(self.tail, i);
            self.tail = prev;
        }
        *links.link(i) = Link::default();
        self.len -= 1;
    }

    /// Removes and returns the last element.
    pub fn pop_back<L: Linked + ?Sized>(&mut self, links: &mut L) -> Option<u32> {
        let i = self.last()?;
        self.remove(links, i);
        Some(i)
    }

    /// Removes and returns the first element.
    pub fn pop_front<L: Linked + ?Sized>(&mut self, links: &mut L) -> Option<u32> {
        let i = self.first()?;
        self.remove(links, i);
        Some(i)
    }

    /// The elements front to back (for checkers and reports, not hot paths).
    pub fn collect<L: Linked + ?Sized>(&self, links: &mut L) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len as usize);
        let mut i = self.head;
        while i != NIL && out.len() <= self.len as usize {
            out.push(i);
            i = links.link(i).next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    proptest! {
        /// The list behaves like a VecDeque under random pushes and removals.
        #[test]
        fn model(ops in proptest::collection::vec((0u8..4, 0u32..16), 0..200)) {
            let mut links = vec![Link::default(); 16];
            let mut on = [false; 16];
            let mut list = ListHead::default();
            let mut model: VecDeque<u32> = VecDeque::new();
            for (op, i) in ops {
                match op {
                    0 if !on[i as usize] => { list.push_front(&mut links, i); model.push_front(i); on[i as usize] = true; }
                    1 if !on[i as usize] => { list.push_back(&mut links, i); model.push_back(i); on[i as usize] = true; }
                    2 if on[i as usize] => {
                        list.remove(&mut links, i);
                        model.retain(|&x| x != i);
                        on[i as usize] = false;
                    }
                    3 => {
                        let got = list.pop_back(&mut links);
                        prop_assert_eq!(got, model.pop_back());
                        if let Some(g) = got { on[g as usize] = false; }
                    }
                    _ => {}
                }
                prop_assert_eq!(list.collect(&mut links), model.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(list.len() as usize, model.len());
            }
        }
    }
}
