//! What /proc says about the hub process and the kernel: resident memory, peak memory, CPU
//! time, and TCP socket buffer memory. Every reader returns `None` where the file is absent
//! or unreadable (another user's process, a container without /proc).

use std::fs;

/// The kernel's USER_HZ: the unit of utime/stime in /proc/PID/stat. It is 100 on every Linux
/// architecture that matters here (it is fixed by the ABI, not the kernel's HZ).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
const PAGE_SIZE: u64 = 4096;

/// A `/proc/PID/status` field in kB (`VmRSS`, `VmHWM`), as bytes.
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kb(&text, field)
}

pub fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS")
}

pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_kb(pid, "VmHWM")
}

/// A process's CPU time in seconds, split: its own code (`utime`) and the kernel's work on its
/// behalf (`stime`). With tick accounting and no IRQ time accounting (this machine's kernel,
/// `CONFIG_IRQ_TIME_ACCOUNTING` off) softirq work is charged to the task it interrupted: on
/// loopback a `send` runs the receiver's TCP path and its ACK in softirq, and that counts as
/// the *sender's* kernel time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: f64,
    pub kernel: f64,
}

impl CpuTimes {
    pub fn total(self) -> f64 {
        self.user + self.kernel
    }

    /// What was spent between `before` and `self`.
    pub fn since(self, before: Self) -> Self {
        Self {
            user: self.user - before.user,
            kernel: self.kernel - before.kernel,
        }
    }
}

impl std::iter::Sum for CpuTimes {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| Self {
            user: a.user + b.user,
            kernel: a.kernel + b.kernel,
        })
    }
}

/// utime + stime of a process in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_times(pid).map(CpuTimes::total)
}

/// utime and stime of a process in seconds.
pub fn cpu_times(pid: u32) -> Option<CpuTimes> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_times(&text)
}

pub fn parse_stat_times(text: &str) -> Option<CpuTimes> {
    // The command name (field 2) is in parentheses and may contain spaces: split after the
    // last ')'. Fields after it start at field 3 (state); utime is 14, stime 15.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(CpuTimes {
        user: utime as f64 / CLOCK_TICKS_PER_SEC,
        kernel: stime as f64 / CLOCK_TICKS_PER_SEC,
    })
}

/// Kernel memory in TCP socket buffers (all sockets on the machine, both ends of loopback),
/// from `/proc/net/sockstat` `TCP: ... mem N` (pages), as bytes.
pub fn tcp_socket_mem_bytes() -> Option<u64> {
    let text = fs::read_to_string("/proc/net/sockstat").ok()?;
    parse_sockstat_tcp_mem(&text)
}

pub fn parse_sockstat_tcp_mem(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mem" {
            return words.next()?.parse::<u64>().ok().map(|p| p * PAGE_SIZE);
        }
    }
    None
}

/// The 1-minute load average.
pub fn loadavg() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Machine-wide CPU time as (busy, total) in ticks, from the `cpu` line of /proc/stat.
pub fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    parse_machine_cpu(&text)
}

pub fn parse_machine_cpu(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Busy share of the whole machine between two readings, in % of all cores.
pub fn busy_percent(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (before?, after?);
    let dt = t1.checked_sub(t0).filter(|&d| d > 0)?;
    Some(b1.saturating_sub(b0) as f64 / dt as f64 * 100.0)
}

/// The hub as one or more processes (nginx: a master and its workers): memory and CPU are
/// summed over all of them. RSS counts pages shared between the processes (nginx's shared
/// memory zone, the master's pages inherited by its workers) once per process; PSS splits
/// each shared page between its sharers, so the PSS sum counts it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubProcs {
    pids: Vec<u32>,
}

impl HubProcs {
    pub fn new(pids: Vec<u32>) -> Option<Self> {
        (!pids.is_empty()).then_some(Self { pids })
    }

    /// Sums `read` over every process; `None` when no process could be read.
    fn sum<T: std::iter::Sum<T>>(&self, read: impl Fn(u32) -> Option<T>) -> Option<T> {
        let values: Vec<T> = self.pids.iter().filter_map(|&p| read(p)).collect();
        (!values.is_empty()).then(|| values.into_iter().sum())
    }

