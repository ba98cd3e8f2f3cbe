//! The stack template, the Terraform module and the binaries agree:
//!
//! - every template parameter is a Terraform variable (snake_case) with the same type,
//!   default and validation, and sits in one console group;
//! - the UserData of both passes the bootstrapper exactly the inputs it reads;
//! - every scaler environment variable they set is one the scaler reads;
//! - the bootstrapper signals the template's Auto Scaling group;
//! - the log groups the stack creates are the ones the image streams to;
//! - the module declares the template's lifecycle hooks, under the same conditions.

use std::collections::{BTreeMap, BTreeSet};

use elastic_ci_core::boot::config::BootConfig;
use elastic_ci_core::boot::plan::STACK_RESOURCE;
use elastic_ci_core::scaling::config::ScalerConfig;
use hcl::{Body, Expression, ObjectKey};
use serde_yaml_ng::Value;

use elastic_ci_core::lifecycle::{BOOT_DEADLINE, DRAIN_HOOK_NAME, LAUNCH_HOOK_NAME};
use elastic_ci_e2e::cfn_eval::{Stack, text as cfn_text};
use elastic_ci_e2e::deploy::{BootInputs, parse_user_data};
use xtask::{project, template};

/// Words kept together in snake_case (`IMDSv2Tokens` is `imdsv2_tokens`).
const ACRONYMS: [&str; 18] = [
    "IMDSv2", "IPv4", "IPv6", "ARNs", "ARN", "EC2", "S3", "KMS", "ACL", "CPU", "IO", "ECR", "ID",
    "SSM", "SSH", "CI", "V4", "V6",
];

/// Terraform-only variables: CloudFormation takes the stack name and tags from the stack.
const TERRAFORM_ONLY: [&str; 2] = ["stack_name", "tags"];

/// Comma-separated string parameters that are lists in Terraform.
const LIST_PARAMETERS: [&str; 1] = ["SecurityGroupIds"];

/// The variable name of a template parameter.
pub(crate) fn snake_case(parameter: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut rest = parameter;
    while let Some(first) = rest.chars().next() {
        let word_len = ACRONYMS
            .iter()
            .find(|acronym| rest.starts_with(**acronym))
            .map(|acronym| acronym.len())
            .unwrap_or_else(|| {
                let tail = &rest[first.len_utf8()..];
                let same_kind = |c: char| {
                    if first.is_ascii_digit() { c.is_ascii_digit() } else { c.is_ascii_lowercase() }
                };
                first.len_utf8() + tail.find(|c: char| !same_kind(c)).unwrap_or(tail.len())
            });
        words.push(rest[..word_len].to_ascii_lowercase());
        rest = &rest[word_len..];
    }
    words.join("_")
}

fn template() -> Value {
    let text = std::fs::read_to_string(project::root().join(template::SOURCE))
        .expect("the source template");
    serde_yaml_ng::from_str(&text).expect("the template is YAML")
}

fn terraform(file: &str) -> Body {
    let path = project::root().join("terraform").join(file);
    let text = std::fs::read_to_string(&path).expect("a module file");
    hcl::parse(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// `variable "name" { … }` blocks of variables.tf, by name.
fn variables() -> BTreeMap<String, Body> {
    terraform("variables.tf")
        .blocks()
        .filter(|block| block.identifier() == "variable")
        .map(|block| (block.labels()[0].as_str().to_owned(), block.body().clone()))
        .collect()
}

fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|attribute| attribute.key() == key).map(|attribute| attribute.expr())
}

/// The keys of the object assigned to `local.<name>` in `file`.
fn local_object_keys(file: &str, name: &str) -> BTreeSet<String> {
    let body = terraform(file);
    let object = body
        .blocks()
        .filter(|block| block.identifier() == "locals")
        .find_map(|block| attribute(block.body(), name))
        .unwrap_or_else(|| panic!("local.{name} is not in {file}"));
    let Expression::Object(object) = object else { panic!("local.{name} is not an object") };
    object
        .keys()
        .map(|key| match key {
            ObjectKey::Identifier(identifier) => identifier.to_string(),
            ObjectKey::Expression(expression) => expression.to_string(),
            other => panic!("unexpected key {other:?}"),
        })
        .collect()
}

