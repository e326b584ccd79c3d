//! benchctl: the command line and the controller service, and `benchctl sim`, a simulated
//! OpenAI-compatible server (a test instrument and demo target, not a model).

pub mod bench;
pub mod cli;
pub mod output;
pub mod sim;
