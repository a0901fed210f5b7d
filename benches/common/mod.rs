//! Helpers shared by the `harness = false` benchmarks: percentiles, environment knobs, a
//! small deterministic PRNG, the machine description and the block device's flush counter.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

/// SplitMix64: deterministic, fast, good enough to pick plates and times.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A normalized California-style plate (`7ABC123`) for plate number `i`.
pub fn plate(i: u64) -> String {
    let letters = b"ABCDEFGHJKLMNPRSTUVWXYZ";
    let l = letters.len() as u64;
    let d0 = (i % 9) + 1;
    let mut x = i / 9;
    let a = letters[(x % l) as usize] as char;
    x /= l;
    let b = letters[(x % l) as usize] as char;
    x /= l;
    let c = letters[(x % l) as usize] as char;
    x /= l;
    format!("{d0}{a}{b}{c}{:03}", x % 1000)
}

/// `name` from the environment parsed as `T`, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .map(|v| v.replace('_', ""))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list from the environment, or `default`.
pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|s| s.trim().replace('_', "").parse().ok())
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

/// The `p`-th percentile (0..=100) of sorted durations (nearest rank).
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Print the machine: cores, CPU model, memory, and where temporary files go.
pub fn print_machine() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    println!(
        "machine: {cores} cores, {model}, {:.1} GiB RAM, temp dir {}",
        mem_kb as f64 / 1024.0 / 1024.0,
        std::env::temp_dir().display()
    );
}

/// The whole-disk block device under `dir` (e.g. `vda`), from /proc/self/mountinfo and sysfs.
pub fn block_device_of(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = ((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00));
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    // .../block/vda or .../block/vda/vda1: the disk is the component after "block".
    let parts: Vec<String> = link
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let i = parts.iter().position(|p| p == "block")?;
    parts.get(i + 1).cloned()
}

/// Flush (cache-flush, i.e. fsync barrier) requests completed by a block device so far:
/// field 16 of /sys/block/<dev>/stat. Counts the whole machine's flushes on that disk.
pub fn device_flushes(dev: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/sys/block/{dev}/stat")).ok()?;
    s.split_whitespace().nth(15).and_then(|v| v.parse().ok())
}

/// CPU seconds (user + system) used by this process so far.
pub fn process_cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

/// Machine-wide CPU seconds so far: (busy, iowait, total), summed over all cores.
pub fn machine_cpu_secs() -> (f64, f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f
        .first()
        .map(|_| f.get(3).copied().unwrap_or(0))
        .unwrap_or(0);
    let iowait = f.get(4).copied().unwrap_or(0);
    (
        (total - idle - iowait) as f64 / 100.0,
        iowait as f64 / 100.0,
        total as f64 / 100.0,
    )
}

/// CPU use over an interval: this process and the rest of the machine.
#[derive(Clone, Copy, Debug)]
pub struct CpuMeter {
    own: f64,
    machine: (f64, f64, f64),
}

/// What a [`CpuMeter`] saw, as fractions of all cores' time.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    /// CPU seconds of this process.
    pub own_secs: f64,
    /// This process's share of all cores.
    pub own: f64,
    /// Other processes' share of all cores.
    pub others: f64,
    /// Cores idle waiting for I/O.
    pub iowait: f64,
}

impl CpuMeter {
    /// Start measuring.
    pub fn start() -> Self {
        Self {
            own: process_cpu_secs(),
            machine: machine_cpu_secs(),
        }
    }

    /// Use since start.
    pub fn stop(&self) -> CpuUse {
        let own = process_cpu_secs() - self.own;
        let (b, w, t) = machine_cpu_secs();
        let total = (t - self.machine.2).max(0.01);
        let busy = b - self.machine.0;
        CpuUse {
            own_secs: own,
            own: own / total,
            others: ((busy - own) / total).max(0.0),
            iowait: (w - self.machine.1) / total,
        }
    }
}
