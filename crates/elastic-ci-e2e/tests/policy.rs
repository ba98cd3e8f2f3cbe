//! What the templates' IAM policies allow, read from the templates and evaluated for
//! several parameter sets (the local AWS emulator evaluates no IAM condition):
//!
//! - the CloudFormation service role of `service-role.yml` cannot make itself, or a role
//!   it creates, more powerful than the permissions boundary: every role write needs the
//!   boundary, attachable policies are an allow-list, roles are passed only to EC2 and
//!   Lambda, functions are only the stacks' own, and nothing touches IAM policies,
//!   users or the boundary itself;
//! - the boundary allows everything `aws-stack.yml` grants its roles, and every role the
//!   stack creates carries the boundary it is given;
//! - the stack's instance role writes only its own log groups and the CloudWatch
//!   agent's metric namespace, and the scaler's role has no action it does not use.

use serde_json::{Value as Json, json};
use serde_yaml_ng::Value as Yaml;

use elastic_ci_e2e::cfn_eval::{
    ACCOUNT_ID, REGION, Stack, Statement, statements, text, wildcard_match,
};
use xtask::{project, template};

const PATTERN: &str = "buildkite-*";
/// A stack the service role may deploy.
const STACK: &str = "buildkite-linux";
const BOUNDARY: &str = "{Ref:StackRolesBoundary}";

/// Actions that rewrite what a role may do: each needs the boundary condition.
const BOUNDED_ROLE_WRITES: [&str; 6] = [
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:PutRolePermissionsBoundary",
];

/// Actions the service role must never have, on anything: they change managed policies
/// (the boundary among them), remove a boundary, or reach users, groups or credentials.
const FORBIDDEN: [&str; 22] = [
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:DeleteRolePermissionsBoundary",
    "iam:CreateUser",
    "iam:PutUserPolicy",
    "iam:AttachUserPolicy",
    "iam:PutUserPermissionsBoundary",
    "iam:DeleteUserPermissionsBoundary",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:AddUserToGroup",
    "iam:PutGroupPolicy",
    "iam:AttachGroupPolicy",
    "iam:CreateGroup",
    "iam:UpdateAccountPasswordPolicy",
    "sts:AssumeRole",
    "organizations:LeaveOrganization",
    "lambda:CreateEventSourceMapping",
];

/// Lambda actions that create, change or run code.
const FUNCTION_ACTIONS: [&str; 5] = [
    "lambda:CreateFunction",
    "lambda:InvokeFunction",
    "lambda:UpdateFunctionCode",
    "lambda:UpdateFunctionConfiguration",
    "lambda:AddPermission",
];

fn load(path: &str) -> Yaml {
    let text = std::fs::read_to_string(project::root().join(path)).expect("a template");
    serde_yaml_ng::from_str(&text).expect("YAML")
}

/// The parameter sets the service role is checked with.
fn service_role_variants() -> Vec<Vec<(&'static str, &'static str)>> {
    vec![
        vec![("StackNamePattern", PATTERN)],
        vec![("StackNamePattern", PATTERN), ("InstanceRoleNamePattern", "ci-agents-*")],
        vec![
            ("StackNamePattern", PATTERN),
            ("PermissionsBoundaryARN", "arn:aws:iam::123456789012:policy/ci-boundary"),
        ],
        vec![
            ("StackNamePattern", PATTERN),
            (
                "AttachablePolicyARNs",
                "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore,arn:aws:iam::123456789012:policy/ci",
            ),
        ],
    ]
}

/// Every statement of the service role's inline policies.
fn service_role_statements(stack: &Stack<'_>) -> Vec<Statement> {
    let role = stack.resource("Role").expect("the role");
    role["Policies"]
        .as_array()
        .expect("inline policies")
        .iter()
        .flat_map(|policy| statements(&policy["PolicyDocument"]))
        .collect()
}

fn grants(statement: &Statement, action: &str) -> bool {
    statement.effect == "Allow"
        && statement.actions.iter().any(|granted| wildcard_match(granted, action, true))
}

