//! The C API's tests: the committed header matches the code (`header`), and a C program
//! exercises every entry point under AddressSanitizer (`c_program`).

mod c_program;
mod header;
