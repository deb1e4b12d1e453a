//! The `replisim` command: a thin shell over [`replisim::cli`].

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    replisim::cli::main()
}

/// Rust starts programs with SIGPIPE ignored, so a write to a closed pipe (`replisim sweep ... |
/// head`) fails and `println!` panics. A command-line tool should end quietly instead, as `cat`
/// does: the default action, death by SIGPIPE, is restored before anything is printed.
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any other thread exists; `signal` with
    // `SIG_DFL` installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

// Simulations allocate many small buffers per message; mimalloc cuts that cost noticeably.
#[global_allocator]
static ALLOCATOR: NaturalMiMalloc = NaturalMiMalloc;

/// mimalloc, entered by its plain `mi_malloc` family wherever that meets the layout's alignment.
/// The `mimalloc` crate passes every allocation to `mi_malloc_aligned`, whose fast path takes only
/// blocks of at most 1 KiB whose size class is a power of two; every other size (a 48-byte box,
/// a 2 KiB future) went through its over-allocating generic path, about a fifth of a simulation's
/// allocations at some 200 instructions each. mimalloc's blocks are 8-byte multiples laid from
/// 16-byte aligned starts, so a size that is a multiple of an alignment of at most 16 bytes gets a
/// block aligned to it from `mi_malloc` too.
struct NaturalMiMalloc;

/// The largest alignment every mimalloc block of a multiple of it has (`MI_MAX_ALIGN_SIZE`).
const MI_NATURAL_ALIGN: usize = 16;

fn is_natural(size: usize, align: usize) -> bool {
    align <= MI_NATURAL_ALIGN && size.is_multiple_of(align)
}

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free` takes blocks of either
// entry point, and `mi_realloc_aligned` reallocates either kind); a plain entry point is used only
// where its block meets the layout's alignment (see above), `mi_realloc` only on a block that came
// from one and for a new size that is natural too.
unsafe impl std::alloc::GlobalAlloc for NaturalMiMalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if is_natural(layout.size(), layout.align()) {
            // SAFETY: see the impl.
            unsafe { libmimalloc_sys::mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if is_natural(layout.size(), layout.align()) {
            // SAFETY: see the impl.
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded with the caller's guarantees; `mi_free` frees blocks of both entry points.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if is_natural(layout.size(), layout.align()) && is_natural(new_size, layout.align()) {
            // SAFETY: `ptr` came from `mi_malloc` or `mi_zalloc` (its layout is natural), and the
            // new block, from the same family, meets the alignment too.
            unsafe { libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::NaturalMiMalloc;

    /// Every block meets its layout's alignment, holds what is written to it, and keeps it across a
    /// reallocation, on both entry points (sizes that are and are not multiples of the alignment,
    /// alignments up to and beyond 16).
    #[test]
    fn blocks_meet_their_alignment_and_keep_their_bytes() {
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (1..=600).chain([1000, 1024, 1040, 2048, 2056, 70_000]) {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: the layout has a non-zero size; every block is freed with its layout.
                unsafe {
                    // Blocks at other places of their pages than the first: each must be aligned.
                    let others: Vec<*mut u8> =
                        (0..24).map(|_| NaturalMiMalloc.alloc(layout)).collect();
                    for other in &others {
                        assert_eq!(other.align_offset(align), 0, "{size} aligned to {align}");
                    }
                    let block = NaturalMiMalloc.alloc(layout);
                    assert!(!block.is_null(), "{size} bytes aligned to {align}");
                    assert_eq!(block.align_offset(align), 0, "{size} aligned to {align}");
                    block.write_bytes(0xa5, size);
                    let grown_size = size * 3 + 8;
                    let grown = NaturalMiMalloc.realloc(block, layout, grown_size);
                    assert_eq!(
                        grown.align_offset(align),
                        0,
                        "{size} -> {grown_size}, {align}"
                    );
                    assert!(
                        (0..size).all(|i| *grown.add(i) == 0xa5),
                        "{size} kept, {align}"
                    );
                    NaturalMiMalloc
                        .dealloc(grown, Layout::from_size_align_unchecked(grown_size, align));
                    let zeroed = NaturalMiMalloc.alloc_zeroed(layout);
                    assert_eq!(zeroed.align_offset(align), 0);
                    assert!(
                        (0..size).all(|i| *zeroed.add(i) == 0),
                        "{size} zeroed, {align}"
                    );
                    NaturalMiMalloc.dealloc(zeroed, layout);
                    for other in others {
                        NaturalMiMalloc.dealloc(other, layout);
                    }
                }
            }
        }
    }
}