/// The values a condition operator gives a key, or none.
fn condition_values(condition: &Json, operator: &str, key: &str) -> Vec<String> {
    match &condition[operator][key] {
        Json::Null => Vec::new(),
        Json::Array(items) => items.iter().map(text).collect(),
        single => vec![text(single)],
    }
}

/// Every way the service role could raise its own or a new role's permissions, as the
/// problems found; empty when the role is safe.
fn escalation_paths(stack: &Stack<'_>, boundary: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let role_prefix = format!("arn:aws:iam::{ACCOUNT_ID}:role/");
    let function_prefix = format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{PATTERN}-");
    for statement in service_role_statements(stack) {
        let name = match (statement.sid.as_str(), statement.actions.first()) {
            ("", Some(first)) => {
                format!("the statement of {first} and {} more", statement.actions.len() - 1)
            }
            (sid, _) => sid.to_owned(),
        };
        if statement.effect != "Allow" {
            continue;
        }
        if statement.not_action || statement.not_resource {
            problems.push(format!("{name}: NotAction or NotResource in an Allow"));
        }
        for action in &statement.actions {
            if action == "*" || wildcard_match(action, "iam:SomeAction", true) {
                problems.push(format!("{name}: grants {action}"));
            }
            // Reading IAM is harmless; any other IAM action on every resource is not.
            let lower = action.to_ascii_lowercase();
            let reads = lower.starts_with("iam:get") || lower.starts_with("iam:list");
            if lower.starts_with("iam:")
                && !reads
                && statement.resources.iter().any(|resource| resource == "*")
            {
                problems.push(format!("{name}: grants {action} on *"));
            }
        }
        for forbidden in FORBIDDEN {
            if grants(&statement, forbidden) {
                problems.push(format!("{name}: grants {forbidden}"));
            }
        }
        for write in BOUNDED_ROLE_WRITES {
            if !grants(&statement, write) {
                continue;
            }
            let required =
                condition_values(&statement.condition, "StringEquals", "iam:PermissionsBoundary");
            if required != [boundary] {
                problems.push(format!(
                    "{name}: grants {write} without StringEquals iam:PermissionsBoundary = the boundary ({required:?})"
                ));
            }
            if statement.resources.iter().any(|resource| {
                !resource.starts_with(&role_prefix) || resource == &format!("{role_prefix}*")
            }) {
                problems.push(format!(
                    "{name}: grants {write} beyond named roles: {:?}",
                    statement.resources
                ));
            }
        }
        if grants(&statement, "iam:AttachRolePolicy") {
            let listed = condition_values(&statement.condition, "ArnEquals", "iam:PolicyARN");
            if listed.is_empty()
                || listed.iter().any(|arn| arn.contains('*') || arn.contains('?') || arn.is_empty())
            {
                problems.push(format!(
                    "{name}: attaches policies without an exact allow-list: {listed:?}"
                ));
            }
        }
        if grants(&statement, "iam:PassRole") {
            let services =
                condition_values(&statement.condition, "StringEquals", "iam:PassedToService");
            let allowed = ["ec2.amazonaws.com", "lambda.amazonaws.com"];
            if services.is_empty()
                || services.iter().any(|service| !allowed.contains(&service.as_str()))
            {
                problems
                    .push(format!("{name}: passes roles to {services:?}, not only EC2 and Lambda"));
            }
            if statement.resources.iter().any(|resource| {
                !resource.starts_with(&role_prefix) || resource == &format!("{role_prefix}*")
            }) {
                problems.push(format!("{name}: passes any role: {:?}", statement.resources));
            }
        }
        for action in FUNCTION_ACTIONS {
            if grants(&statement, action)
                && statement
                    .resources
                    .iter()
                    .any(|resource| !resource.starts_with(&function_prefix))
            {
                problems.push(format!(
                    "{name}: grants {action} on {:?}, not only the stacks' functions",
                    statement.resources
                ));
            }
        }
    }
    problems
}

