//! The Kubernetes manifests in `deploy/k8s/` name only environment variables the binaries read,
//! probe and scrape the paths benchctl serves, run a sweep Job `benchctl sweep` accepts, and the
//! kustomizations name files that exist. (Their schema is checked by `.ci/run` with PyPI's
//! `kubernetes-validate --strict`; controller/tests/ops.rs runs the Job's command.)

use std::collections::BTreeSet;

fn envs_of(cmd: &clap::Command, out: &mut BTreeSet<String>) {
    for a in cmd.get_arguments() {
        if let Some(e) = a.get_env() {
            out.insert(e.to_string_lossy().into_owned());
        }
    }
    for s in cmd.get_subcommands() {
        envs_of(s, out);
    }
}

#[test]
fn manifests_set_only_variables_the_binaries_read() {
    use clap::CommandFactory;
    let mut known = BTreeSet::new();
    envs_of(&controller::cli::Cli::command(), &mut known);
    envs_of(&agent::AgentConfig::command(), &mut known);
    // benchctl-loadgen's flags live in its binary: read them from its source
    let src = include_str!("../../loadgen/src/bin/benchctl-loadgen.rs");
    for part in src.split("env = \"").skip(1) {
        known.insert(part.split('"').next().unwrap().to_string());
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/k8s");
    let mut checked = 0;
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(f.path()) else {
            continue; // a folder (monitoring/)
        };
        for line in text.lines() {
            let Some(name) = line.trim().strip_prefix("- name: BENCHCTL_") else {
                continue;
            };
            let var = format!("BENCHCTL_{name}");
            assert!(
                known.contains(&var),
                "{} sets {var}, which no benchctl binary reads",
                f.path().display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} variables found in {dir}");
}

/// The manifests of `deploy/k8s/` and its subfolders: (file name, text).
fn manifests() -> Vec<(String, String)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/k8s");
    let mut out = Vec::new();
    for dir in [root.to_string(), format!("{root}/monitoring")] {
        for f in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "yaml") {
                let name = p.strip_prefix(root).unwrap().display().to_string();
                out.push((name, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The value of the first `key: value` line after the line `after` (trimmed, unquoted).
fn value_after<'a>(text: &'a str, after: &str, key: &str) -> Option<&'a str> {
    let mut lines = text.lines().skip_while(|l| l.trim() != after).skip(1);
    lines
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(": "))
        .map(|v| v.trim_matches('"'))
}

/// Every probe and scrape path the manifests name is served by benchctl's health and metrics
/// server (`ops`), and each benchctl pod serves it on the port they name.
#[tokio::test]
async fn probes_and_scrapes_point_at_served_paths_and_ports() {
    let (_tx, ready) = tokio::sync::watch::channel(ops::Readiness::Ready("test".into()));
    let server = ops::OpsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        std::sync::Arc::new(ops::registry()),
        ready,
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.addr());
    let mut probed = Vec::new();
    for (name, text) in manifests() {
        // every path a probe, an annotation or a ServiceMonitor names is served (not a 404)
        for line in text.lines() {
            let line = line.trim();
            let Some(path) = line
                .strip_prefix("path: ")
                .or_else(|| line.strip_prefix("prometheus.io/path: "))
            else {
                continue;
            };
            let status = reqwest::get(format!("{base}{path}"))
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "{name}: {line} is not served");
        }
        if !text.contains("image: benchctl:latest") || text.contains("kind: Job") {
            continue;
        }
        // a long-running benchctl pod: probes on the served paths, on the port it serves
        assert_eq!(
            value_after(&text, "livenessProbe:", "path"),
            Some(ops::HEALTHZ),
            "{name}"
        );
        assert_eq!(
            value_after(&text, "readinessProbe:", "path"),
            Some(ops::READYZ),
            "{name}"
        );
        for probe in ["livenessProbe:", "readinessProbe:"] {
            assert_eq!(value_after(&text, probe, "port"), Some("metrics"), "{name}");
        }
        assert_eq!(
            value_after(&text, "- name: metrics", "containerPort"),
            Some("9464"),
            "{name}"
        );
        let serves = text.contains("- --metrics-addr=:9464")
            || value_after(&text, "- name: BENCHCTL_METRICS_ADDR", "value") == Some(":9464");
        assert!(serves, "{name}: the process is not told to serve :9464");
        assert!(text.contains("prometheus.io/scrape: \"true\""), "{name}");
        assert!(text.contains("prometheus.io/port: \"9464\""), "{name}");
        probed.push(name);
    }
    assert_eq!(
        probed,
        ["agent-daemonset.yaml", "controller.yaml", "loadgen.yaml"],
        "the benchctl pods with probes"
    );
    server.stop().await;
}

