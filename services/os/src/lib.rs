//! What the binaries (service, gateway, simulator) ask of the operating system, in one place
//! instead of a copy in each: today the open-file limit ([`fdlimit`]).

pub mod fdlimit;
