//! Progress reporting for long library loops (evaluation, attacks, training).
//!
//! Library code never prints: it calls a [`Progress`] it is given. The CLI passes
//! [`Bar`] (an indicatif bar on stderr); tests and library users pass [`Silent`].

/// Receives progress of a long loop.
pub trait Progress {
    /// A new stage with `total` units of work.
    fn start(&mut self, stage: &str, total: u64);
    /// `n` more units done.
    fn advance(&mut self, n: u64);
    /// The stage is over (a one-line `summary` may be shown).
    fn finish(&mut self, summary: &str);
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self, _: &str) {}
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
#[derive(Debug, Default)]
pub struct Bar {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress for Bar {
    fn start(&mut self, stage: &str, total: u64) {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>28} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(stage.to_string());
        self.bar = Some(bar);
    }

    fn advance(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    fn finish(&mut self, summary: &str) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if !summary.is_empty() {
            eprintln!("{summary}");
        }
    }
}
