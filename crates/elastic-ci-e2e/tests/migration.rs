//! Switching from Buildkite's original stack in place: a stack shaped like the original
//! v6 (`fixtures/original-v6.yml`) deployed on the local AWS emulator and updated to the
//! rendered template with every parameter's previous value, as the README's procedure
//! does; the same update made to fail midway; and what the templates promise where the
//! emulator cannot show it (CloudFormation's order of creating and deleting, rollback).
//!
//! moto updates a stack in one synchronous call, deletes removed resources before it
//! creates new ones (CloudFormation does the reverse), skips custom resources, and has no
//! rollback: a failed update leaves the stack where the failure stopped it. What each test
//! can and cannot show is said where it is shown.

#![allow(clippy::print_stderr, reason = "a test that needs moto's Python says why it skipped")]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudformation::config::retry::RetryConfig;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use elastic_ci_testkit::moto::{Moto, moto};
use elastic_ci_testkit::names::unique_name;
use serde_yaml_ng::Value;

use elastic_ci_e2e::deploy;
use elastic_ci_e2e::moto_api::MotoApi;
use xtask::{project, template};

use support::*;

const TOKEN: &str = "bkua_migration0123456789";

/// Resources of the fixture that stand in for parts of the original that are not
/// top-level resources there (the scaler application's nested stack holds its role).
const STAND_INS: [&str; 1] = ["AutoscalingStandInRole"];

/// Resources moto replaces on any change where CloudFormation replaces them only when one
/// of these properties changes; `replacing_properties_are_the_original_s` checks that
/// none does.
const EMULATOR_REPLACES: [(&str, &[&str]); 1] = [("SecurityGroup", &["GroupDescription", "VpcId"])];

/// The parameters the fixture is created with, as a user of the original would have.
const ORIGINAL_VALUES: [(&str, &str); 8] = [
    ("BuildkiteAgentToken", TOKEN),
    ("BuildkiteQueue", "migration"),
    ("MinSize", "0"),
    ("MaxSize", "4"),
    ("SecretsBucketEncryption", "true"),
    ("InstanceOperatingSystem", "linux"),
    ("BuildkiteWindowsAdministrator", "false"),
    ("IMDSv2Tokens", "optional"),
];

fn fixture_text() -> String {
    let path = project::root().join("crates/elastic-ci-e2e/tests/fixtures/original-v6.yml");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("the template is YAML")
}

fn source_template() -> Value {
    yaml(&std::fs::read_to_string(project::root().join(template::SOURCE)).expect("the template"))
}

fn parameter_names(document: &Value) -> BTreeSet<String> {
    document["Parameters"]
        .as_mapping()
        .expect("parameters")
        .keys()
        .filter_map(|key| key.as_str().map(str::to_owned))
        .collect()
}

/// The logical ids the README's table "What the update replaces" names.
fn readme_replaced() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(project::root().join("README.md")).expect("the README");
    let section = readme
        .split_once("#### What the update replaces\n")
        .map(|(_, rest)| rest.split("\n#").next().unwrap_or(rest))
        .expect("the README has a section \"What the update replaces\"");
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| line.split('`').nth(1).map(str::to_owned))
        .collect()
}

/// A CloudFormation client that does not retry: moto answers a failed update with a 500,
/// which the SDK would otherwise send again.
fn cloudformation_once(moto: &Moto) -> aws_sdk_cloudformation::Client {
    let config = aws_sdk_cloudformation::config::Builder::from(&moto.sdk_config())
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_cloudformation::Client::from_conf(config)
}

/// Updates `stack` to `template` with `UsePreviousValue` for every parameter of the
/// original, as the README's procedure does.
async fn update_with_previous_values(
    moto: &Moto,
    stack: &str,
    template: &str,
) -> Result<(), String> {
    let previous = parameter_names(&yaml(&fixture_text()))
        .into_iter()
        .map(|key| Parameter::builder().parameter_key(key).use_previous_value(true).build())
        .collect();
    cloudformation_once(moto)
        .update_stack()
        .stack_name(stack)
        .template_body(template)
        .set_parameters(Some(previous))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .map(|_| ())
        .map_err(|error| format!("{error:?}"))
}

