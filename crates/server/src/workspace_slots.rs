//! How much of one kind each workspace holds at once: upload PUTs streaming (one
//! workspace's clients cannot take every connection and part file with slow uploads), recall
//! checks (one at a time), and its share of the memory for pictures (in KiB).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The requests of one kind in flight, per workspace, under one limit.
#[derive(Debug)]
pub struct WorkspaceSlots {
    limit: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One request's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<WorkspaceSlots>,
    workspace: String,
    amount: usize,
}

impl WorkspaceSlots {
    pub fn new(limit: usize) -> Arc<WorkspaceSlots> {
        Arc::new(WorkspaceSlots {
            limit: limit.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more request of `workspace`, or `None` while it has `limit` running.
    pub fn take(self: &Arc<Self>, workspace: &str) -> Option<Slot> {
        self.take_many(workspace, 1)
    }

    /// `amount` places for `workspace` together, or `None` while that would pass `limit`.
    pub fn take_many(self: &Arc<Self>, workspace: &str, amount: usize) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.get(workspace).copied().unwrap_or(0);
        if n.saturating_add(amount) > self.limit {
            return None;
        }
        held.insert(workspace.to_string(), n + amount);
        Some(Slot {
            slots: self.clone(),
            workspace: workspace.to_string(),
            amount,
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests of `workspace` running now.
    #[cfg(test)]
    pub fn held(&self, workspace: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(workspace).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.workspace) {
            *n -= self.amount;
            if *n == 0 {
                held.remove(&self.workspace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_workspace_has_its_own_places_given_back_on_drop() {
        let slots = WorkspaceSlots::new(2);
        let a1 = slots.take("a").expect("a1");
        let _a2 = slots.take("a").expect("a2");
        assert!(slots.take("a").is_none(), "a is at its limit");
        let _b1 = slots.take("b").expect("b has its own");
        drop(a1);
        assert_eq!(slots.held("a"), 1);
        assert!(slots.take("a").is_some());
        assert_eq!(slots.held("c"), 0);
        assert!(
            slots.held.lock().expect("lock").len() <= 2,
            "no entry for idle workspaces"
        );
    }

    #[test]
    fn amounts_are_taken_whole_or_not_at_all() {
        let slots = WorkspaceSlots::new(100);
        let a = slots.take_many("a", 60).expect("60 of 100");
        assert!(
            slots.take_many("a", 41).is_none(),
            "101 would pass the limit"
        );
        let b = slots.take_many("a", 40).expect("exactly 100");
        assert!(slots.take_many("b", 100).is_some(), "b has its own");
        drop(a);
        assert_eq!(slots.held("a"), 40);
        drop(b);
        assert_eq!(slots.held("a"), 0);
    }
}