#[test]
fn the_service_role_cannot_escalate_beyond_the_boundary() {
    let template = load(template::SERVICE_ROLE_SOURCE);
    for values in service_role_variants() {
        let stack = Stack::new(&template, "service-role", &values).expect("valid parameters");
        let given = values.iter().find(|(key, _)| *key == "PermissionsBoundaryARN");
        let boundary = given.map_or(BOUNDARY, |(_, arn)| *arn).to_owned();
        let problems = escalation_paths(&stack, &boundary);
        assert!(problems.is_empty(), "{values:?}:\n{}", problems.join("\n"));
        let output = stack.eval(&template["Outputs"]["PermissionsBoundaryArn"]["Value"]);
        assert_eq!(text(&output), boundary, "{values:?}");
    }
}

/// The checks find the holes they are for: a role like the one before the boundary
/// existed fails on each of them.
#[test]
fn escalation_checks_find_an_open_role() {
    let template: Yaml = serde_yaml_ng::from_str(
        r#"
Parameters:
  StackNamePattern: {Type: String, Default: "*"}
Resources:
  Role:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [iam:CreateRole, iam:AttachRolePolicy, iam:PassRole, iam:DeleteRolePermissionsBoundary]
                Resource: !Sub arn:aws:iam::123456789012:role/${StackNamePattern}-*
              - Effect: Allow
                Action: [lambda:CreateFunction, lambda:InvokeFunction]
                Resource: !Sub arn:aws:lambda:us-east-1:123456789012:function:${StackNamePattern}-*
              - Effect: Allow
                Action: iam:*
                Resource: "*"
"#,
    )
    .expect("YAML");
    let stack = Stack::new(&template, "service-role", &[]).expect("defaults");
    let problems = escalation_paths(&stack, BOUNDARY).join("\n");
    for expected in [
        "grants iam:CreateRole without StringEquals iam:PermissionsBoundary",
        "attaches policies without an exact allow-list",
        "passes roles to []",
        "grants iam:DeleteRolePermissionsBoundary",
        "grants lambda:InvokeFunction on [\"arn:aws:lambda:us-east-1:123456789012:function:*-*\"]",
        "grants iam:*",
        "grants iam:* on *",
    ] {
        assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
    }
}

#[test]
fn the_stack_name_pattern_is_required_and_never_every_stack() {
    let template = load(template::SERVICE_ROLE_SOURCE);
    let parameter = &template["Parameters"]["StackNamePattern"];
    assert!(parameter["Default"].is_null(), "StackNamePattern must have no default");
    assert!(
        Stack::new(&template, "service-role", &[]).is_err(),
        "a stack without StackNamePattern must be refused"
    );
    let pattern = regex_lite::Regex::new(parameter["AllowedPattern"].as_str().expect("a pattern"))
        .expect("a valid pattern");
    for refused in ["*", "**", "?*", "*-ci", "", "-*", "a b", "ci-*\n"] {
        assert!(!pattern.is_match(refused), "{refused:?} must be refused");
    }
    for accepted in ["buildkite-*", "ci", "ci-linux-??", "b*"] {
        assert!(pattern.is_match(accepted), "{accepted:?} must be accepted");
    }
}

/// The roles of a stack deployed with every optional feature on, as the service role
/// would create them.
fn stack_with_every_role(boundary: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("BuildkiteAgentToken", "token"),
        ("InstanceRolePermissionsBoundaryARN", boundary),
        ("BuildkiteAgentTokenParameterStoreKMSKey", "1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("PipelineSigningKMSKeySpec", "ECC_NIST_P256"),
        ("BuildkiteAgentSigningKeySSMParameter", "/ci/jwks/signing"),
        ("BootstrapScriptUrl", "s3://my-config/bootstrap.sh"),
        ("AgentEnvFileUrl", "ssm:/ci/agent-env"),
        ("AuthorizedUsersUrl", "s3://my-config/authorized_keys"),
        ("ArtifactsBucket", "my-artifacts"),
        ("BuildkiteAgentEnableGitMirrors", "true"),
        ("GitMirrorSeedBucket", "my-mirrors"),
        ("ECRAccessPolicy", "poweruser-pullthrough"),
        ("BuildkiteAgentEnableGracefulShutdown", "true"),
    ]
}