/// The token parameter's type and value, read with decryption, and its version.
async fn token(moto: &Moto, name: &str) -> Option<(String, String, i64)> {
    let answer = moto.ssm().get_parameter().name(name).with_decryption(true).send().await.ok()?;
    let parameter = answer.parameter()?;
    Some((
        parameter.r#type().map(|kind| kind.as_str().to_owned()).unwrap_or_default(),
        parameter.value().unwrap_or_default().to_owned(),
        parameter.version(),
    ))
}

/// The keys and contents of every object in `bucket`.
async fn objects(moto: &Moto, bucket: &str) -> BTreeMap<String, String> {
    let s3 = moto.s3();
    let listed = s3.list_objects_v2().bucket(bucket).send().await.expect("list the bucket");
    let mut contents = BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().expect("a key").to_owned();
        let body = s3.get_object().bucket(bucket).key(&key).send().await.expect("get the object");
        let bytes = body.body.collect().await.expect("the object's body").into_bytes();
        contents.insert(key, String::from_utf8_lossy(&bytes).into_owned());
    }
    contents
}

/// The original stack with its secrets bucket filled as a user's would be.
///
/// Every parameter is passed, defaults included: CloudFormation records a value for each
/// parameter and `UsePreviousValue` reuses it, while moto records only those passed.
async fn original_stack(moto: &Moto, api: &MotoApi) -> (Stack, BTreeMap<String, String>) {
    let (vpc_id, subnets) = existing_vpc(api).await;
    let subnets = subnets.join(",");
    let fixture = yaml(&fixture_text());
    let mut chosen: BTreeMap<&str, &str> = ORIGINAL_VALUES.into_iter().collect();
    chosen.extend([("VpcId", vpc_id.as_str()), ("Subnets", subnets.as_str())]);
    let defaults: Vec<(String, String)> = parameter_names(&fixture)
        .into_iter()
        .filter(|name| !chosen.contains_key(name.as_str()))
        .map(|name| {
            let default = match &fixture["Parameters"][name.as_str()]["Default"] {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                other => panic!("{name}: default {other:?}"),
            };
            (name, default)
        })
        .collect();
    let mut values: Vec<(&str, &str)> = chosen.into_iter().collect();
    values.extend(defaults.iter().map(|(name, value)| (name.as_str(), value.as_str())));
    let stack = create_stack(moto, &stack_name(), &fixture_text(), &values).await;
    let bucket = &stack.outputs["ManagedSecretsBucket"];
    for (key, body) in [
        ("env", "export DEPLOY_ENV=production\n"),
        ("private_ssh_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nfixture\n"),
        ("my-pipeline/env", "export PIPELINE_SECRET=kept\n"),
    ] {
        moto.put_object(bucket, key, body.as_bytes()).await;
    }
    let kept = objects(moto, bucket).await;
    assert_eq!(kept.len(), 3, "{kept:?}");
    (stack, kept)
}

#[test]
fn every_parameter_of_the_original_is_one_the_template_accepts() {
    let ours = source_template();
    let ours_names = parameter_names(&ours);
    let missing: Vec<String> =
        parameter_names(&yaml(&fixture_text())).difference(&ours_names).cloned().collect();
    assert!(missing.is_empty(), "an update passing these would fail: {missing:?}");

    // The parameters the original had and this stack does not use sit, described as
    // such, in the console group "Deprecated".
    let groups = ours["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        .as_sequence()
        .expect("groups");
    let deprecated: BTreeSet<&str> = groups
        .iter()
        .find(|group| group["Label"]["default"] == "Deprecated")
        .expect("a Deprecated group")["Parameters"]
        .as_sequence()
        .expect("its parameters")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        deprecated,
        BTreeSet::from(["BuildkiteAgentScalerServerlessARN", "SecretsBucketEncryption"])
    );
    for name in deprecated {
        let description = ours["Parameters"][name]["Description"].as_str().expect("a description");
        assert!(description.starts_with("Deprecated"), "{name}: {description}");
    }
    // A Windows stack of the original can be updated to this one.
    assert_eq!(
        ours["Parameters"]["InstanceOperatingSystem"]["AllowedValues"],
        serde_yaml_ng::from_str::<Value>("[linux, windows]").expect("YAML")
    );
}