/// The sweep Job runs `benchctl sweep` with flags it has (`benchctl sweep --help` lists each)
/// and values it accepts, the sweep's TOML from the ConfigMap it mounts.
#[test]
fn the_sweep_jobs_command_is_one_benchctl_sweep_accepts() {
    use clap::{CommandFactory, Parser};
    let (_, text) = manifests()
        .into_iter()
        .find(|(n, _)| n == "sweep-job.yaml")
        .expect("deploy/k8s/sweep-job.yaml");
    assert!(text.contains("kind: Job") && text.contains("kind: ConfigMap"));
    assert!(
        text.contains("command: [\"benchctl\", \"sweep\"]"),
        "{text}"
    );
    assert!(text.contains("restartPolicy: Never") && text.contains("backoffLimit: 0"));
    let args: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .map(str::trim)
        .take_while(|l| l.starts_with("- --"))
        .map(|l| &l[2..])
        .collect();
    let help = controller::cli::Cli::command()
        .find_subcommand_mut("sweep")
        .expect("benchctl sweep")
        .render_long_help()
        .to_string();
    for a in &args {
        let flag = a.split('=').next().unwrap();
        assert!(help.contains(flag), "`benchctl sweep --help` has no {flag}");
    }
    for want in ["--etcd", "--config", "--require-max-passing"] {
        assert!(
            args.iter().any(|a| a.starts_with(want)),
            "the Job gives no {want}: {args:?}"
        );
    }
    let mut argv = vec!["benchctl", "sweep"];
    argv.extend(&args);
    if let Err(e) = controller::cli::Cli::try_parse_from(&argv) {
        panic!("benchctl refuses the Job's command {argv:?}: {e}");
    }
    // the config it mounts is the ConfigMap's key, and that TOML is a sweep config
    let config = args
        .iter()
        .find_map(|a| a.strip_prefix("--config="))
        .unwrap();
    assert!(config.ends_with("/sweep.toml"), "{config}");
    let toml: String = text
        .lines()
        .skip_while(|l| l.trim() != "sweep.toml: |")
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.toml");
    std::fs::write(&path, toml).unwrap();
    let path = path.display().to_string();
    let cli = controller::cli::Cli::try_parse_from([
        "benchctl",
        "sweep",
        "--config",
        &path,
        "--base-url",
        "http://127.0.0.1:1",
    ])
    .unwrap();
    let controller::cli::Command::Sweep(cmd) = cli.command else {
        unreachable!("a sweep was parsed")
    };
    let plan = controller::cmd::sweep_config::resolve(&cmd.args)
        .unwrap_or_else(|e| panic!("the ConfigMap's sweep.toml: {e:#}"));
    assert!(plan.threshold.is_some(), "the gate needs a threshold");
}

/// The kustomization base lists manifests that exist, and each overlay builds on it.
#[test]
fn the_kustomizations_name_files_that_exist() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy"));
    let base = std::fs::read_to_string(root.join("k8s/kustomization.yaml")).unwrap();
    let listed: Vec<&str> = base
        .lines()
        .skip_while(|l| l.trim() != "resources:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .collect();
    assert!(listed.contains(&"controller.yaml"), "{listed:?}");
    for r in &listed {
        assert!(root.join("k8s").join(r).is_file(), "the base lists {r}");
    }
    assert!(
        !listed.contains(&"sweep-job.yaml"),
        "the Job is applied on its own"
    );
    for overlay in ["single-node", "ha"] {
        let text = std::fs::read_to_string(
            root.join(format!("k8s-overlays/{overlay}/kustomization.yaml")),
        )
        .unwrap();
        assert!(text.contains("  - ../../k8s\n"), "{overlay}: {text}");
    }
}