/// Every Allow statement of every role and policy the stack creates.
fn stack_role_statements(stack: &Stack<'_>) -> Vec<(String, Statement)> {
    let mut found = Vec::new();
    for role in stack.resources_of_type("AWS::IAM::Role") {
        let properties = stack.resource(&role).expect("created");
        for policy in properties["Policies"].as_array().into_iter().flatten() {
            for statement in statements(&policy["PolicyDocument"]) {
                found.push((role.clone(), statement));
            }
        }
    }
    for policy in stack.resources_of_type("AWS::IAM::Policy") {
        let properties = stack.resource(&policy).expect("created");
        for statement in statements(&properties["PolicyDocument"]) {
            found.push((policy.clone(), statement));
        }
    }
    found
}

/// Whether the boundary allows `action` on `resource` under the statement's conditions:
/// a boundary statement matches the action and resource, and each condition it sets is
/// one the granting statement sets at least as narrowly.
fn boundary_allows(
    boundary: &[Statement],
    granted: &Statement,
    action: &str,
    resource: &str,
) -> bool {
    boundary.iter().any(|allowed| {
        allowed.effect == "Allow"
            && allowed.actions.iter().any(|pattern| wildcard_match(pattern, action, true))
            && allowed.resources.iter().any(|pattern| wildcard_match(pattern, resource, false))
            && allowed.condition.as_object().into_iter().flatten().all(|(operator, keys)| {
                keys.as_object().into_iter().flatten().all(|(key, _)| {
                    let permitted = condition_values(&allowed.condition, operator, key);
                    let used = condition_values(&granted.condition, operator, key);
                    !used.is_empty()
                        && used.iter().all(|value| {
                            permitted.iter().any(|pattern| wildcard_match(pattern, value, false))
                        })
                })
            })
    })
}

