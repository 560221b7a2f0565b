//! Our side of the corpus set: one `corpus::Side` per engine of `Engine::ALL`.
//!
//! Waiting for the facade's object API (`ebpf_vm::Object`, branch `maps-run`): until it is
//! merged, there are no candidates.

use crate::corpus::{Candidate, CorpusProgram};

/// One candidate per engine.
pub(crate) fn candidates(_program: &CorpusProgram) -> Vec<Candidate> {
    Vec::new()
}
