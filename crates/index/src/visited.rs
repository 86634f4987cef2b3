//! The visited set of one graph walk: an epoch stamp per node, so starting a new walk is one
//! increment instead of clearing (or allocating) a set. One lives in each thread.

use std::cell::Cell;

#[derive(Debug, Default)]
pub(crate) struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    /// Starts a walk over a graph of `len` nodes: nothing is visited.
    pub(crate) fn start(&mut self, len: usize) {
        if self.marks.len() < len {
            self.marks.resize(len, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: stamps from 65,535 walks ago would read as current.
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `node`; true when it was not visited yet in this walk.
    #[inline(always)]
    pub(crate) fn insert(&mut self, node: u32) -> bool {
        let mark = &mut self.marks[node as usize];
        let fresh = *mark != self.epoch;
        *mark = self.epoch;
        fresh
    }
}

thread_local! {
    static VISITED: Cell<Visited> = Cell::new(Visited::default());
}

/// Takes this thread's visited set (leaving an empty one) so a walk can own it without a
/// closure: code inside a SIMD-dispatched region must not call closures that compute
/// distances, or the kernels lose their target features. Give it back with [`give_back`].
pub(crate) fn take() -> Visited {
    VISITED.with(Cell::take)
}

pub(crate) fn give_back(v: Visited) {
    VISITED.with(|cell| cell.set(v));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_walk_starts_empty_even_across_the_epoch_wrap() {
        let mut v = Visited::default();
        for _ in 0..70_000 {
            v.start(4);
            assert!(v.insert(2));
            assert!(!v.insert(2));
            assert!(v.insert(3));
        }
        v.start(10);
        assert!(v.insert(9));
    }
}
