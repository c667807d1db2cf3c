//! Progress reporting for long library loops (evaluation, attacks, training).
//!
//! Library code never prints: it calls a [`Progress`] it is given. The `nrpm` command passes
//! an indicatif bar on stderr; tests and library users pass [`Silent`] or their own.

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
