//! What an upload or a download reports as it goes; the CLI draws it.

/// Receives progress. Called from several tasks at once.
pub trait Progress: Send + Sync {
    /// The transfer begins: `total` bytes, of which `done` are already there
    /// (resumed).
    fn start(&self, _total: u64, _done: u64) {}
    fn advance(&self, _bytes: u64) {}
    /// Bytes counted earlier that must be sent again (a part PUT failed).
    fn retreat(&self, _bytes: u64) {}
    fn parts_in_flight(&self, _count: usize) {}
    /// Something the user should read (a retry, a fresh start).
    fn note(&self, _text: &str) {}
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
