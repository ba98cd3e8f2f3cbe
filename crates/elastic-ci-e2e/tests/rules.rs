//! The stack template's Rules, evaluated as CloudFormation evaluates them before it
//! touches a resource (the local AWS emulator skips them), and the image a stack
//! launches from. Each rule refuses exactly the combinations it is for, with its
//! sentence, and uses only the functions CloudFormation accepts in Rules.

use serde_yaml_ng::Value as Yaml;

use elastic_ci_e2e::cfn_eval::{RULE_FUNCTIONS, Stack, text};
use xtask::{project, template};

const TOKEN: (&str, &str) = ("BuildkiteAgentToken", "bkua_token");

fn source() -> Yaml {
    let text = std::fs::read_to_string(project::root().join(template::SOURCE)).expect("template");
    serde_yaml_ng::from_str(&text).expect("YAML")
}

/// The rules a parameter set breaks, by name.
fn broken(template: &Yaml, values: &[(&str, &str)]) -> Vec<String> {
    let mut values = values.to_vec();
    if !values.iter().any(|(key, _)| key.starts_with("BuildkiteAgentToken")) {
        values.push(TOKEN);
    }
    let stack = Stack::new(template, "ci", &values).expect("valid parameters");
    stack.failed_rules().into_iter().map(|(rule, _)| rule).collect()
}

#[test]
fn the_defaults_break_no_rule_but_the_token() {
    let template = source();
    assert!(broken(&template, &[]).is_empty());
    let stack = Stack::new(&template, "ci", &[]).expect("defaults");
    assert_eq!(
        stack.failed_rules(),
        [(
            "HasToken".to_owned(),
            "Set BuildkiteAgentToken or BuildkiteAgentTokenParameterStorePath.".to_owned()
        )]
    );
}

#[test]
fn scale_in_needs_instance_protection_or_the_termination_hook() {
    let template = source();
    for disable_scale_in in ["true", "false"] {
        for protection in ["true", "false"] {
            for hook in ["true", "false"] {
                let allowed = disable_scale_in == "true" || protection == "true" || hook == "true";
                let rules = broken(
                    &template,
                    &[
                        ("DisableScaleIn", disable_scale_in),
                        ("InstanceScaleInProtection", protection),
                        ("EnableTerminationHook", hook),
                    ],
                );
                let expected: Vec<String> =
                    if allowed { Vec::new() } else { vec!["ScaleInNeedsProtection".to_owned()] };
                assert_eq!(
                    rules, expected,
                    "DisableScaleIn={disable_scale_in} protection={protection} hook={hook}"
                );
            }
        }
    }
    let description = assertion_descriptions(&template, "ScaleInNeedsProtection");
    assert!(
        description.iter().all(|text| text.contains("InstanceScaleInProtection")
            && text.contains("EnableTerminationHook")),
        "{description:?}"
    );
}

#[test]
fn a_warm_pool_needs_on_demand_instances() {
    let template = source();
    assert!(broken(&template, &[("WarmPoolSize", "2")]).is_empty(), "on demand by default");
    assert!(broken(&template, &[("OnDemandPercentage", "50")]).is_empty(), "no pool, spot is fine");
    assert_eq!(
        broken(&template, &[("WarmPoolSize", "2"), ("OnDemandPercentage", "50")]),
        ["WarmPoolNeedsOnDemand"]
    );
    let description = assertion_descriptions(&template, "WarmPoolNeedsOnDemand");
    assert!(description.iter().all(|text| text.contains("OnDemandPercentage")), "{description:?}");
}

#[test]
fn a_vpc_needs_subnets_and_subnets_need_their_vpc() {
    let template = source();
    assert_eq!(broken(&template, &[("VpcId", "vpc-0123456789abcdef0")]), ["VpcNeedsSubnets"]);
    assert!(
        broken(
            &template,
            &[("VpcId", "vpc-0123456789abcdef0"), ("Subnets", "subnet-01234567,subnet-89abcdef")]
        )
        .is_empty()
    );
    assert_eq!(broken(&template, &[("Subnets", "subnet-01234567")]), ["SubnetsNeedVpc"]);
}

