//! The fuzz checks' own tests, one binary built from modules: the findings of issue 16 on every
//! engine driven directly (`findings`).

mod findings;
