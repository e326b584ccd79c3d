//! Duration flags: one parser for every duration a benchctl binary takes on its command line.

use std::time::Duration;

/// A duration flag's value: humantime (`5s`, `500ms`, `2m`, `1h 30m`), or a bare number of
/// seconds (`5`, what the flags that took seconds accepted before). For clap's `value_parser`,
/// which names the flag and the value in its error.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (e.g. 5s, 500ms, 2m; a bare number is seconds)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_seconds() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert!(parse("fast").is_err());
        assert!(parse("-5").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn a_bad_value_names_the_flag() {
        #[derive(clap::Parser, Debug)]
        struct Args {
            /// A duration.
            #[arg(long, value_parser = parse)]
            lease_ttl: Duration,
        }
        let args = <Args as clap::Parser>::try_parse_from(["x", "--lease-ttl", "5s"]).unwrap();
        assert_eq!(args.lease_ttl, Duration::from_secs(5));
        let args = <Args as clap::Parser>::try_parse_from(["x", "--lease-ttl", "5"]).unwrap();
        assert_eq!(args.lease_ttl, Duration::from_secs(5));
        let text = <Args as clap::Parser>::try_parse_from(["x", "--lease-ttl", "soon"])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("--lease-ttl") && text.contains("soon") && text.contains("500ms"),
            "{text}"
        );
    }
}