fn as_number(expression: &Expression) -> Option<f64> {
    match expression {
        Expression::Number(number) => number.as_f64(),
        // `-1` parses as the negation of 1.
        Expression::Operation(_) => expression.to_string().replace(' ', "").parse().ok(),
        _ => None,
    }
}

fn yaml_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

/// The text of every validation condition of a variable.
fn validations(body: &Body) -> Vec<String> {
    body.blocks()
        .filter(|block| block.identifier() == "validation")
        .filter_map(|block| attribute(block.body(), "condition").map(ToString::to_string))
        .collect()
}

fn hcl_string(text: &str) -> String {
    Expression::String(text.to_owned()).to_string()
}

#[test]
fn snake_case_keeps_acronyms_whole() {
    let cases = [
        (
            "BuildkiteAgentTokenParameterStoreKMSKey",
            "buildkite_agent_token_parameter_store_kms_key",
        ),
        ("IMDSv2Tokens", "imdsv2_tokens"),
        ("DockerIPv4AddressPool1", "docker_ipv4_address_pool_1"),
        ("DockerFixedCidrV6", "docker_fixed_cidr_v6"),
        ("EC2LogRetentionDays", "ec2_log_retention_days"),
        ("ArtifactsS3ACL", "artifacts_s3_acl"),
        ("ManagedPolicyARNs", "managed_policy_arns"),
        ("SecretsPluginSkipSSHKeyNotFoundWarning", "secrets_plugin_skip_ssh_key_not_found_warning"),
        ("ScalerEnableExperimentalElasticCIMode", "scaler_enable_experimental_elastic_ci_mode"),
        ("ResourceLimitsIOWeight", "resource_limits_io_weight"),
        ("VpcId", "vpc_id"),
    ];
    for (parameter, variable) in cases {
        assert_eq!(snake_case(parameter), variable, "{parameter}");
    }
}

