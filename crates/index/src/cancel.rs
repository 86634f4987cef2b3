//! Stopping read work whose asker went away: a gateway request's searches, listings and
//! checks run on a blocking thread inside [`Cancel::scope`], and the long loops of reading
//! code (graph walks, exact scans, listings) look at [`requested`] now and then and give up,
//! answering that they were cancelled (the store's `Cancelled` error). Writes never look: a
//! committed change is never left half-applied because its client left.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag that one side sets and the work reading it stops at.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

thread_local! {
    static CURRENT: RefCell<Option<Cancel>> = const { RefCell::new(None) };
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the work to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Whether the work running on this thread (inside a [`Cancel::scope`]) was asked to stop.
    pub fn requested() -> bool {
        requested()
    }

    /// Runs `f` on this thread with this flag as the one reading code looks at.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Cancel>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        f()
    }
}

/// Whether the work running on this thread was asked to stop.
pub fn requested() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(Cancel::is_cancelled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_sees_its_flag_and_only_its_own_thread_does() {
        assert!(!requested(), "no scope: never");
        let flag = Cancel::new();
        flag.scope(|| {
            flag.cancel();
            assert!(requested());
            let other = std::thread::spawn(requested).join().expect("thread");
            assert!(!other, "another thread has its own");
            Cancel::new().scope(|| assert!(!requested(), "an inner scope's own flag"));
            assert!(requested(), "the outer flag again");
        });
        assert!(!requested(), "restored after the scope");
    }
}