/// What CloudFormation does on an update, which moto does not reproduce, read from the
/// templates: the token parameter is the same resource in both (same logical id, type
/// and name), so the update neither creates a second resource for that name nor deletes
/// the original's; and the resource that makes it a SecureString only ever overwrites it.
#[test]
fn the_token_stays_the_original_resource_through_an_update() {
    let original = yaml(&fixture_text());
    let ours = source_template();
    let theirs = &original["Resources"]["BuildkiteAgentTokenParameter"];
    let mine = &ours["Resources"]["BuildkiteAgentTokenParameter"];
    assert_eq!(mine["Type"], theirs["Type"]);
    assert_eq!(mine["Type"], "AWS::SSM::Parameter");
    assert_eq!(mine["Condition"], theirs["Condition"]);
    assert_eq!(mine["Properties"]["Name"], theirs["Properties"]["Name"]);
    assert_eq!(mine["Properties"]["Value"], theirs["Properties"]["Value"]);
    // Deleting the stack deletes the token: no Retain leaves a secret behind.
    assert!(mine.get("DeletionPolicy").is_none(), "{mine:?}");

    // No other resource of ours names the token's path, so nothing else can create or
    // delete a parameter of that name on the way.
    let name = &mine["Properties"]["Name"];
    let owners: Vec<&str> = ours["Resources"]
        .as_mapping()
        .expect("resources")
        .iter()
        .filter(|(_, resource)| resource["Properties"]["Name"] == *name)
        .filter_map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(owners, ["BuildkiteAgentTokenParameter"]);
    let converter = &ours["Resources"]["AgentTokenSecureString"];
    assert_eq!(converter["Type"], "AWS::CloudFormation::CustomResource");
    assert_eq!(
        converter["Properties"]["Name"],
        serde_yaml_ng::from_str::<Value>("!Ref BuildkiteAgentTokenParameter").expect("YAML")
    );
    let code = ours["Resources"]["AgentTokenParameterFunction"]["Properties"]["Code"]["ZipFile"]
        .as_str()
        .expect("inline code");
    assert!(!code.contains("delete_parameter"), "the helper must never delete the token");
    assert_eq!(code.matches("Overwrite=True").count(), 2, "{code}");
}

/// CloudFormation keeps a resource whose replacing properties do not change; for the
/// resources moto replaces anyway, those properties are the original's.
#[test]
fn replacing_properties_are_the_original_s() {
    let original = yaml(&fixture_text());
    let ours = source_template();
    for (id, properties) in EMULATOR_REPLACES {
        for property in properties {
            let theirs = &original["Resources"][id]["Properties"][*property];
            assert!(!theirs.is_null(), "{id}.{property} is not in the fixture");
            // The original's value, or (VpcId) one branch of ours, which also handles
            // the stack-built VPC that the fixture leaves out.
            let mine = serde_yaml_ng::to_string(&ours["Resources"][id]["Properties"][*property])
                .expect("YAML");
            let theirs = serde_yaml_ng::to_string(theirs).expect("YAML");
            assert!(mine.contains(theirs.trim()), "{id}.{property}: {theirs} became {mine}");
        }
    }
}

