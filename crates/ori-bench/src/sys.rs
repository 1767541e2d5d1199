//! What the tool reads from the operating system: process CPU time and RSS
//! from `/proc`, the open-file limit, and one monotonic clock (and a sleep
//! until a time of it).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on
/// every Linux this tool targets).
const CLK_TCK: f64 = 100.0;

/// Nanoseconds since the first call in this process (monotonic). Publishers
/// stamp messages with it and subscribers compare against it: both sides
/// live in this process, so no wall clock is involved.
pub fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

static THREADS: OnceLock<usize> = OnceLock::new();

/// Records the runtime's worker thread count (`--threads`), once, at start.
pub fn set_threads(n: usize) {
    let _ = THREADS.set(n);
}

/// The runtime's worker thread count (1 if never set).
pub fn threads() -> usize {
    THREADS.get().copied().unwrap_or(1)
}

/// CPUs this process may run on (its affinity mask, e.g. 1 under
/// `taskset -c 1`).
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// User + system CPU seconds used so far by process `pid` (`self` for this
/// process), from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after the last ')'. There, field 3 (state) is index 0,
    // utime (14) index 11 and stime (15) index 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / CLK_TCK)
}

/// User + system CPU seconds used so far by each thread of this process
/// (`/proc/self/task/<tid>/stat`), by thread id.
pub fn thread_cpu_seconds() -> Vec<(u32, f64)> {
    per_thread(|tid| cpu_seconds(&format!("self/task/{tid}")))
}

/// `read` of each thread of this process alive now, by thread id.
fn per_thread<T>(read: impl Fn(&str) -> Option<T>) -> Vec<(u32, T)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name();
        let tid = name.to_str()?;
        Some((tid.parse().ok()?, read(tid)?))
    })
    .collect()
}

/// The CPUs this process may run on (`Cpus_allowed_list` of
/// `/proc/self/status`; empty if unreadable).
pub fn allowed_cpus() -> Vec<usize> {
    status_field("self", "Cpus_allowed_list")
        .map(|list| parse_cpu_list(&list))
        .unwrap_or_default()
}

/// The value of `key` in `/proc/<pid>/status` (`Threads:  5` -> `5`).
pub fn status_field(pid: &str, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let value = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(value.trim().to_owned())
    })
}

/// A CPU list as the kernel writes it: `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(lo), Ok(hi)) = (lo.parse::<usize>(), hi.parse::<usize>()) {
            // At most 4,096 CPUs: a garbled list cannot make this loop long.
            cpus.extend(lo..=hi.min(lo + 4096));
        }
    }
    cpus
}

/// Busy and total clock ticks so far of the CPUs `cpus`, whoever used
/// them (`/proc/stat`; busy is all but idle and I/O wait).
pub fn cpu_ticks(cpus: &[usize]) -> Option<(u64, u64)> {
    parse_cpu_ticks(&std::fs::read_to_string("/proc/stat").ok()?, cpus)
}

fn parse_cpu_ticks(stat: &str, cpus: &[usize]) -> Option<(u64, u64)> {
    let (mut busy, mut total, mut found) = (0u64, 0u64, 0usize);
    for line in stat.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(cpu) = fields.next().and_then(|f| f.strip_prefix("cpu")) else {
            continue;
        };
        if !cpu.parse().is_ok_and(|n: usize| cpus.contains(&n)) {
            continue;
        }
        let ticks: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is
        // counted in user already).
        let all: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        busy += all - idle.min(all);
        total += all;
        found += 1;
    }
    (found == cpus.len() && found > 0).then_some((busy, total))
}

/// Nanoseconds the threads of this process alive now have spent runnable
/// but waiting for a CPU (the second field of
/// `/proc/self/task/<tid>/schedstat`), by thread id.
pub fn runqueue_wait_ns() -> Vec<(u32, u64)> {
    per_thread(|tid| {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
        stat.split_ascii_whitespace().nth(1)?.parse().ok()
    })
}

