//! How many of one kind of request each workspace runs at once: upload PUTs streaming (one
//! workspace's clients cannot take every connection and part file with slow uploads), recall
//! checks (one at a time).

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
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(workspace.to_string()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: self.clone(),
            workspace: workspace.to_string(),
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
            *n -= 1;
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
}
