//! A progress line on a terminal for work that takes more than a second: reading a large CSV,
//! fitting a model, writing `--output`. Plugins (ABI v1) report no progress of their own, so
//! the line names the phase and the time spent in it rather than a percentage.

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
        }
    }
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
            let _ = write!(
                stderr,
                "\r\x1b[2K{} {} ({:.1} s)",
                SPINNER[tick % SPINNER.len()],
                guard.phase,
                guard.since.elapsed().as_secs_f64()
            );
            let _ = stderr.flush();
        }
    }
}
