//! Where the server's own Prometheus metrics are read during each test (`--server-metrics`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `--server-metrics`: off, the target's `/metrics` if it answers (`auto`), the target's
/// `/metrics` (the flag without a value), or given endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricsSource {
    #[default]
    Off,
    /// Each replica's `/metrics` when it answers before the first test; said once when not.
    Auto,
    /// Each replica's `/metrics`; a test whose scrapes fail gets a note.
    Target,
    /// These endpoints (one per replica).
    Urls(Vec<String>),
}

/// The default interval between scrapes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

impl MetricsSource {
    /// Parses the flag's value: `off`, `auto`, `target` (what the flag alone means), or
    /// comma-separated http(s) URLs.
    pub fn parse(s: &str) -> Result<MetricsSource, String> {
        match s.trim() {
            "off" | "none" => Ok(MetricsSource::Off),
            "auto" => Ok(MetricsSource::Auto),
            "" | "target" => Ok(MetricsSource::Target),
            list => {
                let mut urls = Vec::new();
                for u in list.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                    let url = reqwest::Url::parse(u).map_err(|e| {
                        format!("{u:?} is not a URL ({e}); expected e.g. http://127.0.0.1:8000/metrics, auto or off")
                    })?;
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(format!("{u:?}: the scheme must be http or https"));
                    }
                    urls.push(u.to_string());
                }
                Ok(MetricsSource::Urls(urls))
            }
        }
    }

    /// The endpoints to scrape for a target of these replicas (base URLs without a trailing
    /// slash).
    pub fn endpoints(&self, base_urls: &[String]) -> Vec<String> {
        match self {
            MetricsSource::Off => Vec::new(),
            MetricsSource::Auto | MetricsSource::Target => {
                base_urls.iter().map(|u| format!("{u}/metrics")).collect()
            }
            MetricsSource::Urls(v) => v.clone(),
        }
    }
}

impl std::fmt::Display for MetricsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsSource::Off => f.write_str("off"),
            MetricsSource::Auto => f.write_str("auto"),
            MetricsSource::Target => f.write_str("target"),
            MetricsSource::Urls(v) => f.write_str(&v.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_values() {
        assert_eq!(MetricsSource::parse("off"), Ok(MetricsSource::Off));
        assert_eq!(MetricsSource::parse("auto"), Ok(MetricsSource::Auto));
        assert_eq!(MetricsSource::parse("target"), Ok(MetricsSource::Target));
        assert_eq!(
            MetricsSource::parse("http://a:1/metrics, http://b:2/m"),
            Ok(MetricsSource::Urls(vec![
                "http://a:1/metrics".into(),
                "http://b:2/m".into()
            ]))
        );
        assert!(MetricsSource::parse("ftp://a/m").is_err());
        assert!(MetricsSource::parse("soon").unwrap_err().contains("soon"));
        let urls = ["http://a:1".to_string(), "http://b:2".to_string()];
        assert_eq!(
            MetricsSource::Auto.endpoints(&urls),
            ["http://a:1/metrics", "http://b:2/metrics"]
        );
        assert!(MetricsSource::Off.endpoints(&urls).is_empty());
    }
}
