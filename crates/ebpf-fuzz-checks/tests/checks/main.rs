//! The fuzz checks' own tests, one binary built from modules: the findings of issue 16 on every
//! engine driven directly (`findings`), and every committed fuzz input replayed through its
//! target's check (`replay`).

mod findings;
mod replay;
