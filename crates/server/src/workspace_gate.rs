//! How much store work that reads (searches, listings, delete-by-filter, dropping a
//! collection), making thumbnails and decoding a run's pictures, each workspace runs at once, so one workspace sending them as fast as it can
//! takes a bounded share of the cores, and another workspace's request runs beside it instead
//! of behind it. Writes are not held here: the group commit already takes every waiting write
//! in one transaction (gating them would only shrink its batches), and text and picture runs
//! are shared out at the encoder before they write.
//!
//! Each workspace may run `running` store calls at once; more wait their turn in order (a
//! waiting request costs no thread). Past `running + waiting`, one more is answered 429
//! `workspace_busy` with Retry-After at once, so a workspace cannot hold every connection
//! with requests that only wait. Other workspaces are not affected by either bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

#[derive(Debug)]
pub struct WorkspaceGate {
    running: usize,
    waiting: usize,
    lines: Mutex<HashMap<String, Line>>,
}

/// One workspace's store calls: its places, and how many requests hold or wait for one.
#[derive(Debug)]
struct Line {
    places: Arc<Semaphore>,
    users: usize,
}

/// A request's turn at the store; the place is given back when it drops.
#[derive(Debug)]
pub struct Turn {
    _place: OwnedSemaphorePermit,
    _user: User,
}

/// A request holding or waiting for a place; counted until it drops.
#[derive(Debug)]
struct User {
    gate: Arc<WorkspaceGate>,
    workspace: String,
}

impl WorkspaceGate {
    pub fn new(running: usize, waiting: usize) -> Arc<WorkspaceGate> {
        Arc::new(WorkspaceGate {
            running: running.max(1),
            waiting,
            lines: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for one of `workspace`'s places, or refuses at once when as many of its requests
    /// as may already hold or wait for one.
    pub async fn turn(self: &Arc<Self>, workspace: &str) -> Result<Turn, ApiError> {
        let places = {
            let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            let line = lines.entry(workspace.to_string()).or_insert_with(|| Line {
                places: Arc::new(Semaphore::new(self.running)),
                users: 0,
            });
            if line.users >= self.running + self.waiting {
                return Err(ApiError::TooMany {
                    code: "workspace_busy",
                    message: format!(
                        "this workspace has {} store requests running and {} waiting, as many as \
                         it may (--store-calls-per-workspace, --store-queue-per-workspace); retry shortly",
                        self.running, self.waiting
                    ),
                    retry_after_secs: 1,
                });
            }
            line.users += 1;
            line.places.clone()
        };
        let user = User {
            gate: self.clone(),
            workspace: workspace.to_string(),
        };
        let place = places
            .acquire_owned()
            .await
            .map_err(|e| ApiError::internal("workspace gate", e))?;
        Ok(Turn {
            _place: place,
            _user: user,
        })
    }

    /// Requests of `workspace` holding or waiting for a place now.
    #[cfg(test)]
    fn users(&self, workspace: &str) -> usize {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.get(workspace).map_or(0, |l| l.users)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let mut lines = self.gate.lines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(line) = lines.get_mut(&self.workspace) {
            line.users -= 1;
            if line.users == 0 {
                lines.remove(&self.workspace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_busy_workspace_waits_its_turn_and_others_go_ahead() {
        let gate = WorkspaceGate::new(2, 1);
        let a1 = gate.turn("abusive").await.expect("first place");
        let a2 = gate.turn("abusive").await.expect("second place");
        // The third waits for a place; the fourth is refused at once.
        let third = tokio::spawn({
            let gate = gate.clone();
            async move { gate.turn("abusive").await.map(|_| ()) }
        });
        while gate.users("abusive") < 3 {
            tokio::task::yield_now().await;
        }
        match gate.turn("abusive").await {
            Err(ApiError::TooMany { code, message, .. }) => {
                assert_eq!(code, "workspace_busy");
                assert!(message.contains("--store-calls-per-workspace"), "{message}");
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // Another workspace is not held up by any of it.
        let other = tokio::time::timeout(Duration::from_secs(5), gate.turn("interactive"))
            .await
            .expect("another workspace's turn at once")
            .expect("a place");
        assert!(!third.is_finished(), "the third waits while two run");
        drop(a1);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the third's turn once a place is free")
            .expect("join")
            .expect("a place");
        drop((a2, other));
        assert_eq!(gate.users("abusive"), 0);
        assert!(
            gate.lines.lock().expect("lines").is_empty(),
            "idle lines are forgotten"
        );
    }

    #[tokio::test]
    async fn a_request_dropped_while_it_waits_gives_its_place_in_line_back() {
        let gate = WorkspaceGate::new(1, 0);
        let held = gate.turn("w").await.expect("place");
        assert!(gate.turn("w").await.is_err(), "no room to wait");
        drop(held);
        let held = gate.turn("w").await.expect("place");
        let gate2 = WorkspaceGate::new(1, 1);
        let first = gate2.turn("w").await.expect("place");
        let waiting = tokio::spawn({
            let gate2 = gate2.clone();
            async move { gate2.turn("w").await.map(|_| ()) }
        });
        while gate2.users("w") < 2 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(gate2.users("w"), 1, "the abandoned wait left the line");
        drop((held, first));
    }
}
