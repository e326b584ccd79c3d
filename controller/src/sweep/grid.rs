//! The sweep's grid: input/output combinations × concurrencies, and the original scripts' directory name.

use serde::{Deserialize, Serialize};

/// One input/output length combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Io {
    pub input_len: u32,
    pub output_len: u32,
}

impl Io {
    pub const fn new(input_len: u32, output_len: u32) -> Io {
        Io {
            input_len,
            output_len,
        }
    }
}

impl std::fmt::Display for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.input_len, self.output_len)
    }
}

/// Parses `--io 1024x1024,2048x512`.
pub fn parse_io(s: &str) -> Result<Vec<Io>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (i, o) = item
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("--io: {item:?} is not INPUTxOUTPUT (e.g. 1024x1024)"))?;
        let num = |v: &str, what: &str| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("--io: {item:?}: the {what} length {v:?} is not a positive integer")
                })
        };
        let io = Io {
            input_len: num(i, "input")?,
            output_len: num(o, "output")?,
        };
        if !out.contains(&io) {
            out.push(io);
        }
    }
    if out.is_empty() {
        return Err(format!(
            "--io: no combination in {s:?} (expected e.g. 1024x1024,2048x512)"
        ));
    }
    Ok(out)
}

/// Parses `--concurrency 1,2,4,8`: sorted, without duplicates.
pub fn parse_concurrency(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let c = item
            .parse::<u32>()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| format!("--concurrency: {item:?} is not a positive integer"))?;
        out.push(c);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(format!(
            "--concurrency: no value in {s:?} (expected e.g. 1,2,4,8)"
        ));
    }
    Ok(out)
}

/// The original scripts' result directory: `<model-name>_tp<N>_dtype<dtype>_<YYYYmmdd_HHMMSS>`.
pub fn run_dir_name(
    model_name: &str,
    tp: u32,
    dtype: &str,
    at: chrono::DateTime<chrono::Local>,
) -> String {
    // a served model name may be a path (transformers serve): keep its last component
    let model = model_name
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(model_name);
    let safe: String = model
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}_tp{tp}_dtype{dtype}_{}", at.format("%Y%m%d_%H%M%S"))
}

/// The original scripts' per-test GPU directory: `gpu_utilization_c<C>_in<I>_out<O>` (`cinf` without a
/// concurrency limit).
pub fn gpu_dir_name(concurrency: Option<usize>, io: Io) -> String {
    let c = concurrency.map_or("inf".to_string(), |c| c.to_string());
    format!(
        "gpu_utilization_c{c}_in{}_out{}",
        io.input_len, io.output_len
    )
}

/// The per-test directory of the server's metrics: `server_metrics_c<C>_in<I>_out<O>`.
pub fn server_metrics_dir_name(concurrency: Option<usize>, io: Io) -> String {
    gpu_dir_name(concurrency, io).replacen("gpu_utilization_", "server_metrics_", 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn io_and_concurrency_lists() {
        assert_eq!(
            parse_io("1024x1024, 2048X512,1024x1024").unwrap(),
            vec![
                Io {
                    input_len: 1024,
                    output_len: 1024
                },
                Io {
                    input_len: 2048,
                    output_len: 512
                }
            ]
        );
        assert!(parse_io("1024-1024").unwrap_err().contains("INPUTxOUTPUT"));
        assert!(parse_io("0x5").unwrap_err().contains("\"0\""));
        assert!(parse_io("").is_err());
        assert_eq!(parse_concurrency("8,1,2,2,4").unwrap(), vec![1, 2, 4, 8]);
        assert!(parse_concurrency("1,x").unwrap_err().contains("\"x\""));
        assert!(parse_concurrency("0").is_err());
    }

    #[test]
    fn the_seeds_names() {
        let at = chrono::Local
            .with_ymd_and_hms(2026, 11, 28, 3, 4, 5)
            .unwrap();
        assert_eq!(
            run_dir_name("Qwen3-32B", 8, "fp16", at),
            "Qwen3-32B_tp8_dtypefp16_20261128_030405"
        );
        assert_eq!(
            run_dir_name("/tmp/model", 1, "bfloat16", at),
            "model_tp1_dtypebfloat16_20261128_030405"
        );
        assert_eq!(
            gpu_dir_name(
                Some(32),
                Io {
                    input_len: 1024,
                    output_len: 512
                }
            ),
            "gpu_utilization_c32_in1024_out512"
        );
    }
}
