//! When the agent's heap gives freed memory back to the system (glibc's malloc only;
//! other allocators are left as they are).
//!
//! glibc hands the free top of a heap back to the kernel as soon as it grows past
//! `M_TRIM_THRESHOLD` (128 KiB by default). Forwarding frees a few hundred KiB per
//! write request (its body, its decoded points, the records for each sink), so
//! with the default every request gave those pages back and the next one took page
//! faults to get them again. [`keep_free_memory`] keeps up to [`KEEP_FREE_BYTES`] of
//! free memory per heap for the next request, and maps allocations of
//! [`MAP_ALONE_BYTES`] or more on their own, so those are unmapped as soon as they
//! are freed. A write body of 1 MiB or more is still followed by [`give_back`], which
//! returns all free memory (docs/HTTP.md), so a burst of large requests does not
//! leave the agent at its peak.
//!
//! An operator's own setting wins: with `MALLOC_TRIM_THRESHOLD_` or
//! `MALLOC_MMAP_THRESHOLD_` in the environment, or `glibc.malloc.trim_threshold` or
//! `glibc.malloc.mmap_threshold` in `GLIBC_TUNABLES`, glibc is left as configured.

/// Free memory each heap keeps for reuse instead of giving it back at once.
pub const KEEP_FREE_BYTES: usize = 4 << 20;
/// Allocations at least this large are mapped on their own (unmapped when freed).
pub const MAP_ALONE_BYTES: usize = 4 << 20;

/// Makes freed memory wait in the heap for reuse (see the module docs). Call once,
/// early, before the runtime starts its threads. Returns whether glibc's settings
/// were changed (false: another allocator, or the environment sets them).
pub fn keep_free_memory() -> bool {
    let environment = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    if operator_tunes_malloc(
        environment("GLIBC_TUNABLES").as_deref(),
        environment("MALLOC_TRIM_THRESHOLD_").is_some()
            || environment("MALLOC_MMAP_THRESHOLD_").is_some(),
    ) {
        return false;
    }
    set_thresholds()
}

/// Whether the environment already says when glibc trims or maps: `GLIBC_TUNABLES`
/// setting either threshold, or the older `MALLOC_*_THRESHOLD_` variables.
fn operator_tunes_malloc(tunables: Option<&str>, legacy_variables: bool) -> bool {
    legacy_variables
        || tunables.is_some_and(|t| {
            t.split(':').any(|setting| {
                let name = setting.split('=').next().unwrap_or_default().trim();
                name == "glibc.malloc.trim_threshold" || name == "glibc.malloc.mmap_threshold"
            })
        })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: mallopt only changes the allocator's parameters; both values are in
    // the ranges glibc accepts (the mmap threshold at most HEAP_MAX_SIZE / 2, 32 MiB
    // on 64-bit).
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_FREE_BYTES as libc::c_int) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, MAP_ALONE_BYTES as libc::c_int) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

/// Returns all free heap memory to the system, after a large request, so a burst
/// does not leave the agent's RSS at its peak.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::operator_tunes_malloc;

    #[test]
    fn an_operators_malloc_settings_are_left_alone() {
        assert!(!operator_tunes_malloc(None, false));
        assert!(!operator_tunes_malloc(
            Some("glibc.rtld.optional_static_tls=512"),
            false
        ));
        assert!(!operator_tunes_malloc(
            Some("glibc.malloc.arena_max=2"),
            false
        ));
        assert!(operator_tunes_malloc(
            Some("glibc.malloc.mmap_threshold=65536"),
            false
        ));
        assert!(operator_tunes_malloc(
            Some("glibc.rtld.nns=2:glibc.malloc.trim_threshold=1"),
            false
        ));
        assert!(operator_tunes_malloc(None, true));
    }
}
