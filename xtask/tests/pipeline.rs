//! The project's own pipeline calls only `cargo xtask` tasks that exist, with flags they
//! accept.

mod support;

use std::path::Path;

use support::xtask;

#[test]
fn every_pipeline_command_is_an_xtask_call_that_parses() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join(".buildkite/pipeline.yml");
    let pipeline: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut commands = Vec::new();
    for step in pipeline["steps"].as_sequence().unwrap() {
        if let Some(command) = step["command"].as_str() {
            commands.push(command.to_owned());
        }
        for command in step["commands"].as_sequence().into_iter().flatten() {
            commands.push(command.as_str().unwrap().to_owned());
        }
    }
    let tasks: Vec<&str> = commands
        .iter()
        .map(|command| {
            command
                .strip_prefix("cargo xtask ")
                .unwrap_or_else(|| panic!("{command:?} is not `cargo xtask …`"))
        })
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    assert_eq!(tasks, ["ci", "dist", "dist", "ami", "template", "publish"]);

    for command in &commands {
        // The words as the shell would pass them, with the pipeline's variables filled in
        // by stand-ins; `--help` after them makes clap check the flags and stop.
        let words: Vec<String> = command
            .split(' ')
            .skip(2)
            .map(|word| if word.contains("$${") { "us-east-2".to_owned() } else { word.to_owned() })
            .collect();
        let output = xtask().args(&words).arg("--help").output().unwrap();
        assert!(
            output.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