    pub fn rss_bytes(&self) -> Option<u64> {
        self.sum(rss_bytes)
    }

    /// Sum of each process's own peak (VmHWM): at least the peak of the sum.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        self.sum(peak_rss_bytes)
    }

    pub fn pss_bytes(&self) -> Option<u64> {
        self.sum(pss_bytes)
    }

    pub fn cpu_seconds(&self) -> Option<f64> {
        self.cpu_times().map(CpuTimes::total)
    }

    pub fn cpu_times(&self) -> Option<CpuTimes> {
        self.sum(cpu_times)
    }
}

/// Proportional set size (`Pss` of `/proc/PID/smaps_rollup`), as bytes.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_status_kb(&text, "Pss")
}

/// Every process whose name (`/proc/PID/comm`) is exactly `name`, in pid order. Bounded by the
/// number of entries in /proc.
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// `TcpExt: ListenOverflows` of /proc/net/netstat: connection attempts the kernel dropped
/// because a listener's accept queue was full (whole machine). Each one costs the client a
/// SYN retransmission (1 s, then 2 s, …).
pub fn listen_overflows() -> Option<u64> {
    let text = fs::read_to_string("/proc/net/netstat").ok()?;
    parse_netstat(&text, "TcpExt", "ListenOverflows")
}

/// One counter of /proc/net/netstat (pairs of lines: names, then values).
pub fn parse_netstat(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Whether a process with this pid exists.
pub fn process_exists(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let text = "Name:\tcrier\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kb(text, "VmRSS"), Some(10240 * 1024));
        assert_eq!(parse_status_kb(text, "VmHWM"), Some(20480 * 1024));
        assert_eq!(parse_status_kb(text, "VmSwap"), None);
    }

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let text =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 0 0";
        let times = parse_stat_times(text).unwrap();
        assert_eq!(times.total(), 3.0);
        assert_eq!((times.user, times.kernel), (2.5, 0.5));
        let later = CpuTimes {
            user: 3.0,
            kernel: 2.0,
        };
        assert_eq!(
            later.since(times),
            CpuTimes {
                user: 0.5,
                kernel: 1.5
            }
        );
        assert_eq!([times, later].into_iter().sum::<CpuTimes>().total(), 8.0);
    }

    #[test]
    fn parses_sockstat() {
        let text =
            "sockets: used 200\nTCP: inuse 10 orphan 0 tw 3 alloc 12 mem 7\nUDP: inuse 1 mem 0\n";
        assert_eq!(parse_sockstat_tcp_mem(text), Some(7 * 4096));
    }

    #[test]
    fn parses_machine_cpu() {
        let text = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_machine_cpu(text), Some((150, 1000)));
        assert_eq!(
            busy_percent(Some((150, 1000)), Some((250, 1200))),
            Some(50.0)
        );
        assert_eq!(busy_percent(Some((1, 1)), Some((1, 1))), None);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).is_some_and(|b| b > 0));
        assert!(cpu_seconds(me).is_some());
        assert!(process_exists(me));
    }

    #[test]
    fn parses_netstat() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 1 42 43\nIpExt: A\nIpExt: 1\n";
        assert_eq!(parse_netstat(text, "TcpExt", "ListenOverflows"), Some(42));
        assert_eq!(parse_netstat(text, "TcpExt", "Nope"), None);
    }

    #[test]
    fn sums_over_processes_and_finds_by_name() {
        let me = std::process::id();
        let one = HubProcs::new(vec![me]).unwrap();
        // The same process twice: sums are at least the single figure.
        let twice = HubProcs::new(vec![me, me, u32::MAX]).unwrap();
        assert!(twice.rss_bytes().unwrap() >= one.rss_bytes().unwrap());
        assert!(twice.cpu_seconds().is_some());
        assert!(HubProcs::new(vec![]).is_none());
        assert!(HubProcs::new(vec![u32::MAX]).unwrap().rss_bytes().is_none());
        let comm = fs::read_to_string(format!("/proc/{me}/comm")).unwrap();
        assert!(pids_named(comm.trim_end()).contains(&me));
        assert!(pids_named("no-such-process-name-xyz").is_empty());
    }
}
