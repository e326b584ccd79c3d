//! The live dashboard (served by the controller, by `benchctl sweep`, or by `benchctl dashboard
//! --json-file` alone) and the shareable report (`benchctl report DIR`). Both read the sweep's
//! result files and draw the same charts as SVG on the server: no JavaScript library, no CDN, no
//! network.

pub mod charts;
pub mod data;
pub mod page;
pub mod server;
pub mod server_metrics;
