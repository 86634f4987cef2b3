//! How many upload PUTs each workspace streams at once: one workspace's clients cannot take
//! every connection (and every part file) by opening many slow uploads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The PUTs in flight, per workspace, under one limit.
#[derive(Debug)]
pub struct UploadSlots {
    limit: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One PUT's place; given back when dropped.
#[derive(Debug)]
pub struct UploadSlot {
    slots: Arc<UploadSlots>,
    workspace: String,
}

impl UploadSlots {
    pub fn new(limit: usize) -> Arc<UploadSlots> {
        Arc::new(UploadSlots {
            limit: limit.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more PUT of `workspace`, or `None` while it has `limit` streaming.
    pub fn take(self: &Arc<Self>, workspace: &str) -> Option<UploadSlot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(workspace.to_string()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(UploadSlot {
            slots: self.clone(),
            workspace: workspace.to_string(),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// PUTs of `workspace` streaming now.
    #[cfg(test)]
    pub fn held(&self, workspace: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(workspace).copied().unwrap_or(0)
    }
}

impl Drop for UploadSlot {
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
        let slots = UploadSlots::new(2);
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
