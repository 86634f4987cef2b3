//! The allocator's settings, made before any thread starts.
//!
//! glibc gives each thread that allocates under contention an arena of its own, up to eight
//! per core, and an arena keeps the memory its threads freed for them. The gateway's blocking
//! pool runs up to dozens of short-lived threads (store reads, decoding, encoder hand-offs),
//! so under load memory crept up arena by arena: the 600 s overload soak went from 183 to
//! 362 MiB resident with the default, and stayed within 142-174 MiB with two arenas
//! (docs/benchmarks.md). `MALLOC_ARENA_MAX`, when set, is glibc's own and wins.

/// Arenas the process may use (glibc's default: eight per core).
const ARENAS: i32 = 2;

/// Caps glibc's arenas at [`ARENAS`] unless `MALLOC_ARENA_MAX` says otherwise. Call first
/// thing in `main`. Other platforms and C libraries are left as they are.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        #[allow(unsafe_code)]
        // SAFETY: mallopt only changes an allocator parameter; it is called before any other
        // thread exists, and an unsupported value is refused (returns 0), not undefined.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}
