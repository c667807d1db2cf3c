//! The command's progress bar: an indicatif bar on stderr (hidden when stderr is not a
//! terminal) behind the library's [`Progress`] trait.

use nrpm::progress::Progress;

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
                "{msg:>28} [{bar:30}] {pos}/{len} {per_sec} {elapsed_precise} eta {eta}",
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
