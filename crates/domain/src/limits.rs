//! Explicit limits, checked where input enters ([`crate::Draft::new`] and the file parser), so
//! that no amendment can grow a record, a projection or an output without bound.

/// Longest agreement slug, in characters.
pub const SLUG_MAX: usize = 64;
/// Longest term key, in characters.
pub const TERM_KEY_MAX: usize = 128;
/// Longest title, agreement name or party name, in bytes.
pub const TITLE_MAX: usize = 512;
/// Longest summary, clause text or source, in bytes.
pub const TEXT_MAX: usize = 16 * 1024;
/// Most changes (`set` plus `remove`) in one amendment.
pub const CHANGES_MAX: usize = 1024;
/// Most entries in `sources`, `parties` or `revokes`.
pub const ENTRIES_MAX: usize = 256;
/// Most items in one list value, counting nested items.
pub const LIST_ITEMS_MAX: usize = 1024;
/// Deepest nesting of lists inside a value.
pub const VALUE_DEPTH_MAX: usize = 8;
/// Largest amendment file the parser reads, in bytes.
pub const FILE_BYTES_MAX: usize = 1024 * 1024;