/// Resident set size of process `pid` in KiB (`VmRSS` of
/// `/proc/<pid>/status`).
pub fn rss_kib(pid: &str) -> Option<u64> {
    status_field(pid, "VmRSS")?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Checks that a server PID given on the command line names a live process.
pub fn check_pid(pid: Option<u32>) -> anyhow::Result<Option<String>> {
    match pid {
        None => Ok(None),
        Some(pid) => {
            let p = pid.to_string();
            if cpu_seconds(&p).is_none() || rss_kib(&p).is_none() {
                anyhow::bail!("--server-pid {pid}: no such process (or /proc/{pid} is unreadable)");
            }
            Ok(Some(p))
        }
    }
}

/// The soft and hard limits on open files of this process.
fn nofile_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line["Max open files".len()..].split_ascii_whitespace();
    let parse = |s: &str| {
        if s == "unlimited" {
            Some(u64::MAX)
        } else {
            s.parse().ok()
        }
    };
    Some((parse(f.next()?)?, parse(f.next()?)?))
}

/// Makes sure this process may open `needed` files. The workspace forbids
/// `unsafe` (so no `setrlimit` call through `libc`): the limit is raised
/// with util-linux `prlimit --pid <self>`, to the hard limit, or above it
/// when the process may (root). If that cannot be done the caller is told
/// to raise `ulimit -n` before starting.
pub fn ensure_nofile(needed: u64) -> anyhow::Result<()> {
    let Some((soft, hard)) = nofile_limits() else {
        eprintln!(
            "warning: cannot read the open-file limit; make sure `ulimit -n` exceeds {needed}"
        );
        return Ok(());
    };
    if soft >= needed {
        return Ok(());
    }
    let pid = std::process::id().to_string();
    let set = |soft: u64, hard: u64| {
        let arg = format!("--nofile={soft}:{hard}");
        std::process::Command::new("prlimit")
            .args(["--pid", &pid, &arg])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if needed > hard {
        let _ = set(needed, needed);
    }
    if nofile_limits().is_some_and(|(s, _)| s < needed) {
        let _ = set(hard.min(needed), hard);
    }
    match nofile_limits() {
        Some((s, _)) if s >= needed => {
            eprintln!("raised the open-file limit from {soft} to {s}");
            Ok(())
        }
        Some((s, h)) => anyhow::bail!(
            "need {needed} open files but the limit is {s} (hard {h}) and could not be raised; \
             run `ulimit -n {needed}` (or higher) before starting, or use fewer connections"
        ),
        None => Ok(()),
    }
}

/// Sleeps until `now_ns() >= t`.
pub async fn sleep_until_ns(t: u64) {
    let now = now_ns();
    if t > now {
        tokio::time::sleep(Duration::from_nanos(t - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_ticks_are_read_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-1"), [0, 1]);
        assert_eq!(parse_cpu_list("1"), [1]);
        assert_eq!(parse_cpu_list("0-2,5,7-8"), [0, 1, 2, 5, 7, 8]);
        assert!(parse_cpu_list("").is_empty());
        assert_eq!(parse_cpu_list("x,3"), [3]);
        let stat = "cpu  30 0 30 140 0 0 0 0 0 0\n\
                    cpu0 10 0 20 60 10 0 0 0 0 0\n\
                    cpu1 20 0 10 70 0 0 5 0 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(parse_cpu_ticks(stat, &[0]), Some((30, 100)));
        assert_eq!(parse_cpu_ticks(stat, &[1]), Some((35, 105)));
        assert_eq!(parse_cpu_ticks(stat, &[0, 1]), Some((65, 205)));
        assert_eq!(parse_cpu_ticks(stat, &[2]), None, "no such CPU");
        assert_eq!(parse_cpu_ticks(stat, &[]), None);
    }

    #[test]
    fn reads_own_process() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let (busy, total) = cpu_ticks(&cpus).unwrap();
        assert!(busy <= total && total > 0);
        assert!(!runqueue_wait_ns().is_empty());
        let threads: u64 = status_field("self", "Threads").unwrap().parse().unwrap();
        assert!(threads >= 1);
        assert_eq!(status_field("self", "NoSuchField"), None);
        assert!(cpu_seconds("self").is_some());
        assert!(rss_kib("self").unwrap() > 0);
        assert!(nofile_limits().is_some());
        ensure_nofile(16).unwrap();
    }
}
