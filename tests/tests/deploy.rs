//! The Kubernetes manifests in `deploy/k8s/` name only environment variables the binaries read.
//! (Their schema is checked by `.ci/run` with PyPI's `kubernetes-validate --strict`.)

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
        let text = std::fs::read_to_string(f.path()).unwrap();
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
