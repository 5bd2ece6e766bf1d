//! The allocator uerzoo's programs run on (the `uerzoo` binary and the benchmarks install
//! it with `#[global_allocator]`; the library itself never chooses one).
//!
//! Training and inference allocate the same large tensor buffers on every step. With the
//! system allocator each one above glibc's mmap threshold is a fresh `mmap`, faulted in and
//! zeroed by the kernel page by page, then unmapped on free: a third of a small model's
//! training step went to page faults (`docs/performance.md`). mimalloc keeps freed memory
//! for reuse; [`configure`] turns off its delayed return of free pages to the OS, so a
//! steady-state step allocates without touching the kernel.

/// The allocator type to install: `#[global_allocator] static A: Allocator = Allocator;`.
pub use mimalloc::MiMalloc as Allocator;

/// mimalloc's `mi_option_purge_delay` (v3 `mimalloc.h`: the delay in ms before freed pages
/// go back to the OS; −1 = never).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed pages for reuse for the rest of the process. Call once at start-up from a
/// program that installed [`Allocator`]; harmless otherwise.
pub fn configure() {
    // SAFETY: setting an option is a plain store inside mimalloc, valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
