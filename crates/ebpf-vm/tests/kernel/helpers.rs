//! Helper edge cases.
