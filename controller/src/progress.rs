//! The bar a person watching a run sees: its requests, with an ETA.

use std::time::Duration;

/// The bar over a run's (or a sweep's) requests, with an ETA; hidden with `--quiet`. Records
/// reach the controller within 100 ms of each request's end (the worker batches them).
pub fn bar(n: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} requests, ETA {eta} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A line shown beside the bar (above it), or on stderr where the bar is hidden (`--quiet`, or
/// stderr is not a terminal).
pub fn note(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
