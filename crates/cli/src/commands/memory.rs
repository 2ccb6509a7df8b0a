//! This process's memory, as the kernel counts it (`/proc/self/status`; Linux only, 0
//! elsewhere): what training runs and benchmarks report.

/// The fields of `/proc/self/status` named, in bytes, in that order.
fn status_bytes<const N: usize>(names: [&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    names.map(|name| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    })
}

/// Resident memory of this process: the peak so far (`VmHWM`), now (`VmRSS`), and of now the
/// process's own pages (`RssAnon`: heap, stacks) as opposed to pages of mapped files, which
/// the kernel can drop and read again. Bytes.
pub struct Resident {
    pub peak: u64,
    pub now: u64,
    pub anonymous: u64,
}

pub fn resident() -> Resident {
    let [peak, now, anonymous] = status_bytes(["VmHWM", "VmRSS", "RssAnon"]);
    Resident {
        peak,
        now,
        anonymous,
    }
}

/// Peak resident memory of this process so far, in bytes.
pub fn peak_rss_bytes() -> u64 {
    resident().peak
}
