//! What `hookline bench` shows while it runs and when it ends: a progress bar per phase (on a
//! terminal only, on stderr, never with `--json`) and a closing table of the run's figures.

use std::{
    io::IsTerminal,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a bar reads the count it follows.
const TICK: Duration = Duration::from_millis(100);

/// Where phases show their progress: nowhere unless stderr is a terminal and the figures are
/// not asked for as JSON.
#[derive(Clone, Copy)]
pub(crate) struct Progress {
    shown: bool,
}

impl Progress {
    pub(crate) fn new(json: bool) -> Self {
        Self { shown: !json && std::io::stderr().is_terminal() }
    }

    /// A bar for one phase that follows `count` (towards `total` when it is known) until
    /// [`Phase::done`]. `unit` names what is counted.
    pub(crate) fn phase(
        self,
        label: &str,
        unit: &'static str,
        total: Option<u64>,
        count: impl Fn() -> u64 + Send + 'static,
    ) -> Phase {
        if !self.shown {
            return Phase { bar: ProgressBar::hidden(), follower: None };
        }
        let (bar, template) = match total {
            Some(total) => {
                (ProgressBar::new(total), format!("{{prefix:>28}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}}"))
            }
            None => (ProgressBar::new_spinner(), format!("{{prefix:>28}} {{spinner}} {{pos}} {unit} {{per_sec}}")),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        let following = bar.clone();
        let follower = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                following.set_position(count());
            }
        });
        Phase { bar, follower: Some(follower) }
    }
}

/// One phase's bar; cleared when done (or dropped), before the phase prints its line.
pub(crate) struct Phase {
    bar: ProgressBar,
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl Phase {
    pub(crate) fn done(self) {}
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        self.bar.finish_and_clear();
    }
}

/// A shared count a phase's workers add to and its bar follows.
#[derive(Clone, Default)]
pub(crate) struct Counter(Arc<AtomicU64>);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn reader(&self) -> impl Fn() -> u64 + Send + 'static {
        let count = self.0.clone();
        move || count.load(Ordering::Relaxed)
    }
}

/// The closing table: one row per figure, with its share of the run's ceiling and its target
/// where it has them.
#[derive(Default)]
pub(crate) struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    pub(crate) fn row(&mut self, figure: &str, value: String, share: Option<String>, target: Option<&str>) {
        self.rows.push([figure.to_owned(), value, share.unwrap_or_default(), target.unwrap_or_default().to_owned()]);
    }

    /// The table as text, columns aligned.
    pub(crate) fn render(&self) -> String {
        let header = ["figure", "value", "share", "target"].map(str::to_owned);
        let mut widths = [0; 4];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |row: &[String; 4]| {
            let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            format!("| {} |", cells.join(" | "))
        };
        let rule = format!("|{}|", widths.map(|w| "-".repeat(w + 2)).join("|"));
        let mut text = vec![line(&header), rule];
        text.extend(self.rows.iter().map(line));
        text.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_its_columns() {
        let mut table = Table::default();
        table.row("read rate", "8,293/s".into(), Some("100%".into()), None);
        table.row("createItem, no webhook", "4,381/s".into(), Some("52.8%".into()), Some(">= 50%"));
        let text = table.render();
        let widths: Vec<usize> = text.lines().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{text}");
        assert!(text.contains("| createItem, no webhook | 4,381/s | 52.8% | >= 50% |"), "{text}");
    }
}
