//! beacon-safety's integration tests, one binary (docs/compile-times.md, "Fewer link steps"):
//! the program run against stand-in tools.

mod standins;