#[tokio::test]
async fn the_original_stack_updates_in_place_keeping_its_token_and_secrets() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let (original, secrets) = original_stack(&moto, &api).await;
    let token_path = format!("/{}/buildkite/agent-token", original.name);
    let before = token(&moto, &token_path).await.expect("the original's token");
    assert_eq!((before.0.as_str(), before.1.as_str()), ("String", TOKEN));

    let template = rendered_template(&unique_name("lambdas"));
    deploy::upload_scaler_zips(&moto, &template).await.expect("the scaler zips uploaded");
    update_with_previous_values(&moto, &original.name, &template)
        .await
        .unwrap_or_else(|error| panic!("update from the original: {error}"));
    assert_status(&moto, &original.name, &StackStatus::UpdateComplete).await;
    let updated = read_stack(&moto, &original.name).await;

    // The token: the same resource, path and value, readable, never rewritten (moto
    // skips the custom resource that makes it a SecureString; the helper test runs it).
    assert_eq!(
        updated.physical("BuildkiteAgentTokenParameter"),
        original.physical("BuildkiteAgentTokenParameter")
    );
    assert_eq!(token(&moto, &token_path).await, Some(before));
    assert_eq!(updated.outputs["AgentTokenParameter"], token_path);

    // The secrets: the same buckets, every object kept.
    for bucket in ["ManagedSecretsBucket", "ManagedSecretsLoggingBucket"] {
        assert_eq!(updated.physical(bucket), original.physical(bucket), "{bucket}");
        assert_eq!(updated.outputs[bucket], original.outputs[bucket], "{bucket}");
    }
    assert_eq!(objects(&moto, &updated.outputs["ManagedSecretsBucket"]).await, secrets);

    // The role, its profile and the group's name keep what users reference.
    assert_eq!(updated.physical("IAMRole"), format!("{}-Role", original.name));
    for kept in ["IAMRole", "IAMInstanceProfile", "AgentLaunchTemplate"] {
        assert_eq!(updated.physical(kept), original.physical(kept), "{kept}");
    }
    let group = &updated.outputs["AutoScalingGroupName"];
    assert!(group.starts_with(&format!("{}-AgentAutoScaleGroup-", original.name)), "{group}");

    // Only what the README says the update replaces or removes changed.
    let listed = readme_replaced();
    let changed: BTreeSet<&str> = original
        .resources
        .iter()
        .filter(|(id, physical)| updated.resources.get(*id) != Some(*physical))
        .map(|(id, _)| id.as_str())
        .filter(|id| !STAND_INS.contains(id))
        .filter(|id| !EMULATOR_REPLACES.iter().any(|(replaced, _)| replaced == id))
        .collect();
    let unlisted: Vec<&&str> = changed.iter().filter(|id| !listed.contains(**id)).collect();
    assert!(unlisted.is_empty(), "replaced or removed but not in the README: {unlisted:?}");
    assert!(changed.contains("Autoscaling"), "the scaler application gives way to ours");
    assert!(listed.contains("AgentAutoScaleGroup"), "{listed:?}");
    assert!(!updated.resources.contains_key("Autoscaling"));
    assert!(updated.resources.contains_key("AutoscalingFunction"));
}

/// An update that fails midway: the release bucket of the region has no scaler zip, so
/// creating the scaler function fails after moto has already removed the original's
/// scaler. moto has no rollback (it leaves the stack as the failure found it, where
/// CloudFormation would roll back to the original template), so what this shows is
/// that no step before the failure touched the token or the secrets; the token's own
/// rollback (the helper's Delete turning the SecureString back into a String) is
/// `agent_token_function_turns_the_parameter_into_a_secure_string_and_back` in
/// `tests/stack.rs`.
#[tokio::test]
async fn an_update_that_fails_midway_leaves_the_token_and_secrets_intact() {
    let Some(moto) = moto() else { return };
    let api = MotoApi::new(&moto.endpoint);
    let (original, secrets) = original_stack(&moto, &api).await;
    let token_path = format!("/{}/buildkite/agent-token", original.name);
    let before = token(&moto, &token_path).await.expect("the original's token");

    // No scaler zips uploaded for this release bucket prefix.
    let template = rendered_template(&unique_name("missing-lambdas"));
    let error = update_with_previous_values(&moto, &original.name, &template)
        .await
        .expect_err("the update cannot create the scaler function without its zip");
    assert!(error.contains("NoSuchBucket"), "{error}");
    let status = describe(&moto, &original.name).await.stack_status().cloned();
    assert_ne!(status, Some(StackStatus::UpdateComplete));

    assert_eq!(token(&moto, &token_path).await, Some(before));
    assert_eq!(objects(&moto, &original.outputs["ManagedSecretsBucket"]).await, secrets);
    // The update got midway: moto had deleted the original's scaler before it failed
    // (and can no longer list the stack's resources, so the function is asked for).
    let scaler = format!("/2015-03-31/functions/{}", original.physical("Autoscaling"));
    assert!(api.try_get("lambda", &scaler).await.is_err(), "the original's scaler is still there");
}

