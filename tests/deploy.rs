//! The deployment files parse and fit what nrpm and the schedulers expect. No Kubernetes
//! cluster is available here, so the Indexed Job manifest is checked against the API's rules
//! (batch/v1 Job, completionMode Indexed, completions = parallelism = nrpm's --shards, the
//! index reaching nrpm through JOB_COMPLETION_INDEX, which Kubernetes sets in every pod of an
//! Indexed Job), not run. The Slurm scripts run for real in CI (.ci/run).

use serde_yaml::Value;

fn manifest(name: &str) -> Value {
    let path = format!("{}/deploy/k8s/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The nrpm container of a Job and its args.
fn nrpm_container(job: &Value) -> (&Value, Vec<String>) {
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let args = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    (c, args)
}

#[test]
fn indexed_job_fits_the_api_and_nrpm() {
    let job = manifest("indexed-job.yaml");
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(
        spec["completionMode"], "Indexed",
        "JOB_COMPLETION_INDEX is set only in Indexed mode"
    );
    let completions = spec["completions"].as_u64().expect("completions");
    assert_eq!(spec["parallelism"].as_u64(), Some(completions));
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    let (c, args) = nrpm_container(&job);
    assert_eq!(c["command"][0], "nrpm");
    assert!(
        args.contains(&format!("--shards={completions}")),
        "{args:?}"
    );
    assert!(
        args.contains(&"--resume".to_string())
            && args.iter().any(|a| a.starts_with("--out=/runs/"))
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--shard=")),
        "the index comes from Kubernetes"
    );
    // Data and checkpoints are mounted read-only, never part of the image.
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    for path in ["/data", "/models"] {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("{path}"));
        assert_eq!(m["readOnly"], true);
    }
    let dockerfile = std::fs::read_to_string(format!(
        "{}/deploy/k8s/Dockerfile",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(
        dockerfile.matches("FROM ").count() >= 2,
        "multi-stage build"
    );
    assert!(
        !dockerfile.contains("safetensors") && !dockerfile.contains("shared/"),
        "no checkpoints baked in"
    );
}

#[test]
fn merge_job_reads_what_the_indexed_job_writes() {
    let (_, work) = nrpm_container(&manifest("indexed-job.yaml")).clone();
    let out = work
        .iter()
        .find_map(|a| a.strip_prefix("--out="))
        .unwrap()
        .to_string();
    let merge = manifest("merge-job.yaml");
    let (c, args) = nrpm_container(&merge);
    assert_eq!(c["command"][0], "nrpm");
    assert_eq!(args[0], "merge");
    assert_eq!(args[1], out);
}
