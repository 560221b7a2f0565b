//! Programs written for the kernel (tests/bpf/): loaded with their maps, run with an XDP or
//! socket-filter context on packets built here, on every engine of `Engine::ALL`, with the
//! verdicts and map contents the C source implies.

mod budget;
mod corpus;
mod differential;
mod facts;
mod globals;
mod helpers;
mod map_in_map;
mod packets;
mod scrub;
mod sizes;
mod stress;