#[test]
fn the_boundary_allows_what_the_stack_grants_its_roles() {
    let service_role = load(template::SERVICE_ROLE_SOURCE);
    let service = Stack::new(&service_role, "service-role", &[("StackNamePattern", PATTERN)])
        .expect("parameters");
    let boundary =
        statements(&service.resource("StackRolesBoundary").expect("created")["PolicyDocument"]);
    let template = load(template::SOURCE);
    let stack =
        Stack::new(&template, STACK, &stack_with_every_role("arn:aws:iam::123456789012:policy/b"))
            .expect("parameters");
    let mut missing = Vec::new();
    for (owner, statement) in stack_role_statements(&stack) {
        for action in &statement.actions {
            for resource in &statement.resources {
                if !boundary_allows(&boundary, &statement, action, resource) {
                    missing.push(format!("{owner}: {action} on {resource}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "the boundary cuts these grants:\n{}", missing.join("\n"));
    // The check can fail: a grant the boundary lacks is found.
    let outside = Statement {
        sid: String::new(),
        effect: "Allow".to_owned(),
        actions: vec!["iam:PassRole".to_owned()],
        not_action: false,
        resources: vec!["*".to_owned()],
        not_resource: false,
        condition: Json::Null,
    };
    assert!(!boundary_allows(&boundary, &outside, "iam:PassRole", "*"));
    let no_namespace =
        Statement { actions: vec!["cloudwatch:PutMetricData".to_owned()], ..outside };
    assert!(!boundary_allows(&boundary, &no_namespace, "cloudwatch:PutMetricData", "*"));
}

#[test]
fn every_role_the_stack_creates_carries_the_boundary_it_is_given() {
    let template = load(template::SOURCE);
    let boundary = "arn:aws:iam::123456789012:policy/ci-boundary";
    let stack = Stack::new(&template, STACK, &stack_with_every_role(boundary)).expect("parameters");
    let roles = stack.resources_of_type("AWS::IAM::Role");
    assert_eq!(roles.len(), 5, "every optional role is on: {roles:?}");
    for role in &roles {
        let properties = stack.resource(role).expect("created");
        assert_eq!(properties["PermissionsBoundary"], json!(boundary), "{role}");
    }
    // Without the parameter, no role has a boundary.
    let stack =
        Stack::new(&template, STACK, &[("BuildkiteAgentToken", "token")]).expect("defaults");
    for role in stack.resources_of_type("AWS::IAM::Role") {
        assert!(stack.resource(&role).expect("created")["PermissionsBoundary"].is_null(), "{role}");
    }
}

#[test]
fn the_instance_role_writes_only_the_stacks_logs_and_the_agents_metrics() {
    let template = load(template::SOURCE);
    let stack =
        Stack::new(&template, STACK, &[("BuildkiteAgentToken", "token")]).expect("defaults");
    let policy = stack.resource("IAMPolicies").expect("created");
    let granted = statements(&policy["PolicyDocument"]);
    let own_groups: Vec<String> = [
        "buildkite-agent",
        "cloud-init",
        "cloud-init/output",
        "docker-daemon",
        "elastic-stack",
        "system",
        "auth",
    ]
    .iter()
    .map(|file| format!("arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/buildkite/{STACK}/{file}:*"))
    .collect();
    for action in [
        "logs:CreateLogGroup",
        "logs:PutRetentionPolicy",
        "logs:PutLogEvents",
        "logs:CreateLogStream",
    ] {
        for statement in granted.iter().filter(|statement| grants(statement, action)) {
            assert_eq!(statement.resources, own_groups, "{action}");
        }
    }
    // Another stack's group, any group, and the stack's own scaler and helper groups
    // (their lines feed the alarms and elastic-ci) are out of reach.
    for other in [
        "/buildkite/other-stack/buildkite-agent:*",
        "/aws/lambda/anything:*",
        &format!("/buildkite/{STACK}/scaler:*"),
        &format!("/buildkite/{STACK}/stack-helpers:*"),
    ] {
        let arn = format!("arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{other}");
        for action in ["logs:PutRetentionPolicy", "logs:PutLogEvents"] {
            let reachable = granted.iter().any(|statement| {
                grants(statement, action)
                    && statement
                        .resources
                        .iter()
                        .any(|pattern| wildcard_match(pattern, &arn, false))
            });
            assert!(!reachable, "{action} reaches {other}");
        }
    }
    let metrics: Vec<&Statement> =
        granted.iter().filter(|statement| grants(statement, "cloudwatch:PutMetricData")).collect();
    assert_eq!(metrics.len(), 1);
    assert_eq!(
        condition_values(&metrics[0].condition, "StringEquals", "cloudwatch:namespace"),
        ["CWAgent"]
    );
}

#[test]
fn the_scaler_role_has_only_what_the_scaler_uses() {
    let template = load(template::SOURCE);
    let stack =
        Stack::new(&template, STACK, &[("BuildkiteAgentToken", "token")]).expect("defaults");
    let role = stack.resource("AutoscalingLambdaExecutionRole").expect("created");
    let granted: Vec<String> = role["Policies"]
        .as_array()
        .expect("policies")
        .iter()
        .flat_map(|policy| statements(&policy["PolicyDocument"]))
        .flat_map(|statement| statement.actions)
        .collect();
    assert_eq!(
        granted,
        [
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeScalingActivities",
            "autoscaling:SetDesiredCapacity",
            "ssm:GetParameter",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ]
    );
    let function = stack.resource("AutoscalingFunction").expect("created");
    assert_eq!(function["ReservedConcurrentExecutions"], json!("1"), "one scaler run at a time");
}

#[test]
fn the_instance_role_completes_lifecycle_actions_of_its_own_group_only() {
    let template = load(template::SOURCE);
    let stack =
        Stack::new(&template, STACK, &[("BuildkiteAgentToken", "token")]).expect("defaults");
    let policy = stack.resource("IAMPolicies").expect("created");
    let granted = statements(&policy["PolicyDocument"]);
    let own_group = format!(
        "arn:aws:autoscaling:{REGION}:{ACCOUNT_ID}:autoScalingGroup:0f1e2d3c:autoScalingGroupName/{STACK}-AgentAutoScaleGroup-ABC123"
    );
    let other_group = format!(
        "arn:aws:autoscaling:{REGION}:{ACCOUNT_ID}:autoScalingGroup:0f1e2d3c:autoScalingGroupName/other-AgentAutoScaleGroup-ABC123"
    );
    for action in
        ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"]
    {
        let reaches = |arn: &str| {
            granted.iter().any(|statement| {
                grants(statement, action)
                    && statement.resources.iter().any(|pattern| wildcard_match(pattern, arn, false))
            })
        };
        assert!(reaches(&own_group), "{action} on the stack's group");
        assert!(!reaches(&other_group), "{action} reaches another stack's group");
    }
}

/// The service role may create, change and delete every monitoring resource the stack
/// makes (dashboard, alarms, metric filters, saved queries), by the names the stack
/// gives them.
#[test]
fn the_service_role_may_manage_the_stacks_monitoring() {
    let service_template = load(template::SERVICE_ROLE_SOURCE);
    let service = Stack::new(&service_template, "service-role", &[("StackNamePattern", PATTERN)])
        .expect("valid parameters");
    let granted = service_role_statements(&service);
    let allowed = |action: &str, resource: &str| {
        granted.iter().any(|statement| {
            grants(statement, action)
                && statement
                    .resources
                    .iter()
                    .any(|pattern| wildcard_match(pattern, resource, false))
        })
    };
    let template = load(template::SOURCE);
    let stack = Stack::new(&template, STACK, &stack_with_every_role("")).expect("valid parameters");
    let log_group_arn = |name: &Json| {
        let name = text(name);
        let group = name
            .strip_prefix("{Ref:")
            .and_then(|logical| logical.strip_suffix('}'))
            .map_or(name.clone(), |logical| {
                text(&stack.resource(logical).expect("the log group")["LogGroupName"])
            });
        format!("arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{group}")
    };
    let mut needed = Vec::new();
    for (kind, actions) in [
        ("AWS::CloudWatch::Dashboard", ["cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards"]),
        ("AWS::CloudWatch::Alarm", ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"]),
        ("AWS::Logs::MetricFilter", ["logs:PutMetricFilter", "logs:DeleteMetricFilter"]),
        ("AWS::Logs::QueryDefinition", ["logs:PutQueryDefinition", "logs:DeleteQueryDefinition"]),
    ] {
        let names = stack.resources_of_type(kind);
        assert!(!names.is_empty(), "the stack makes no {kind}");
        for name in names {
            let properties = stack.resource(&name).expect("created");
            let resource = match kind {
                "AWS::CloudWatch::Dashboard" => format!(
                    "arn:aws:cloudwatch::{ACCOUNT_ID}:dashboard/{}",
                    text(&properties["DashboardName"])
                ),
                "AWS::CloudWatch::Alarm" => format!(
                    "arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{}",
                    text(&properties["AlarmName"])
                ),
                "AWS::Logs::MetricFilter" => log_group_arn(&properties["LogGroupName"]),
                _ => "*".to_owned(),
            };
            needed.extend(actions.iter().map(|action| (name.clone(), *action, resource.clone())));
        }
    }
    let refused: Vec<String> = needed
        .iter()
        .filter(|(_, action, resource)| !allowed(action, resource))
        .map(|(name, action, resource)| format!("{name}: {action} on {resource}"))
        .collect();
    assert!(refused.is_empty(), "the service role may not:\n{}", refused.join("\n"));
    // Another stack's alarms and dashboards stay out of reach.
    assert!(!allowed(
        "cloudwatch:PutMetricAlarm",
        &format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:other-boot-failures")
    ));
    assert!(!allowed(
        "cloudwatch:PutDashboard",
        &format!("arn:aws:cloudwatch::{ACCOUNT_ID}:dashboard/other-{REGION}")
    ));
}
