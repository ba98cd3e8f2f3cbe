//! The project's own pipeline: it calls only `cargo xtask` tasks that exist, with flags
//! they accept (and `buildkite-agent` only to move artefacts and annotate), downloads
//! the dist step's artefacts instead of building them again, bounds and retries every
//! step, and makes nothing public on a tag before a block step.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::xtask;

fn pipeline() -> serde_yaml_ng::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join(".buildkite/pipeline.yml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn steps() -> Vec<serde_yaml_ng::Value> {
    pipeline()["steps"].as_sequence().unwrap().clone()
}

fn commands(step: &serde_yaml_ng::Value) -> Vec<String> {
    let mut commands: Vec<String> =
        step["command"].as_str().map(str::to_owned).into_iter().collect();
    for command in step["commands"].as_sequence().into_iter().flatten() {
        commands.push(command.as_str().unwrap().to_owned());
    }
    commands
}

fn key(step: &serde_yaml_ng::Value) -> &str {
    step["key"].as_str().unwrap_or_default()
}

fn depends_on(step: &serde_yaml_ng::Value) -> Vec<String> {
    match &step["depends_on"] {
        serde_yaml_ng::Value::String(key) => vec![key.clone()],
        serde_yaml_ng::Value::Sequence(keys) => {
            keys.iter().map(|key| key.as_str().unwrap().to_owned()).collect()
        }
        _ => Vec::new(),
    }
}

#[test]
fn every_pipeline_command_is_an_xtask_call_that_parses_or_an_agent_call() {
    let mut tasks = Vec::new();
    for step in steps() {
        for command in commands(&step) {
            if let Some(rest) = command.strip_prefix("buildkite-agent ") {
                let subcommand = rest.split(' ').next().unwrap();
                assert!(["artifact", "annotate"].contains(&subcommand), "{command:?}");
                continue;
            }
            let rest = command.strip_prefix("cargo xtask ").unwrap_or_else(|| {
                panic!("{command:?} is neither `cargo xtask …` nor `buildkite-agent …`")
            });
            tasks.push(rest.split(' ').next().unwrap().to_owned());
            // The words as the shell would pass them, with the pipeline's variables
            // filled in by stand-ins; `--help` after them makes clap check the flags and
            // stop.
            let words: Vec<String> =
                rest.split(' ')
                    .map(|word| {
                        if word.contains("$${") { "us-east-2".to_owned() } else { word.to_owned() }
                    })
                    .collect();
            let output = xtask().args(&words).arg("--help").output().unwrap();
            assert!(
                output.status.success(),
                "{command:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    assert_eq!(
        tasks,
        [
            "ci", "dist", "template", "publish", "ami", "ami", "template", "publish", "ami", "ami",
            "ami", "template", "publish"
        ]
    );
}

#[test]
fn every_step_is_bounded_and_retried_when_its_agent_is_lost() {
    for step in steps() {
        if step.get("block").is_some() {
            continue;
        }
        let name = step["label"].as_str().unwrap().to_owned();
        assert!(step["timeout_in_minutes"].as_u64().is_some_and(|minutes| minutes > 0), "{name}");
        let automatic =
            step["retry"]["automatic"].as_sequence().unwrap_or_else(|| panic!("{name}"));
        assert!(
            automatic.iter().any(|rule| rule["exit_status"].as_i64() == Some(-1)),
            "{name} is not retried when its agent is lost"
        );
    }
}

#[test]
fn only_dist_builds_the_artefacts_and_later_steps_download_them() {
    let steps = steps();
    let dist: Vec<&serde_yaml_ng::Value> = steps
        .iter()
        .filter(|step| commands(step).iter().any(|c| c == "cargo xtask dist"))
        .collect();
    assert_eq!(dist.len(), 1);
    assert_eq!(key(dist[0]), "dist");
    for step in &steps {
        let commands = commands(step);
        let releases = commands.iter().any(|command| {
            command.starts_with("cargo xtask ami --") || command.starts_with("cargo xtask publish")
        });
        if releases {
            assert!(
                commands[0].starts_with("buildkite-agent artifact download target/dist/"),
                "{} does not download dist's artefacts first",
                key(step)
            );
        }
        for command in &commands {
            if command.starts_with("cargo xtask ami --") {
                assert!(command.contains(" --dist-dir target/dist/"), "{command}");
            }
        }
    }
}

#[test]
fn public_images_wait_for_a_block_step_on_tags() {
    let steps = steps();
    let by_key: BTreeMap<&str, &serde_yaml_ng::Value> =
        steps.iter().map(|step| (key(step), step)).collect();
    let mut n_public = 0;
    for step in &steps {
        if !commands(step).iter().any(|command| command.contains(" --public")) {
            continue;
        }
        n_public += 1;
        assert_eq!(step["if"].as_str(), Some("build.tag != null"), "{}", key(step));
        let blocked = depends_on(step).iter().any(|dependency| {
            by_key[dependency.as_str()].get("block").is_some()
                && by_key[dependency.as_str()]["if"].as_str() == Some("build.tag != null")
        });
        assert!(blocked, "{} makes images public without a block step", key(step));
    }
    assert_eq!(n_public, 2, "both architectures' images");
}

#[test]
fn the_release_settings_are_the_projects_and_every_publish_annotates() {
    let pipeline = pipeline();
    let bucket = pipeline["env"]["ELASTIC_CI_RELEASE_BUCKET"].as_str().unwrap();
    assert_ne!(bucket, "buildkite-aws-stack", "the original's bucket is Buildkite's");
    assert_eq!(
        pipeline["env"]["ELASTIC_CI_LAMBDA_BUCKET_PREFIX"].as_str(),
        Some(xtask_default_lambda_prefix())
    );
    for step in steps() {
        let commands = commands(&step);
        let Some(index) = commands.iter().position(|c| c.starts_with("cargo xtask publish")) else {
            continue;
        };
        let publish = &commands[index];
        assert!(publish.contains("--bucket $${ELASTIC_CI_RELEASE_BUCKET}"), "{publish}");
        assert!(publish.contains("--summary target/dist/release.md"), "{publish}");
        assert!(
            commands[index + 1].starts_with("buildkite-agent annotate ")
                && commands[index + 1].ends_with(" < target/dist/release.md"),
            "{}",
            key(&step)
        );
        let template = &commands[index - 1];
        assert!(
            template.contains("--lambda-bucket-prefix $${ELASTIC_CI_LAMBDA_BUCKET_PREFIX}"),
            "{template}"
        );
    }
}

/// The prefix the template names by default (`xtask::template`).
fn xtask_default_lambda_prefix() -> &'static str {
    xtask::template::DEFAULT_LAMBDA_BUCKET_PREFIX
}