/// The README's list is the one the note and `elastic-ci upgrade` rely on: every
/// resource of the original that our template lacks is in it.
#[test]
fn the_readme_lists_every_resource_an_update_removes() {
    let original = yaml(&fixture_text());
    let ours = source_template();
    let listed = readme_replaced();
    for (id, _) in original["Resources"].as_mapping().expect("resources") {
        let id = id.as_str().expect("a logical id");
        if ours["Resources"].get(id).is_none() && !STAND_INS.contains(&id) {
            assert!(listed.contains(id), "{id} is removed by the update but not in the README");
        }
    }
}

/// Every `resource` block of the module, by address, with whether it has `count`.
fn module_resources() -> (BTreeMap<String, bool>, BTreeMap<String, String>) {
    let mut resources = BTreeMap::new();
    let mut moved = BTreeMap::new();
    let dir = project::root().join("terraform");
    for entry in std::fs::read_dir(&dir).expect("the module") {
        let path = entry.expect("an entry").path();
        if path.extension().and_then(|ext| ext.to_str()) != Some("tf") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a module file");
        let body: hcl::Body =
            hcl::parse(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        for block in body.blocks() {
            match block.identifier() {
                "resource" => {
                    let labels: Vec<&str> =
                        block.labels().iter().map(|label| label.as_str()).collect();
                    let counted =
                        block.body().attributes().any(|attribute| attribute.key() == "count");
                    resources.insert(labels.join("."), counted);
                }
                "moved" => {
                    let side = |key: &str| {
                        block
                            .body()
                            .attributes()
                            .find(|attribute| attribute.key() == key)
                            .map(|attribute| attribute.expr().to_string())
                            .unwrap_or_else(|| panic!("a moved block without {key}"))
                    };
                    let from = side("from");
                    assert!(moved.insert(from.clone(), side("to")).is_none(), "{from} moved twice");
                }
                _ => {}
            }
        }
    }
    (resources, moved)
}

/// Buildkite's module keeps its state through a switch of `source` to this one: every
/// address of the original that holds state is this module's, or moves to one of the
/// same type (`terraform plan` cannot run here without the providers, so this is the
/// part of the plan that HCL alone decides).
#[test]
fn the_module_moves_every_original_address_to_one_of_its_own() {
    let (resources, moved) = module_resources();
    let path =
        project::root().join("crates/elastic-ci-e2e/tests/fixtures/original-module-addresses.txt");
    let original = std::fs::read_to_string(&path).expect("the original module's addresses");
    let entries: Vec<(&str, bool)> = original
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| match line.split_once(' ') {
            Some((address, "count")) => (address, true),
            Some(_) => panic!("{line:?}: expected an address, optionally followed by count"),
            None => (line, false),
        })
        .collect();
    let addresses: Vec<&str> = entries.iter().map(|(address, _)| *address).collect();
    assert!(addresses.len() > 10, "{addresses:?}");
    for (address, original_counted) in &entries {
        if resources.contains_key(*address) {
            assert!(!moved.contains_key(*address), "{address} is kept and moved");
            continue;
        }
        let target = moved.get(*address).unwrap_or_else(|| panic!("{address} has no moved block"));
        let (base, index) = match target.split_once('[') {
            Some((base, index)) => (base, Some(index)),
            None => (target.as_str(), None),
        };
        let counted = *resources
            .get(base)
            .unwrap_or_else(|| panic!("{address} moves to {target}, which the module lacks"));
        // A single resource moves to instance [0] of a counted one; a counted one whole.
        let fits = match index {
            Some(_) => counted && !original_counted,
            None => counted == *original_counted,
        };
        assert!(fits, "{address} -> {target}: count and index disagree");
        let kind = |address: &str| address.split('.').next().unwrap_or_default().to_owned();
        assert_eq!(kind(address), kind(base), "{address} -> {target} changes the type");
    }
    for from in moved.keys() {
        assert!(addresses.contains(&from.as_str()), "moved from {from}, not an original address");
    }
}
