//! Asking the kernel to back the graph's large arrays with huge pages.
//!
//! Exact search over a filter's matches and the graph walk both read vectors scattered
//! through an array far larger than the processor's page-table cache covers with 4 KiB
//! pages: every vector read is then a page-table walk as well, and in a virtual machine a
//! walk of two page tables. With 2 MiB pages, 100,000 × 384 vectors (150 MiB) take 75 of
//! them. Linux backs memory with huge pages on request where transparent huge pages are set
//! to `madvise` (a common default) or `always`; elsewhere, and on other systems, this does
//! nothing. It is a hint: nothing depends on it being taken.

/// Huge pages for the allocation behind `v` (its capacity, not only its length), where the
/// system offers them.
pub fn advise<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    linux::advise(v.as_ptr().cast(), v.capacity() * std::mem::size_of::<T>());
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

#[cfg(target_os = "linux")]
mod linux {
    const HUGE_PAGE: usize = 2 << 20;

    #[allow(unsafe_code)]
    pub fn advise(start: *const u8, bytes: usize) {
        // Only the whole huge pages inside the allocation.
        let from = (start as usize).next_multiple_of(HUGE_PAGE);
        let to = (start as usize + bytes) / HUGE_PAGE * HUGE_PAGE;
        if to <= from {
            return;
        }
        // SAFETY: `madvise` with MADV_HUGEPAGE changes how the kernel backs these pages,
        // never their contents or who may use them; the range lies inside one live
        // allocation (page-aligned, as the call requires). A refusal (huge pages off) is
        // ignored.
        unsafe {
            libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE);
        }
    }
}
