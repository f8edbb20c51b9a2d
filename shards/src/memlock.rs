//! io_uring registers its buffers in locked memory; the soft limit is often lower
//! than the hard one, so raise it before any executor starts.

/// Raises the soft RLIMIT_MEMLOCK to the hard limit; returns the new soft limit in bytes.
pub fn raise_to_hard_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}

/// The least locked memory glommio starts an executor with (its own check).
pub const GLOMMIO_MIN_BYTES: u64 = 512 * 1024;

/// Makes sure glommio can start: the soft limit is raised to the hard one, and when
/// even that is below glommio's minimum, both are raised to unlimited, which a
/// privileged process (CAP_SYS_RESOURCE) may do. Returns the soft limit, or, when
/// it stays too low, what to tell the operator.
pub fn ensure_minimum() -> Result<u64, String> {
    let soft = raise_to_hard_limit();
    if soft >= GLOMMIO_MIN_BYTES || raise_to_unlimited() {
        return Ok(soft.max(GLOMMIO_MIN_BYTES));
    }
    Err(too_low_message(soft))
}

fn raise_to_unlimited() -> bool {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) == 0 }
}

fn too_low_message(soft: u64) -> String {
    format!(
        "the locked-memory limit (RLIMIT_MEMLOCK) is {} KiB and cannot be raised; io_uring \
         needs at least {} KiB: run `ulimit -l unlimited` before starting natrix, or set \
         LimitMEMLOCK=infinity in its systemd unit",
        soft / 1024,
        GLOMMIO_MIN_BYTES / 1024
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_limit_and_the_fixes() {
        let text = too_low_message(64 * 1024);
        assert!(text.contains("is 64 KiB"), "{text}");
        assert!(text.contains("ulimit -l unlimited") && text.contains("LimitMEMLOCK=infinity"));
    }
}
