//! The threads that build whole graphs: a collection's graph built from the store when it
//! loads, and rebuilds without tombstones.
//!
//! A build links every node of a collection, seconds of work on all cores. On rayon's global
//! pool it would keep every worker busy with its own tasks, and rayon serves a job injected
//! from outside (a write's few new nodes, the encoder's forward pass) only once its workers run
//! out of work: a write to another workspace waited for the whole build. Builds therefore run
//! on a pool of their own, and on Linux its threads run at a lower priority (nice
//! [`BUILD_NICENESS`]), so the scheduler gives the cores to acknowledged writes and admitted
//! queries first and the build takes what they leave. A build on an idle machine runs at full
//! speed; on a saturated one it takes longer, which only the collection being built waits for.

use std::sync::OnceLock;

/// How much lower build threads run than the rest (Linux `nice`, 0 to 19): at 10, a build
/// thread gets about a tenth of a core that a normal thread also wants.
pub const BUILD_NICENESS: i32 = 10;

/// The build pool: as many threads as the machine has cores, each at [`BUILD_NICENESS`];
/// `None` where its threads cannot be started (builds then share rayon's global pool).
pub fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("graph-build-{i}"))
            .start_handler(|_| lower_this_threads_priority())
            .build()
            .inspect_err(|e| {
                tracing::warn!(error = %e, "cannot start the graph build pool; builds share the global one");
            })
            .ok()
    })
    .as_ref()
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_this_threads_priority() {
    // On Linux, PRIO_PROCESS with a thread id sets that thread's niceness alone.
    // SAFETY: plain system calls on the calling thread, no memory is passed.
    let failed = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, BUILD_NICENESS) != 0
    };
    if failed {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "graph build thread keeps its priority"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

/// The niceness of the calling thread (Linux), for tests.
#[cfg(all(test, target_os = "linux"))]
#[allow(unsafe_code)]
pub(crate) fn niceness() -> i32 {
    // SAFETY: as above.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::getpriority(libc::PRIO_PROCESS, tid)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_threads_run_at_a_lower_priority() {
        let pool = super::pool().expect("a build pool");
        #[cfg(target_os = "linux")]
        {
            let here = super::niceness();
            let there = pool.install(super::niceness);
            assert!(
                there >= here.max(super::BUILD_NICENESS),
                "a build thread runs at nice {there}, the test thread at {here}"
            );
        }
        #[cfg(not(target_os = "linux"))]
        eprintln!("skipped: thread priority is lowered on Linux only");
        assert!(pool.current_num_threads() >= 1);
    }
}
