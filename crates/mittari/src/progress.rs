//! A progress line on a terminal for work that takes more than a second: reading a large CSV,
//! fitting a model, writing `--output`. A log read in chunks reports its rows and bytes, so
//! the line gives them, the rate and, for a file, how far through it is and the time left;
//! plugins (ABI v1) report no progress of their own, so other phases show their name and
//! the time spent in them.

use std::io::Write as _;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Shown only after this long, so quick commands print nothing extra.
const DELAY: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(100);
const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

struct State {
    phase: String,
    since: Instant,
    /// What a reader has counted, while the phase is reading.
    counters: Option<Arc<mittari_io::ReadProgress>>,
    done: bool,
}

pub(crate) struct Progress {
    shared: Option<Arc<(Mutex<State>, Condvar)>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the line on standard error when `enabled` (a terminal, not a machine format).
    pub(crate) fn start(enabled: bool, phase: &str) -> Progress {
        if !enabled {
            return Progress {
                shared: None,
                thread: None,
            };
        }
        let shared = Arc::new((
            Mutex::new(State {
                phase: phase.to_owned(),
                since: Instant::now(),
                counters: None,
                done: false,
            }),
            Condvar::new(),
        ));
        let worker = Arc::clone(&shared);
        let thread = std::thread::spawn(move || draw(&worker));
        Progress {
            shared: Some(shared),
            thread: Some(thread),
        }
    }

    /// Names the next phase; its clock starts now.
    pub(crate) fn phase(&self, phase: &str) {
        if let Some((state, _)) = self.shared.as_deref()
            && let Ok(mut state) = state.lock()
        {
            state.phase = phase.to_owned();
            state.since = Instant::now();
            state.counters = None;
        }
    }

    /// Shows what a reader counts (rows, bytes, the input's size) beside the current phase.
    pub(crate) fn counting(&self, counters: Arc<mittari_io::ReadProgress>) {
        if let Some((state, _)) = self.shared.as_deref()
            && let Ok(mut state) = state.lock()
        {
            state.counters = Some(counters);
        }
    }
}

/// `reading log.csv: 12 345 678 rows, 1.2 of 3.7 GB (33 %), 152 MB/s, about 16 s left`.
fn counted(phase: &str, counters: &mittari_io::ReadProgress, seconds: f64) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let rows = counters.rows.load(Relaxed);
    let bytes = counters.bytes.load(Relaxed);
    let total = counters.total_bytes.load(Relaxed);
    let mut line = format!("{phase}: {} rows", grouped(rows));
    if bytes > 0 {
        let rate = bytes as f64 / seconds.max(1e-3);
        if total > 0 {
            let share = (bytes as f64 / total as f64).min(1.0);
            line.push_str(&format!(
                ", {:.1} of {:.1} GB ({:.0} %)",
                bytes as f64 / 1e9,
                total as f64 / 1e9,
                share * 100.0
            ));
        } else {
            line.push_str(&format!(", {:.2} GB", bytes as f64 / 1e9));
        }
        line.push_str(&format!(", {:.0} MB/s", rate / 1e6));
        if total > bytes && rate > 0.0 {
            line.push_str(&format!(
                ", about {:.0} s left",
                (total - bytes) as f64 / rate
            ));
        }
    } else {
        line.push_str(&format!(
            ", {} rows/s",
            grouped((rows as f64 / seconds.max(1e-3)) as u64)
        ));
    }
    line
}

/// 12345678 as `12 345 678`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

impl Drop for Progress {
    /// Clears the line before anything else is printed.
    fn drop(&mut self) {
        if let Some((state, wake)) = self.shared.as_deref() {
            if let Ok(mut state) = state.lock() {
                state.done = true;
            }
            wake.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn draw(shared: &(Mutex<State>, Condvar)) {
    let (state, wake) = shared;
    let started = Instant::now();
    let mut shown = false;
    let mut tick = 0;
    let Ok(mut guard) = state.lock() else {
        return;
    };
    loop {
        let wait = if shown {
            TICK
        } else {
            DELAY.saturating_sub(started.elapsed())
        };
        guard = match wake.wait_timeout(guard, wait) {
            Ok((guard, _)) => guard,
            Err(_) => return,
        };
        let mut stderr = std::io::stderr().lock();
        if guard.done {
            if shown {
                // Carriage return and erase the line.
                let _ = write!(stderr, "\r\x1b[2K");
                let _ = stderr.flush();
            }
            return;
        }
        if started.elapsed() >= DELAY {
            shown = true;
            tick += 1;
            let seconds = guard.since.elapsed().as_secs_f64();
            let text = match &guard.counters {
                Some(counters) => counted(&guard.phase, counters, seconds),
                None => format!("{} ({seconds:.1} s)", guard.phase),
            };
            let _ = write!(stderr, "\r\x1b[2K{} {text}", SPINNER[tick % SPINNER.len()]);
            let _ = stderr.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    #[test]
    fn the_line_says_rows_bytes_rate_and_time_left() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(12_345_678), "12 345 678");
        let counters = mittari_io::ReadProgress::default();
        counters.rows.store(1_000_000, Relaxed);
        counters.bytes.store(300_000_000, Relaxed);
        counters.total_bytes.store(900_000_000, Relaxed);
        assert_eq!(
            counted("reading log.csv", &counters, 2.0),
            "reading log.csv: 1 000 000 rows, 0.3 of 0.9 GB (33 %), 150 MB/s, about 4 s left"
        );
        counters.total_bytes.store(0, Relaxed);
        assert_eq!(
            counted("reading standard input", &counters, 2.0),
            "reading standard input: 1 000 000 rows, 0.30 GB, 150 MB/s"
        );
        counters.bytes.store(0, Relaxed);
        assert_eq!(
            counted("reading postgres://db", &counters, 2.0),
            "reading postgres://db: 1 000 000 rows, 500 000 rows/s"
        );
    }
}
