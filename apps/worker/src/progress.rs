//! Progress of long commands on stderr: a bar with rate and ETA on a terminal (indicatif),
//! otherwise a plain line every few seconds (logs, CI, pipes).

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is written.
const LINE_EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    plain: Mutex<Plain>,
}

struct Plain {
    started: Instant,
    last_line: Option<Instant>,
    done: u64,
    total: Option<u64>,
    phase: Option<String>,
    resume: Option<String>,
}

impl Progress {
    pub fn new(label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(label.to_owned());
            bar
        });
        Self {
            label: label.to_owned(),
            bar,
            plain: Mutex::new(Plain {
                started: Instant::now(),
                last_line: None,
                done: 0,
                total: None,
                phase: None,
                resume: None,
            }),
        }
    }

    /// The phase a multi-phase check is in, and the flag that resumes from here.
    pub fn note(&self, phase: &str, resume: Option<&str>) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {phase}", self.label));
        }
        if let Ok(mut p) = self.plain.lock() {
            if p.phase.as_deref() != Some(phase) {
                p.phase = Some(phase.to_owned());
                p.last_line = None;
            }
            p.resume = resume.map(str::to_owned);
        }
    }

    pub fn set(&self, done: u64, total: Option<u64>) {
        if let Some(bar) = &self.bar {
            bar.set_length(total.unwrap_or(done).max(done));
            bar.set_position(done);
            return;
        }
        let Ok(mut p) = self.plain.lock() else { return };
        p.done = done;
        p.total = total;
        if p.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY) {
            p.last_line = Some(Instant::now());
            eprintln!("{}", self.line(&p));
        }
    }

    fn line(&self, p: &Plain) -> String {
        let secs = p.started.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let rate = if secs > 0.0 {
            p.done as f64 / secs
        } else {
            0.0
        };
        let mut line = self.label.clone();
        if let Some(phase) = &p.phase {
            line.push_str(&format!(" ({phase})"));
        }
        match p.total {
            Some(total) if total > 0 => {
                #[allow(clippy::cast_precision_loss)]
                let pct = p.done as f64 * 100.0 / total as f64;
                line.push_str(&format!(": {}/{total} ({pct:.1}%)", p.done));
                if rate > 0.0 {
                    #[allow(clippy::cast_precision_loss)]
                    let eta = total.saturating_sub(p.done) as f64 / rate;
                    line.push_str(&format!(", {rate:.0}/s, eta {eta:.0}s"));
                }
            }
            _ => line.push_str(&format!(": {} ({rate:.0}/s)", p.done)),
        }
        if let Some(resume) = &p.resume {
            line.push_str(&format!("; resume with {resume}"));
        }
        line
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        } else if let Ok(p) = self.plain.lock()
            && p.done > 0
        {
            eprintln!("{}", self.line(&p));
        }
    }
}