#[test]
fn ssh_opens_only_on_the_stacks_own_security_group() {
    let template = source();
    assert!(broken(&template, &[("SSHIngressCidr", "203.0.113.0/24")]).is_empty());
    assert_eq!(
        broken(
            &template,
            &[("SSHIngressCidr", "203.0.113.0/24"), ("SecurityGroupIds", "sg-01234567")]
        ),
        ["SshNeedsTheStackSecurityGroup"]
    );
}

/// Rule functions cannot compare numbers: the rule enumerates MaxSize up to 20, so it
/// refuses every MinSize above MaxSize there, and never refuses MaxSize >= MinSize.
#[test]
fn max_size_must_be_at_least_min_size() {
    let template = source();
    for max in 0..=20_u32 {
        for min in 0..=45_u32 {
            let rules =
                broken(&template, &[("MinSize", &min.to_string()), ("MaxSize", &max.to_string())]);
            let refused = rules.iter().any(|rule| rule == "MaxSizeAtLeastMinSize");
            assert_eq!(refused, min > max, "MinSize={min} MaxSize={max}: {rules:?}");
        }
    }
    for (min, max) in [(0, 21), (20, 21), (5, 100), (100, 100), (3, 1000)] {
        assert!(
            broken(&template, &[("MinSize", &min.to_string()), ("MaxSize", &max.to_string())])
                .is_empty(),
            "MinSize={min} MaxSize={max}"
        );
    }
}

#[test]
fn the_existing_rules_still_hold() {
    let template = source();
    assert_eq!(
        broken(&template, &[("ScalerEnableExperimentalElasticCIMode", "true")]),
        ["NoElasticCIMode"]
    );
    assert_eq!(
        broken(
            &template,
            &[("PipelineSigningKMSKeyId", "abcd"), ("PipelineSigningKMSKeySpec", "ECC_NIST_P256")]
        ),
        ["HasPipelineSigningKMSKey"]
    );
}

