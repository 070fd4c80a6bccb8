/// How long work reports how far it has come. The CLI draws it as a progress
/// bar; libraries only call it, so they know nothing of terminals.
pub trait Progress: Send + Sync {
    /// Starts a new phase of `total` bytes (`None` when unknown).
    fn start(&self, message: &str, total: Option<u64>);
    /// Starts a new phase of `total` items (files, rows).
    fn start_items(&self, message: &str, total: Option<u64>) {
        self.start(message, total);
    }
    /// Adds `n` units to the current phase.
    fn advance(&self, n: u64);
    /// Ends the current phase.
    fn finish(&self);
}

/// A [`Progress`] that draws nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
