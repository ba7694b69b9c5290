//! The host's one clock for the controller, the tests, the benchmark and the
//! demo: CLOCK_MONOTONIC in microseconds, the clock the kernel programs stamp
//! packets with (`bpf_ktime_get_ns`) and that every network namespace shares.

/// Microseconds on CLOCK_MONOTONIC.
pub fn mono_us() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `t`, which lives on this
    // stack frame for the whole call; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    assert_eq!(rc, 0, "CLOCK_MONOTONIC is always readable");
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    #[test]
    fn it_does_not_go_back() {
        let a = super::mono_us();
        let b = super::mono_us();
        assert!(b >= a && a > 0);
    }
}