fn assertion_descriptions(template: &Yaml, rule: &str) -> Vec<String> {
    template["Rules"][rule]["Assertions"]
        .as_sequence()
        .expect("assertions")
        .iter()
        .map(|assertion| assertion["AssertDescription"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// CloudFormation refuses a template whose Rules use other functions (Condition,
/// Fn::If, Fn::FindInMap, Fn::Split ...); cfn-lint does not catch every one of them.
#[test]
fn rules_use_only_rule_functions_and_every_assertion_says_why() {
    fn functions(value: &Yaml, found: &mut Vec<String>) {
        match value {
            Yaml::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let tag = tag.trim_start_matches('!');
                found.push(if tag == "Ref" || tag == "Condition" {
                    tag.to_owned()
                } else {
                    format!("Fn::{tag}")
                });
                functions(&tagged.value, found);
            }
            Yaml::Mapping(mapping) => {
                for (key, item) in mapping {
                    if let Some(key) = key.as_str().filter(|key| {
                        key.starts_with("Fn::") || *key == "Ref" || *key == "Condition"
                    }) {
                        found.push(key.to_owned());
                    }
                    functions(item, found);
                }
            }
            Yaml::Sequence(items) => items.iter().for_each(|item| functions(item, found)),
            _ => {}
        }
    }
    let template = source();
    let parameters = template["Parameters"].as_mapping().expect("parameters");
    for (name, rule) in template["Rules"].as_mapping().expect("rules") {
        let mut found = Vec::new();
        functions(&rule["RuleCondition"], &mut found);
        for assertion in rule["Assertions"].as_sequence().expect("assertions") {
            functions(&assertion["Assert"], &mut found);
            let description = assertion["AssertDescription"].as_str().unwrap_or_default();
            assert!(
                description.ends_with('.') && description.len() > 20,
                "{name:?}: {description:?}"
            );
        }
        for function in &found {
            assert!(RULE_FUNCTIONS.contains(&function.as_str()), "{name:?} uses {function}");
        }
        // Ref in a rule names parameters only.
        let mut refs = Vec::new();
        collect_refs(rule, &mut refs);
        for reference in refs {
            assert!(parameters.contains_key(reference.as_str()), "{name:?} refers to {reference}");
        }
    }
}

fn collect_refs(value: &Yaml, found: &mut Vec<String>) {
    match value {
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => {
            found.extend(tagged.value.as_str().map(str::to_owned));
        }
        Yaml::Tagged(tagged) => collect_refs(&tagged.value, found),
        Yaml::Mapping(mapping) => {
            for (key, item) in mapping {
                if key.as_str() == Some("Ref") {
                    found.extend(item.as_str().map(str::to_owned));
                }
                collect_refs(item, found);
            }
        }
        Yaml::Sequence(items) => items.iter().for_each(|item| collect_refs(item, found)),
        _ => {}
    }
}

/// The rendered template with images for one architecture of one distribution only.
fn rendered_with(mappings: &str) -> Yaml {
    let source = std::fs::read_to_string(project::root().join(template::SOURCE)).expect("template");
    let mappings =
        template::parse_mappings(mappings, std::path::Path::new("test")).expect("mappings");
    let rendered = template::render(
        &source,
        &template::RenderOptions {
            version: "v1.0.0".to_owned(),
            ami_mappings: Some(mappings),
            lambda_bucket_prefix: template::DEFAULT_LAMBDA_BUCKET_PREFIX.to_owned(),
        },
    )
    .expect("renders");
    serde_yaml_ng::from_str(&rendered).expect("YAML")
}

/// An empty image id never reaches a launch: without ImageId or ImageIdParameter the
/// launch template gets the mapped AMI, or the sentence naming the architecture and
/// distribution that has none, which Auto Scaling refuses as an image id.
#[test]
fn a_missing_image_is_a_sentence_naming_the_architecture_never_empty() {
    let template = rendered_with("us-east-1:\n  linuxamd64: ami-0123456789abcdef0\n");
    let image = |values: &[(&str, &str)]| {
        let mut values = values.to_vec();
        values.push(TOKEN);
        let stack = Stack::new(&template, "ci", &values).expect("parameters");
        let launch_template = stack.resource("AgentLaunchTemplate").expect("created");
        text(&launch_template["LaunchTemplateData"]["ImageId"])
    };
    assert_eq!(image(&[("InstanceTypes", "t3.large,m5.large")]), "ami-0123456789abcdef0");
    assert_eq!(
        image(&[("InstanceTypes", "m7g.large,c7g.large")]),
        "No arm64 Amazon Linux 2023 AMI for us-east-1 in this template: set ImageId or ImageIdParameter"
    );
    assert_eq!(
        image(&[("InstanceTypes", "t3.large"), ("LinuxDistribution", "ubuntu2404")]),
        "No x86_64 Ubuntu 24.04 AMI for us-east-1 in this template: set ImageId or ImageIdParameter"
    );
    assert_eq!(
        image(&[("InstanceTypes", "m7g.large"), ("ImageId", "ami-0fedcba9")]),
        "ami-0fedcba9"
    );
    assert_eq!(
        image(&[("InstanceTypes", "m7g.large"), ("ImageIdParameter", "/ci/ami")]),
        "resolve:ssm:/ci/ami"
    );
    // The unrendered template never yields an empty image id either.
    let source = source();
    for types in ["t3.large", "c7g.large", "a1.large,m5.large"] {
        let stack =
            Stack::new(&source, "ci", &[TOKEN, ("InstanceTypes", types)]).expect("parameters");
        let id = text(
            &stack.resource("AgentLaunchTemplate").expect("created")["LaunchTemplateData"]["ImageId"],
        );
        let arch = if types.contains("g.") || types.contains("a1.") { "arm64" } else { "x86_64" };
        assert!(id.starts_with(&format!("No {arch} Amazon Linux 2023 AMI")), "{types}: {id}");
    }
}

/// In a region the release did not publish to, the release's bucket name
/// (`<prefix>-<region>`) is anyone's to create: the stack refuses to take the scaler's
/// code from it there, and takes it from `ScalerLambdaS3Bucket` when given.
#[test]
fn the_release_bucket_is_used_only_in_the_releases_regions() {
    let mut template = source();
    let bucket = |template: &Yaml, values: &[(&str, &str)]| {
        let mut values = values.to_vec();
        values.push(TOKEN);
        let stack = Stack::new(template, "ci", &values).expect("valid parameters");
        let function = stack.resource("AutoscalingFunction").expect("a scaler");
        text(&function["Code"]["S3Bucket"])
    };
    assert!(bucket(&template, &[]).ends_with("-us-east-1"));

    // The emulator's region out of the image mapping: a region without a release.
    let mappings = template["Mappings"]["AWSRegion2AMI"].as_mapping_mut().expect("a mapping");
    let row = mappings.remove("us-east-1").expect("a us-east-1 row");
    mappings.insert(Yaml::from("eu-west-1"), row);
    let image = ("ImageId", "ami-0123456789abcdef0");
    let refused = std::panic::catch_unwind(|| bucket(&template, &[image])).expect_err("refused");
    let message = refused
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| refused.downcast_ref::<&str>().map(|text| (*text).to_owned()))
        .unwrap_or_default();
    assert!(message.contains("Unable to get mapping for AWSRegion2AMI::us-east-1"), "{message}");
    assert_eq!(
        bucket(&template, &[image, ("ScalerLambdaS3Bucket", "my-scaler-zips")]),
        "my-scaler-zips"
    );
}

/// Windows: the windows image on x86_64 types, the Windows root device, and for arm64
/// types a sentence Auto Scaling refuses as the image id (Rules cannot look inside the
/// type list, so this is where windows with Graviton types stops, before any launch).
#[test]
fn windows_launches_its_own_image_on_x86_64_types_only() {
    let template = rendered_with(
        "us-east-1:\n  linuxamd64: ami-0123456789abcdef0\n  windowsamd64: ami-0aaaaaaaaaaaaaaaa\n",
    );
    let launch = |values: &[(&str, &str)]| {
        let mut values = values.to_vec();
        values.push(TOKEN);
        values.push(("InstanceOperatingSystem", "windows"));
        let stack = Stack::new(&template, "ci", &values).expect("parameters");
        stack.resource("AgentLaunchTemplate").expect("created")["LaunchTemplateData"].clone()
    };
    let x86 = launch(&[("InstanceTypes", "m5.large,c5.large")]);
    assert_eq!(text(&x86["ImageId"]), "ami-0aaaaaaaaaaaaaaaa");
    assert_eq!(text(&x86["BlockDeviceMappings"][0]["DeviceName"]), "/dev/sda1");
    // Ubuntu is a Linux distribution: it does not change a Windows stack's image.
    let ubuntu = launch(&[("InstanceTypes", "m5.large"), ("LinuxDistribution", "ubuntu2404")]);
    assert_eq!(text(&ubuntu["ImageId"]), "ami-0aaaaaaaaaaaaaaaa");
    for types in ["m7g.large", "m5.large,c7g.large", "a1.large"] {
        assert_eq!(
            text(&launch(&[("InstanceTypes", types)])["ImageId"]),
            "Windows instances run on x86_64 only: InstanceOperatingSystem windows with an arm64 (Graviton) type in InstanceTypes",
            "{types}"
        );
    }
    let missing = rendered_with("us-east-1:\n  linuxamd64: ami-0123456789abcdef0\n");
    let stack = Stack::new(
        &missing,
        "ci",
        &[TOKEN, ("InstanceOperatingSystem", "windows"), ("InstanceTypes", "m5.large")],
    )
    .expect("parameters");
    assert_eq!(
        text(
            &stack.resource("AgentLaunchTemplate").expect("created")["LaunchTemplateData"]["ImageId"]
        ),
        "No x86_64 Windows Server 2022 AMI for us-east-1 in this template: set ImageId or ImageIdParameter"
    );
    assert!(broken(&template, &[("InstanceOperatingSystem", "windows")]).is_empty());
}
