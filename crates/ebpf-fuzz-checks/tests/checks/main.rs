//! The fuzz checks' own tests, one binary built from modules: the differential target's
//! compile cache (`cache`), its entries and stack check (`entries`), the findings of issue 16 on every
//! engine driven directly (`findings`), and every committed fuzz input replayed through its
//! target's check (`replay`).

mod cache;
mod entries;
mod findings;
mod replay;