#[test]
fn every_parameter_is_a_terraform_variable_with_the_same_type_default_and_validation() {
    let template = template();
    let parameters = template["Parameters"].as_mapping().expect("parameters");
    let mut variables = variables();
    let mut problems = Vec::new();
    for (name, parameter) in parameters {
        let name = name.as_str().expect("a parameter name");
        let variable_name = snake_case(name);
        let Some(variable) = variables.remove(&variable_name) else {
            problems.push(format!("{name}: no variable {variable_name}"));
            continue;
        };
        let kind = parameter["Type"].as_str().unwrap_or_default();
        let allowed: Vec<Value> =
            parameter["AllowedValues"].as_sequence().cloned().unwrap_or_default();
        let boolean = allowed == [Value::from("true"), Value::from("false")];
        let list = kind == "CommaDelimitedList" || LIST_PARAMETERS.contains(&name);
        let expected_type = match (boolean, kind, list) {
            (true, _, _) => "bool",
            (_, _, true) => "list(string)",
            (_, "Number", _) => "number",
            _ => "string",
        };
        let actual_type = attribute(&variable, "type").map(ToString::to_string).unwrap_or_default();
        if actual_type != expected_type {
            problems.push(format!("{variable_name}: type {actual_type}, expected {expected_type}"));
        }

        let default = &parameter["Default"];
        let tf_default = attribute(&variable, "default");
        let same_default = match (expected_type, tf_default) {
            ("bool", Some(Expression::Bool(value))) => default.as_str() == Some(&value.to_string()),
            ("number", Some(expression)) => as_number(expression) == yaml_number(default),
            ("list(string)", Some(Expression::Array(items))) => {
                items.is_empty() && default.as_str() == Some("")
            }
            ("string", Some(Expression::String(value))) => yaml_number(default)
                .map_or(default.as_str() == Some(value), |_| {
                    serde_yaml_ng::to_string(default).unwrap_or_default().trim() == value
                }),
            _ => false,
        };
        if !same_default {
            problems
                .push(format!("{variable_name}: default {tf_default:?}, template has {default:?}"));
        }

        let sensitive = matches!(attribute(&variable, "sensitive"), Some(Expression::Bool(true)));
        if sensitive != parameter["NoEcho"].as_bool().unwrap_or(false) {
            problems.push(format!("{variable_name}: sensitive must match NoEcho"));
        }

        let conditions = validations(&variable);
        let mut expect = |what: &str, fragments: Vec<String>| {
            let found = conditions
                .iter()
                .any(|condition| fragments.iter().all(|fragment| condition.contains(fragment)));
            if !found {
                problems.push(format!("{variable_name}: no validation for {what} ({fragments:?})"));
            }
        };
        if !boolean && !allowed.is_empty() {
            let values = allowed
                .iter()
                .map(|value| match value {
                    Value::String(text) => hcl_string(text),
                    other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_owned(),
                })
                .collect();
            expect("AllowedValues", values);
        }
        if let Some(pattern) = parameter["AllowedPattern"].as_str() {
            expect("AllowedPattern", vec![format!("regex({}", hcl_string(pattern))]);
        }
        if let Some(min) = yaml_number(&parameter["MinValue"]) {
            expect("MinValue", vec![format!("var.{variable_name} >= {min}")]);
        }
        if let Some(max) = yaml_number(&parameter["MaxValue"]) {
            expect("MaxValue", vec![format!("var.{variable_name} <= {max}")]);
        }
        if let Some(min) = yaml_number(&parameter["MinLength"]) {
            expect("MinLength", vec![format!("length(var.{variable_name}) >= {min}")]);
        }
    }
    let extra: BTreeSet<&str> = variables.keys().map(String::as_str).collect();
    if extra != BTreeSet::from(TERRAFORM_ONLY) {
        problems
            .push(format!("variables without a parameter: {extra:?}, expected {TERRAFORM_ONLY:?}"));
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn every_parameter_is_in_exactly_one_console_group() {
    let template = template();
    let parameters: BTreeSet<&str> = template["Parameters"]
        .as_mapping()
        .expect("parameters")
        .keys()
        .filter_map(Value::as_str)
        .collect();
    let mut grouped = Vec::new();
    for group in template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
        .as_sequence()
        .expect("parameter groups")
    {
        grouped.extend(
            group["Parameters"].as_sequence().expect("a list").iter().filter_map(Value::as_str),
        );
    }
    let unique: BTreeSet<&str> = grouped.iter().copied().collect();
    assert_eq!(unique.len(), grouped.len(), "a parameter is in two groups");
    assert_eq!(unique, parameters);
}

/// The UserData of the template, unrendered: the Linux branch, or the Windows one.
fn template_user_data(windows: bool) -> BootInputs {
    let template = template();
    let user_data = &template["Resources"]["AgentLaunchTemplate"]["Properties"]["LaunchTemplateData"]
        ["UserData"];
    let Value::Tagged(choice) = user_data else { panic!("UserData is not !If") };
    assert_eq!(choice.tag, "If");
    assert_eq!(choice.value[0], "UseWindowsAgents");
    let branch = &choice.value[if windows { 1 } else { 2 }]["Fn::Base64"];
    let Value::Tagged(sub) = branch else { panic!("a UserData branch is not Fn::Base64: !Sub") };
    let text = sub.value[0].as_str().expect("the !Sub string");
    parse_user_data(text).expect("the template's UserData")
}

fn template_boot_inputs() -> BootInputs {
    template_user_data(false)
}

/// The Windows UserData passes the same inputs, in the same order, with the same
/// substitutions, and checks the same line count; the here-string cannot be ended by
/// a value, and the substitutions are the Linux branch's.
#[test]
fn the_windows_user_data_passes_the_same_inputs_as_the_linux_one() {
    let linux = template_user_data(false);
    let windows = template_user_data(true);
    assert_eq!(windows.lines, linux.lines);
    assert_eq!(windows.expected_lines, windows.lines.len(), "the line-count check is stale");
    let here_string_ends = windows.shell_part.lines().filter(|line| line.starts_with("'@")).count();
    assert_eq!(here_string_ends, 1, "{}", windows.shell_part);
    let template = template();
    let user_data = &template["Resources"]["AgentLaunchTemplate"]["Properties"]["LaunchTemplateData"]
        ["UserData"];
    let Value::Tagged(choice) = user_data else { unreachable!() };
    let substitutions = |index: usize| {
        let Value::Tagged(sub) = &choice.value[index]["Fn::Base64"] else { unreachable!() };
        sub.value[1].clone()
    };
    assert_eq!(substitutions(1), substitutions(2));
    assert!(windows.shell_part.contains("<powershell>"));
    assert!(!windows.shell_part.contains("Invoke-Expression"), "no value is ever evaluated");
}

#[test]
fn user_data_passes_the_bootstrapper_exactly_the_inputs_it_reads() {
    let inputs = template_boot_inputs();
    assert_eq!(inputs.lines.len(), inputs.expected_lines, "the line-count check is stale");
    let template_names = inputs.names();
    assert_eq!(template_names.len(), inputs.lines.len(), "a name is passed twice");
    let terraform_names = local_object_keys("main.tf", "boot_inputs");
    assert_eq!(
        template_names, terraform_names,
        "the template and the module pass different inputs"
    );

    let read: BTreeSet<String> =
        BootConfig::ENV_VARS.iter().map(|name| (*name).to_owned()).collect();
    let missing: Vec<&String> = read.difference(&template_names).collect();
    assert!(
        missing.is_empty(),
        "the bootstrapper reads {missing:?}, which the UserData does not pass"
    );
    let unread: Vec<&String> = template_names.difference(&read).collect();
    assert!(
        unread.is_empty(),
        "the UserData passes {unread:?}, which the bootstrapper does not read"
    );
}

#[test]
fn every_scaler_variable_set_is_one_the_scaler_reads() {
    let template = template();
    let template_names: BTreeSet<String> =
        template["Resources"]["AutoscalingFunction"]["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .expect("the scaler's environment")
            .keys()
            .filter_map(|key| key.as_str().map(str::to_owned))
            .collect();
    let terraform_names = local_object_keys("scaler.tf", "scaler_environment");
    assert_eq!(
        template_names, terraform_names,
        "the template and the module set different variables"
    );
    let read: BTreeSet<String> =
        ScalerConfig::ENV_VARS.iter().map(|name| (*name).to_owned()).collect();
    let unread: Vec<&String> = template_names.difference(&read).collect();
    assert!(unread.is_empty(), "the scaler does not read {unread:?}");
    for required in
        ["BUILDKITE_QUEUE", "ASG_NAME", "AGENTS_PER_INSTANCE", "BUILDKITE_AGENT_TOKEN_SSM_KEY"]
    {
        assert!(template_names.contains(required), "{required} is required by the scaler");
    }
}

#[test]
fn the_bootstrapper_signals_the_group_that_waits_for_it() {
    let template = template();
    let group = &template["Resources"][STACK_RESOURCE];
    assert_eq!(group["Type"].as_str(), Some("AWS::AutoScaling::AutoScalingGroup"));
    let count = &group["CreationPolicy"]["ResourceSignal"]["Count"];
    assert!(matches!(count, Value::Tagged(_)), "Count is !Ref MinSize: {count:?}");
}

/// The instance log groups of the template, the module and (when the image's
/// CloudWatch agent configuration is in the repository) the image.
#[test]
fn log_groups_are_the_ones_the_instances_stream_to() {
    let template = template();
    let prefix = "/buildkite/${AWS::StackName}/";
    let template_groups: BTreeSet<String> = template["Resources"]
        .as_mapping()
        .expect("resources")
        .values()
        .filter(|resource| resource["Type"].as_str() == Some("AWS::Logs::LogGroup"))
        .filter(|resource| resource["Condition"].is_null())
        .filter_map(|resource| match &resource["Properties"]["LogGroupName"] {
            Value::Tagged(sub) => {
                sub.value.as_str().and_then(|name| name.strip_prefix(prefix)).map(str::to_owned)
            }
            _ => None,
        })
        .filter(|name| name != "stack-helpers")
        .collect();

    let compute = terraform("compute.tf");
    let for_each = compute
        .blocks()
        .find(|block| {
            block.identifier() == "resource"
                && block.labels().iter().any(|label| label.as_str() == "instances")
        })
        .and_then(|block| attribute(block.body(), "for_each"))
        .expect("the module's instance log groups")
        .to_string();
    let terraform_groups: BTreeSet<String> = template_groups
        .iter()
        .filter(|group| for_each.contains(&format!("\"{group}\"")))
        .cloned()
        .collect();
    assert_eq!(terraform_groups, template_groups, "the module's groups: {for_each}");
    assert_eq!(
        for_each.matches('"').count(),
        template_groups.len() * 2,
        "the module has extra groups: {for_each}"
    );

    let image_config =
        project::root().join("packer/linux/conf/cloudwatch-agent/amazon-cloudwatch-agent.json");
    if let Ok(text) = std::fs::read_to_string(&image_config) {
        let config: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let image_groups: BTreeSet<String> =
            config["logs"]["logs_collected"]["files"]["collect_list"]
                .as_array()
                .expect("collect_list")
                .iter()
                .filter_map(|file| file["log_group_name"].as_str())
                .filter_map(|name| name.strip_prefix("/buildkite/{stack_name}/").map(str::to_owned))
                .collect();
        let missing: Vec<&String> = image_groups.difference(&template_groups).collect();
        assert!(
            missing.is_empty(),
            "the image streams to {missing:?}, which the stack does not create"
        );
    }
}

/// The most parameters a console group may hold and still be scanned at a glance.
const MAX_GROUP_SIZE: usize = 12;

/// Terraform-only outputs: CloudFormation cannot give the group's ARN.
const TERRAFORM_ONLY_OUTPUTS: [&str; 1] = ["auto_scaling_group_arn"];
/// Template-only outputs: the module needs no helper functions.
const TEMPLATE_ONLY_OUTPUTS: [&str; 1] = ["StackHelperLogGroup"];

fn parameters(template: &Value) -> Vec<(String, Value)> {
    template["Parameters"]
        .as_mapping()
        .expect("parameters")
        .iter()
        .map(|(name, parameter)| (name.as_str().expect("a name").to_owned(), parameter.clone()))
        .collect()
}

#[test]
fn every_parameter_has_a_label_and_groups_stay_small() {
    let template = template();
    let interface = &template["Metadata"]["AWS::CloudFormation::Interface"];
    let labels = interface["ParameterLabels"].as_mapping().expect("ParameterLabels");
    let mut problems = Vec::new();
    for (name, _) in parameters(&template) {
        let label = labels.get(name.as_str()).and_then(|label| label["default"].as_str());
        if label.is_none_or(|label| label.trim().is_empty()) {
            problems.push(format!("{name}: no label"));
        }
    }
    for name in labels.keys().filter_map(Value::as_str) {
        if template["Parameters"][name].is_null() {
            problems.push(format!("label for {name}, which is not a parameter"));
        }
    }
    for group in interface["ParameterGroups"].as_sequence().expect("groups") {
        let size = group["Parameters"].as_sequence().map_or(0, Vec::len);
        let label = group["Label"]["default"].as_str().unwrap_or_default();
        if size > MAX_GROUP_SIZE || label.is_empty() {
            problems.push(format!("group {label:?} holds {size} parameters"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_constrained_parameter_says_what_it_accepts_in_words() {
    let template = template();
    let mut problems = Vec::new();
    for (name, parameter) in parameters(&template) {
        let constrained = ["AllowedPattern", "AllowedValues", "MinValue", "MaxValue", "MinLength"]
            .iter()
            .any(|key| !parameter[*key].is_null());
        let description = parameter["ConstraintDescription"].as_str().unwrap_or_default();
        if constrained && description.is_empty() {
            problems.push(format!("{name}: no ConstraintDescription"));
        }
        if let Some(pattern) = parameter["AllowedPattern"].as_str()
            && (description.contains(pattern)
                || description.contains('^')
                || description.contains('\\'))
        {
            problems.push(format!("{name}: the ConstraintDescription quotes the pattern"));
        }
        if !constrained && !description.is_empty() {
            problems.push(format!("{name}: a ConstraintDescription without a constraint"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// No free-text value can end the UserData heredoc early, or add a line to the
/// scaler's environment: every string parameter is a list of choices or has a pattern
/// that refuses a line break anywhere, and accepts its own default.
#[test]
fn every_free_text_parameter_refuses_line_breaks() {
    let template = template();
    let mut problems = Vec::new();
    for (name, parameter) in parameters(&template) {
        let kind = parameter["Type"].as_str().unwrap_or_default();
        if kind == "Number" {
            continue;
        }
        let default = parameter["Default"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| parameter["Default"].as_f64().map(|number| number.to_string()));
        if let Some(values) = parameter["AllowedValues"].as_sequence() {
            if values
                .iter()
                .any(|value| value.as_str().is_some_and(|text| text.contains(['\n', '\r'])))
            {
                problems.push(format!("{name}: an allowed value has a line break"));
            }
            continue;
        }
        let Some(pattern) = parameter["AllowedPattern"].as_str() else {
            problems.push(format!("{name}: free text without an AllowedPattern"));
            continue;
        };
        let regex = match regex_lite::Regex::new(pattern) {
            Ok(regex) => regex,
            Err(error) => {
                problems.push(format!("{name}: invalid pattern: {error}"));
                continue;
            }
        };
        // Each element of a list is matched on its own.
        let defaults: Vec<String> = match (kind, default) {
            ("CommaDelimitedList", Some(default)) => {
                default.split(',').map(str::to_owned).collect()
            }
            (_, Some(default)) => vec![default],
            (_, None) => Vec::new(),
        };
        for default in &defaults {
            if !regex.is_match(default) {
                problems.push(format!("{name}: refuses its default {default:?}"));
            }
        }
        let base = defaults.first().cloned().unwrap_or_default();
        for hostile in [
            format!("{base}\n"),
            format!("{base}\r"),
            format!("\n{base}"),
            format!("{base}\nLD_PRELOAD=/tmp/x.so"),
            format!("{base}\r\nX=1"),
            "\n".to_owned(),
        ] {
            if regex.is_match(&hostile) {
                problems.push(format!("{name}: accepts {hostile:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// `output "name" { … }` blocks of outputs.tf, by name.
fn terraform_outputs() -> BTreeMap<String, Body> {
    terraform("outputs.tf")
        .blocks()
        .filter(|block| block.identifier() == "output")
        .map(|block| (block.labels()[0].as_str().to_owned(), block.body().clone()))
        .collect()
}

#[test]
fn outputs_are_described_exported_and_the_same_in_the_module() {
    let template = template();
    let outputs = template["Outputs"].as_mapping().expect("outputs");
    let mut problems = Vec::new();
    let mut template_names = BTreeSet::new();
    for (name, output) in outputs {
        let name = name.as_str().expect("a name");
        if output["Description"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{name}: no Description"));
        }
        let export = match &output["Export"]["Name"] {
            Value::Tagged(sub) => sub.value.as_str().map(str::to_owned),
            _ => None,
        };
        if export != Some(format!("${{AWS::StackName}}-{name}")) {
            problems
                .push(format!("{name}: export is {export:?}, expected ${{AWS::StackName}}-{name}"));
        }
        if !TEMPLATE_ONLY_OUTPUTS.contains(&name) {
            template_names.insert(snake_case(name));
        }
    }
    let module = terraform_outputs();
    for (name, output) in &module {
        if !matches!(attribute(output, "description"), Some(Expression::String(text)) if !text.is_empty())
        {
            problems.push(format!("output {name}: no description"));
        }
    }
    let module_names: BTreeSet<String> = module
        .keys()
        .filter(|name| !TERRAFORM_ONLY_OUTPUTS.contains(&name.as_str()))
        .cloned()
        .collect();
    if module_names != template_names {
        problems.push(format!(
            "the module's outputs differ: only in the template {:?}, only in the module {:?}",
            template_names.difference(&module_names).collect::<Vec<_>>(),
            module_names.difference(&template_names).collect::<Vec<_>>()
        ));
    }
    for required in [
        "ScalerFunctionName",
        "ScalerLogGroup",
        "InstanceLogGroups",
        "AgentTokenParameter",
        "LaunchTemplateId",
        "SecurityGroupId",
        "InstanceRoleArn",
    ] {
        if template["Outputs"][required].is_null() {
            problems.push(format!("no {required} output"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Terraform's validation messages are the template's ConstraintDescription, in words,
/// after the variable's name.
#[test]
fn terraform_validation_messages_are_in_words() {
    let template = template();
    let mut problems = Vec::new();
    for (variable_name, body) in variables() {
        let parameter = parameters(&template)
            .into_iter()
            .find(|(name, _)| snake_case(name) == variable_name)
            .map(|(_, parameter)| parameter);
        for block in body.blocks().filter(|block| block.identifier() == "validation") {
            let message = match attribute(block.body(), "error_message") {
                Some(Expression::String(text)) => text.clone(),
                other => {
                    problems.push(format!("{variable_name}: error_message is {other:?}"));
                    continue;
                }
            };
            let condition =
                attribute(block.body(), "condition").map(ToString::to_string).unwrap_or_default();
            if !message.starts_with(&format!("{variable_name} "))
                && !message.starts_with("This stack's scaler")
            {
                problems.push(format!("{variable_name}: message does not name it: {message:?}"));
            }
            if message.contains('^') || message.contains("\\") || message.contains("must match") {
                problems.push(format!("{variable_name}: message quotes a pattern: {message:?}"));
            }
            let Some(parameter) = &parameter else { continue };
            let list = condition.contains("alltrue(") || condition.contains("join(");
            let boolean = parameter["AllowedValues"]
                .as_sequence()
                .is_some_and(|values| values.len() == 2 && values[0].as_str() == Some("true"));
            if list || boolean {
                continue;
            }
            let description = parameter["ConstraintDescription"].as_str().unwrap_or_default();
            if message != format!("{variable_name} {description}") {
                problems.push(format!(
                    "{variable_name}: message {message:?} is not the ConstraintDescription {description:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Item by item, the module refuses what the template's Rules refuse, and runs one
/// scaler at a time.
#[test]
fn the_module_checks_what_the_template_rules_check() {
    let main = terraform("main.tf");
    let validate = main
        .blocks()
        .find(|block| {
            block.identifier() == "resource"
                && block.labels().iter().any(|label| label.as_str() == "validate")
        })
        .expect("terraform_data.validate");
    let preconditions: Vec<String> = validate
        .body()
        .blocks()
        .filter(|block| block.identifier() == "lifecycle")
        .flat_map(|lifecycle| lifecycle.body().blocks().cloned().collect::<Vec<_>>())
        .filter(|block| block.identifier() == "precondition")
        .filter_map(|block| attribute(block.body(), "condition").map(ToString::to_string))
        .collect();
    for expected in [
        "var.buildkite_agent_token != \"\" || var.buildkite_agent_token_parameter_store_path != \"\"",
        "var.disable_scale_in || var.instance_scale_in_protection || var.enable_termination_hook",
        "var.warm_pool_size == 0 || var.on_demand_percentage == 100",
        "var.max_size >= var.min_size",
        "var.vpc_id == \"\" || length(var.subnets) > 0",
        "var.vpc_id != \"\" || length(var.subnets) == 0",
        "var.ssh_ingress_cidr == \"\" || length(var.security_group_ids) == 0",
        "local.image_id != \"\"",
    ] {
        assert!(
            preconditions.iter().any(|condition| condition == expected),
            "no precondition {expected}: {preconditions:?}"
        );
    }
    let scaler = terraform("scaler.tf");
    let function = scaler
        .blocks()
        .find(|block| {
            block.identifier() == "resource" && block.labels()[0].as_str() == "aws_lambda_function"
        })
        .expect("the scaler function");
    // One scheduled run at a time; a second execution environment only for job events.
    assert_eq!(
        attribute(function.body(), "reserved_concurrent_executions").map(ToString::to_string),
        Some("local.scale_on_job_events ? 2 : 1".to_owned())
    );
    let template = template();
    let reserved =
        &template["Resources"]["AutoscalingFunction"]["Properties"]["ReservedConcurrentExecutions"];
    assert_eq!(
        serde_json::to_value(reserved).unwrap(),
        serde_json::json!({"!If": ["ScaleOnJobEvents", 2, 1]}),
        "{reserved:?}"
    );
}

/// One lifecycle hook: name, transition, heartbeat timeout, default result.
type Hook = (String, String, String, String);

/// The hooks the template declares on its group for `values`.
fn template_hooks(values: &[(&str, &str)]) -> Vec<Hook> {
    let template = template();
    let mut values = values.to_vec();
    values.push(("BuildkiteAgentToken", "token"));
    let stack = Stack::new(&template, "ci-linux", &values).expect("a valid parameter set");
    let group = stack.resource("AgentAutoScaleGroup").expect("the group");
    let Some(hooks) = group.get("LifecycleHookSpecificationList") else { return Vec::new() };
    hooks
        .as_array()
        .expect("a list of hooks")
        .iter()
        .map(|hook| {
            (
                cfn_text(&hook["LifecycleHookName"]),
                cfn_text(&hook["LifecycleTransition"]),
                cfn_text(&hook["HeartbeatTimeout"]),
                cfn_text(&hook["DefaultResult"]),
            )
        })
        .collect()
}

/// The module's `aws_autoscaling_lifecycle_hook` resources: their `count` expression
/// and the hook, with the heartbeat timeout as written.
fn module_hooks() -> Vec<(String, Hook)> {
    terraform("compute.tf")
        .blocks()
        .filter(|block| {
            block.identifier() == "resource"
                && block.labels()[0].as_str() == "aws_autoscaling_lifecycle_hook"
        })
        .map(|block| {
            let body = block.body();
            let value = |key: &str| match attribute(body, key) {
                Some(Expression::String(text)) => text.clone(),
                Some(expression) => expression.to_string(),
                None => panic!("hook {} has no {key}", block.labels()[1].as_str()),
            };
            (
                value("count"),
                (
                    value("name"),
                    value("lifecycle_transition"),
                    value("heartbeat_timeout"),
                    value("default_result"),
                ),
            )
        })
        .collect()
}

fn hook(name: &str, transition: &str, heartbeat: &str, result: &str) -> Hook {
    (name.to_owned(), transition.to_owned(), heartbeat.to_owned(), result.to_owned())
}

/// The launch hook exists exactly when there is a warm pool, waits as long as the boot
/// may take, and abandons an instance whose boot never answers; the termination hook
/// follows `EnableTerminationHook`.
#[test]
fn the_template_holds_new_instances_with_a_launch_hook_only_with_a_warm_pool() {
    let boot_deadline = BOOT_DEADLINE.as_secs().to_string();
    let drain = hook(DRAIN_HOOK_NAME, "autoscaling:EC2_INSTANCE_TERMINATING", "900", "CONTINUE");
    let launch =
        hook(LAUNCH_HOOK_NAME, "autoscaling:EC2_INSTANCE_LAUNCHING", &boot_deadline, "ABANDON");
    for (termination, warm_pool, expected) in [
        ("true", "0", vec![drain.clone()]),
        ("true", "2", vec![drain.clone(), launch.clone()]),
        ("false", "0", vec![]),
        ("false", "2", vec![launch.clone()]),
    ] {
        let values = [
            ("EnableTerminationHook", termination),
            ("TerminationHookHeartbeatTimeout", "900"),
            ("WarmPoolSize", warm_pool),
        ];
        assert_eq!(
            template_hooks(&values),
            expected,
            "EnableTerminationHook={termination} WarmPoolSize={warm_pool}"
        );
    }
}

/// The module declares the template's hooks, under the same conditions, as separate
/// resources (an inline `initial_lifecycle_hook` change replaces the whole group).
#[test]
fn the_module_declares_the_templates_lifecycle_hooks() {
    let boot_deadline = BOOT_DEADLINE.as_secs().to_string();
    let template =
        template_hooks(&[("WarmPoolSize", "2"), ("TerminationHookHeartbeatTimeout", "900")]);
    let module = module_hooks();
    assert_eq!(
        module,
        [
            (
                "var.enable_termination_hook ? 1 : 0".to_owned(),
                hook(
                    DRAIN_HOOK_NAME,
                    "autoscaling:EC2_INSTANCE_TERMINATING",
                    "var.termination_hook_heartbeat_timeout",
                    "CONTINUE"
                )
            ),
            (
                "var.warm_pool_size > 0 ? 1 : 0".to_owned(),
                hook(
                    LAUNCH_HOOK_NAME,
                    "autoscaling:EC2_INSTANCE_LAUNCHING",
                    &boot_deadline,
                    "ABANDON"
                )
            ),
        ]
    );
    // Apart from the heartbeat parameter's name, the same hooks as the template's.
    let module: Vec<Hook> = module
        .into_iter()
        .map(|(_, hook)| match hook.2.as_str() {
            "var.termination_hook_heartbeat_timeout" => (hook.0, hook.1, "900".to_owned(), hook.3),
            _ => hook,
        })
        .collect();
    assert_eq!(module, template);
    // No inline hook is left on the group; the group is replaced before it is deleted.
    let compute = terraform("compute.tf");
    let group = compute
        .blocks()
        .find(|block| {
            block.identifier() == "resource"
                && block.labels()[0].as_str() == "aws_autoscaling_group"
        })
        .expect("the group");
    assert!(!group.body().blocks().any(|block| block.identifier() == "initial_lifecycle_hook"));
    let lifecycle = group
        .body()
        .blocks()
        .find(|block| block.identifier() == "lifecycle")
        .expect("the group's lifecycle block");
    assert_eq!(
        attribute(lifecycle.body(), "create_before_destroy").map(ToString::to_string),
        Some("true".to_owned())
    );
    assert!(
        attribute(lifecycle.body(), "ignore_changes")
            .is_some_and(|ignored| ignored.to_string().contains("initial_lifecycle_hook")),
        "hooks declared inline by earlier versions must not replace the group"
    );
}
