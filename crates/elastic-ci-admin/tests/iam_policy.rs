//! `elastic-ci iam-policy` prints what the template grants the role it creates: for
//! each set of flags, the template is evaluated with the matching parameters (as
//! CloudFormation would, with `elastic_ci_e2e::cfn_eval`) and the trust policy, every
//! inline policy attached to `IAMRole` and its managed policies must equal the
//! command's, statement by statement. The one rewrite is the stack signal's resource:
//! the template names the stack's id, the command every stack of that name.

use std::collections::BTreeSet;

use assert_cmd::Command;
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;

use elastic_ci_e2e::cfn_eval::{ACCOUNT_ID, REGION, Stack, text};
use xtask::{project, template};

const STACK: &str = "ci";

/// One comparison: the command's flags and the template's parameters they stand for.
struct Case {
    flags: &'static [&'static str],
    parameters: &'static [(&'static str, &'static str)],
}

const CASES: [Case; 4] = [
    // The defaults, without the secrets bucket the stack would create.
    Case { flags: &[], parameters: &[("EnableSecretsPlugin", "false")] },
    Case {
        flags: &[
            "--secrets-bucket",
            "my-secrets",
            "--artifacts-bucket",
            "my-artifacts",
            "--kms-key",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "--ecr",
            "readonly-pullthrough",
            "--token-parameter",
            "/ci/agent-token",
            "--pipeline-signing-kms-key",
            "5678abcd-12ab-34cd-56ef-1234567890ab",
            "--pipeline-signing-access",
            "verify",
            "--signing-key-parameter",
            "/ci/jwks/signing",
            "--verification-key-parameter",
            "/ci/jwks/verification",
            "--git-mirror-seed-bucket",
            "my-mirrors",
            "--bootstrap-script-url",
            "s3://my-config/boot/bootstrap.sh",
            "--agent-env-file-url",
            "s3://my-config/env",
            "--authorized-users-url",
            "s3://my-config/keys/authorized_keys",
            "--managed-policy",
            "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
            "--managed-policy",
            "arn:aws:iam::123456789012:policy/ci-extra",
        ],
        parameters: &[
            ("SecretsBucket", "my-secrets"),
            ("ArtifactsBucket", "my-artifacts"),
            ("BuildkiteAgentTokenParameterStoreKMSKey", "1234abcd-12ab-34cd-56ef-1234567890ab"),
            ("ECRAccessPolicy", "readonly-pullthrough"),
            ("BuildkiteAgentTokenParameterStorePath", "/ci/agent-token"),
            ("PipelineSigningKMSKeyId", "5678abcd-12ab-34cd-56ef-1234567890ab"),
            ("PipelineSigningKMSAccess", "verify"),
            ("BuildkiteAgentSigningKeySSMParameter", "/ci/jwks/signing"),
            ("BuildkiteAgentVerificationKeySSMParameter", "/ci/jwks/verification"),
            ("BuildkiteAgentEnableGitMirrors", "true"),
            ("GitMirrorSeedBucket", "my-mirrors"),
            ("BootstrapScriptUrl", "s3://my-config/boot/bootstrap.sh"),
            ("AgentEnvFileUrl", "s3://my-config/env"),
            ("AuthorizedUsersUrl", "s3://my-config/keys/authorized_keys"),
            (
                "ManagedPolicyARNs",
                "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore,arn:aws:iam::123456789012:policy/ci-extra",
            ),
        ],
    },
    // ARNs instead of ids and paths; the other forms of the optional grants.
    Case {
        flags: &[
            "--kms-key",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "--token-parameter",
            "arn:aws:ssm:eu-west-1:210987654321:parameter/shared/agent-token",
            "--pipeline-signing-kms-key",
            "arn:aws:kms:us-east-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab",
            "--signing-key-parameter",
            "/ci/jwks/signing",
            "--agent-env-file-url",
            "ssm:/ci/agent-env",
            "--ecr",
            "full",
            "--managed-policy",
            "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
            "--bootstrap-script-url",
            "https://example.com/bootstrap.sh",
        ],
        parameters: &[
            ("EnableSecretsPlugin", "false"),
            (
                "BuildkiteAgentTokenParameterStoreKMSKey",
                "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            ),
            (
                "BuildkiteAgentTokenParameterStorePath",
                "arn:aws:ssm:eu-west-1:210987654321:parameter/shared/agent-token",
            ),
            (
                "PipelineSigningKMSKeyId",
                "arn:aws:kms:us-east-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab",
            ),
            ("BuildkiteAgentSigningKeySSMParameter", "/ci/jwks/signing"),
            ("AgentEnvFileUrl", "ssm:/ci/agent-env"),
            ("ECRAccessPolicy", "full"),
            ("ManagedPolicyARNs", "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"),
            ("BootstrapScriptUrl", "https://example.com/bootstrap.sh"),
        ],
    },
    Case {
        flags: &[
            "--ecr",
            "poweruser-pullthrough",
            "--verification-key-parameter",
            "/ci/jwks/verification",
            "--authorized-users-url",
            "https://example.com/keys",
        ],
        parameters: &[
            ("EnableSecretsPlugin", "false"),
            ("ECRAccessPolicy", "poweruser-pullthrough"),
            ("BuildkiteAgentVerificationKeySSMParameter", "/ci/jwks/verification"),
            ("AuthorizedUsersUrl", "https://example.com/keys"),
        ],
    },
];

fn source() -> Yaml {
    let text = std::fs::read_to_string(project::root().join(template::SOURCE)).expect("template");
    serde_yaml_ng::from_str(&text).expect("YAML")
}

/// The AWS::IAM::Policy resources of the template attached to the role it creates, by
/// logical id.
fn role_policy_resources(template: &Yaml) -> BTreeSet<String> {
    template["Resources"]
        .as_mapping()
        .expect("resources")
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::IAM::Policy"))
        .filter(|(_, resource)| {
            resource["Properties"]["Roles"].as_sequence().is_some_and(|roles| {
                roles.iter().any(|role| matches!(role, Yaml::Tagged(tag) if tag.value.as_str() == Some("IAMRole")))
            })
        })
        .filter_map(|(name, _)| name.as_str().map(str::to_owned))
        .collect()
}

/// What the template grants for `parameters`, in the command's JSON shape, and the
/// policy resources that made it.
fn template_grants(template: &Yaml, parameters: &[(&str, &str)]) -> (Value, BTreeSet<String>) {
    let mut values = vec![("BuildkiteAgentToken", "bkua_token")];
    values.extend_from_slice(parameters);
    let stack = Stack::new(template, STACK, &values).expect("valid parameters");
    let role = stack.resource("IAMRole").expect("the stack creates its role");
    assert!(
        role["Policies"].as_array().is_none_or(Vec::is_empty),
        "IAMRole has inline policies of its own: compare them too"
    );
    let attached = role_policy_resources(template);
    let mut used = BTreeSet::new();
    let mut policies = serde_json::Map::new();
    for name in stack.resources_of_type("AWS::IAM::Policy") {
        if !attached.contains(&name) {
            continue;
        }
        let policy = stack.resource(&name).expect("created");
        policies.insert(text(&policy["PolicyName"]), policy["PolicyDocument"].clone());
        used.insert(name);
    }
    let grants = json!({
        "AssumeRolePolicyDocument": role["AssumeRolePolicyDocument"],
        "Policies": policies,
        "ManagedPolicyArns": role.get("ManagedPolicyArns").cloned().unwrap_or_else(|| json!([])),
    });
    // A role made before its stack cannot name the stack's id.
    let signal = grants.to_string().replace(
        &stack.stack_id(),
        &format!("arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK}/*"),
    );
    (serde_json::from_str(&signal).expect("JSON"), used)
}

fn command_grants(flags: &[&str]) -> Value {
    let output = Command::cargo_bin("elastic-ci")
        .unwrap()
        .env_remove("ELASTIC_CI_LOG")
        .args(["iam-policy", "--stack-name", STACK, "--region", REGION, "--account-id", ACCOUNT_ID])
        .args(flags)
        .output()
        .unwrap();
    assert!(output.status.success(), "{flags:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[test]
fn iam_policy_equals_the_templates_grants_statement_by_statement() {
    let template = source();
    let mut covered = BTreeSet::new();
    for case in &CASES {
        let (expected, used) = template_grants(&template, case.parameters);
        covered.extend(used);
        let actual = command_grants(case.flags);
        assert_eq!(actual["AssumeRolePolicyDocument"], expected["AssumeRolePolicyDocument"]);
        assert_eq!(actual["ManagedPolicyArns"], expected["ManagedPolicyArns"], "{:?}", case.flags);
        let expected_names: Vec<&String> =
            expected["Policies"].as_object().expect("policies").keys().collect();
        let actual_names: Vec<&String> =
            actual["Policies"].as_object().expect("policies").keys().collect();
        assert_eq!(actual_names, expected_names, "{:?}", case.flags);
        for name in expected_names {
            let statements = |grants: &Value| grants["Policies"][name]["Statement"].clone();
            let (expected, actual) = (statements(&expected), statements(&actual));
            let expected = expected.as_array().expect("statements");
            let actual = actual.as_array().expect("statements");
            assert_eq!(actual.len(), expected.len(), "{name}: {:?}", case.flags);
            for (actual, expected) in actual.iter().zip(expected) {
                assert_eq!(actual, expected, "{name}, {:?}", case.flags);
            }
        }
        assert_eq!(actual, expected, "{:?}", case.flags);
    }
    // Every policy the template can attach to the role is one some flag produces.
    assert_eq!(covered, role_policy_resources(&template), "a policy of the template has no flag");
}
