//! The stack's monitoring (metric filters, alarms, the dashboard, saved queries), read
//! from the template and the Terraform module (the local AWS emulator skips alarms and
//! cannot test a filter pattern):
//!
//! - the module has the template's metric filters, alarms, dashboard and queries;
//! - every metric an alarm or the dashboard reads is one a metric filter, the scaler,
//!   or Auto Scaling publishes, and the dashboard's alarm widget names the alarms;
//! - the boot-failure filter counts the line a failed boot of the real bootstrapper
//!   writes, once (the scaler's filters are held against its poll lines in
//!   `elastic-ci-scaler`'s tests).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use hcl::{Body, Expression};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use elastic_ci_e2e::cfn_eval::{ACCOUNT_ID, REGION, Stack, text};
use elastic_ci_testkit::log_filter;
use xtask::{project, template};

/// The namespace of the stack's own metrics, after `ElasticCIStack/`.
const NAMESPACE_PREFIX: &str = "ElasticCIStack/";

/// The template's monitoring resources and the module's, by logical id and by
/// `<type>.<name>`.
const PAIRS: [(&str, &str); 9] = [
    ("ScalerPollsMetricFilter", "aws_cloudwatch_log_metric_filter.successful_polls"),
    ("ScalerPollErrorsMetricFilter", "aws_cloudwatch_log_metric_filter.poll_errors"),
    ("BootFailuresMetricFilter", "aws_cloudwatch_log_metric_filter.boot_failures"),
    ("ScalerNotPollingAlarm", "aws_cloudwatch_metric_alarm.scaler_not_polling"),
    ("ScalerErrorsAlarm", "aws_cloudwatch_metric_alarm.scaler_errors"),
    ("BootFailuresAlarm", "aws_cloudwatch_metric_alarm.boot_failures"),
    ("DecisionsQueryDefinition", "aws_cloudwatch_query_definition.decisions"),
    ("ScaleChangesQueryDefinition", "aws_cloudwatch_query_definition.scale_changes"),
    ("PollErrorsQueryDefinition", "aws_cloudwatch_query_definition.poll_errors"),
];

/// The queue metrics the scaler publishes (namespace Buildkite, dimensions Org and
/// Queue), as its source names them.
const QUEUE_METRICS: [&str; 6] = [
    "ScheduledJobsCount",
    "RunningJobsCount",
    "WaitingJobsCount",
    "IdleAgentCount",
    "BusyAgentCount",
    "TotalAgentCount",
];

fn template_yaml() -> Yaml {
    let text = std::fs::read_to_string(project::root().join(template::SOURCE)).expect("template");
    serde_yaml_ng::from_str(&text).expect("YAML")
}

fn module() -> Body {
    let path = project::root().join("terraform/monitoring.tf");
    let text = std::fs::read_to_string(&path).expect("monitoring.tf");
    hcl::parse(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn module_resource<'a>(module: &'a Body, address: &str) -> &'a Body {
    let (kind, name) = address.split_once('.').expect("type.name");
    module
        .blocks()
        .find(|block| {
            block.identifier() == "resource"
                && block.labels()[0].as_str() == kind
                && block.labels()[1].as_str() == name
        })
        .unwrap_or_else(|| panic!("the module has no {address}"))
        .body()
}

fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|attribute| attribute.key() == key).map(|attribute| attribute.expr())
}

/// An attribute as text: a string's value, a heredoc's lines trimmed, or the
/// expression as written, with the module's stack name in the template's spelling.
fn hcl_text(body: &Body, key: &str) -> String {
    let text = match attribute(body, key) {
        Some(Expression::String(value)) => value.clone(),
        Some(Expression::TemplateExpr(template)) => match template.as_ref() {
            hcl::TemplateExpr::Heredoc(heredoc) => heredoc.template.clone(),
            hcl::TemplateExpr::QuotedString(quoted) => quoted.clone(),
        },
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let text = normalise(&text.replace("${var.stack_name}", "${AWS::StackName}"));
    if text == "local.monitoring_namespace" {
        return format!("{NAMESPACE_PREFIX}${{AWS::StackName}}");
    }
    text
}

/// A template property as text: a scalar, or the string of a `!Sub`.
fn yaml_text(value: &Yaml) -> String {
    let value = match value {
        Yaml::Tagged(tagged) if tagged.tag == "Sub" => &tagged.value,
        other => other,
    };
    match value {
        Yaml::String(text) => normalise(text),
        Yaml::Number(number) => number.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Lines trimmed, blank ones dropped: heredocs and YAML blocks indent differently.
fn normalise(text: &str) -> String {
    text.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join("\n")
}

/// One block of a module resource by its identifier (`metric_transformation`).
fn block<'a>(body: &'a Body, identifier: &str) -> Vec<&'a Body> {
    body.blocks()
        .filter(|block| block.identifier() == identifier)
        .map(|block| block.body())
        .collect()
}

#[test]
fn the_module_has_the_templates_metric_filters_alarms_and_queries() {
    let template = template_yaml();
    let module = module();
    let mut problems = Vec::new();
    let mut compare = |what: String, template_value: String, module_value: String| {
        if template_value != module_value {
            problems.push(format!("{what}: template {template_value:?}, module {module_value:?}"));
        }
    };
    for (logical, address) in PAIRS {
        let resource = &template["Resources"][logical];
        assert!(!resource.is_null(), "the template has no {logical}");
        let properties = &resource["Properties"];
        let body = module_resource(&module, address);
        let scaler_only = resource["Condition"].as_str() == Some("HasVariableSize");
        let counted = attribute(body, "count").map(ToString::to_string);
        compare(
            format!("{logical}: only with a scaler"),
            scaler_only.to_string(),
            counted.is_some_and(|count| count.contains("local.has_variable_size")).to_string(),
        );
        match resource["Type"].as_str() {
            Some("AWS::Logs::MetricFilter") => {
                compare(
                    format!("{logical}: name"),
                    yaml_text(&properties["FilterName"]),
                    hcl_text(body, "name"),
                );
                compare(
                    format!("{logical}: pattern"),
                    yaml_text(&properties["FilterPattern"]),
                    hcl_text(body, "pattern"),
                );
                let transformation = &properties["MetricTransformations"][0];
                let module_transformation = block(body, "metric_transformation")[0];
                for (cfn, tf) in [
                    ("MetricNamespace", "namespace"),
                    ("MetricName", "name"),
                    ("MetricValue", "value"),
                    ("Unit", "unit"),
                ] {
                    compare(
                        format!("{logical}: {cfn}"),
                        yaml_text(&transformation[cfn]),
                        hcl_text(module_transformation, tf),
                    );
                }
            }
            Some("AWS::CloudWatch::Alarm") => {
                for (cfn, tf) in [
                    ("AlarmName", "alarm_name"),
                    ("MetricName", "metric_name"),
                    ("Statistic", "statistic"),
                    ("Period", "period"),
                    ("EvaluationPeriods", "evaluation_periods"),
                    ("DatapointsToAlarm", "datapoints_to_alarm"),
                    ("Threshold", "threshold"),
                    ("ComparisonOperator", "comparison_operator"),
                    ("TreatMissingData", "treat_missing_data"),
                ] {
                    let template_value = if properties[cfn].is_null() {
                        String::new()
                    } else {
                        yaml_text(&properties[cfn])
                    };
                    compare(format!("{logical}: {cfn}"), template_value, hcl_text(body, tf));
                }
                for (cfn, tf) in [("AlarmActions", "alarm_actions"), ("OKActions", "ok_actions")] {
                    compare(
                        format!("{logical}: {cfn}"),
                        "the topic, when one is given".to_owned(),
                        match (&properties[cfn], hcl_text(body, tf).as_str()) {
                            (Yaml::Tagged(_), "local.alarm_actions") => {
                                "the topic, when one is given"
                            }
                            _ => "something else",
                        }
                        .to_owned(),
                    );
                }
                let queries: Vec<&Body> = block(body, "metric_query");
                let metrics = properties["Metrics"].as_sequence().cloned().unwrap_or_default();
                compare(
                    format!("{logical}: metric queries"),
                    metrics.len().to_string(),
                    queries.len().to_string(),
                );
                for (metric, query) in metrics.iter().zip(queries) {
                    let id = yaml_text(&metric["Id"]);
                    compare(format!("{logical}: query id"), id.clone(), hcl_text(query, "id"));
                    for (cfn, tf) in [("Expression", "expression"), ("Label", "label")] {
                        let template_value = if metric[cfn].is_null() {
                            String::new()
                        } else {
                            yaml_text(&metric[cfn])
                        };
                        compare(
                            format!("{logical}: {id} {cfn}"),
                            template_value,
                            hcl_text(query, tf),
                        );
                    }
                    compare(
                        format!("{logical}: {id} ReturnData"),
                        metric["ReturnData"].as_bool().unwrap_or(true).to_string(),
                        hcl_text(query, "return_data"),
                    );
                    if let Some(stat) = metric["MetricStat"].as_mapping() {
                        let stat = Yaml::Mapping(stat.clone());
                        let module_metric = block(query, "metric")[0];
                        for (cfn, tf) in [
                            (&stat["Metric"]["Namespace"], "namespace"),
                            (&stat["Metric"]["MetricName"], "metric_name"),
                            (&stat["Period"], "period"),
                            (&stat["Stat"], "stat"),
                        ] {
                            compare(
                                format!("{logical}: {id} {tf}"),
                                yaml_text(cfn),
                                hcl_text(module_metric, tf),
                            );
                        }
                    }
                }
            }
            Some("AWS::Logs::QueryDefinition") => {
                compare(
                    format!("{logical}: name"),
                    yaml_text(&properties["Name"]),
                    hcl_text(body, "name"),
                );
                compare(
                    format!("{logical}: query"),
                    yaml_text(&properties["QueryString"]),
                    hcl_text(body, "query_string"),
                );
            }
            other => panic!("{logical} is a {other:?}"),
        }
    }
    let paired: BTreeSet<&str> = PAIRS.iter().map(|(logical, _)| *logical).collect();
    for (name, resource) in template["Resources"].as_mapping().expect("resources") {
        let kind = resource["Type"].as_str().unwrap_or_default();
        let name = name.as_str().unwrap_or_default();
        if ["AWS::Logs::MetricFilter", "AWS::CloudWatch::Alarm", "AWS::Logs::QueryDefinition"]
            .contains(&kind)
            && !paired.contains(name)
        {
            problems.push(format!("{name} ({kind}) has no counterpart in the module"));
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// The template's dashboard for stack `ci` on queue `default`.
fn template_dashboard() -> Json {
    let template = template_yaml();
    let stack = Stack::new(&template, "ci", &[("BuildkiteAgentToken", "bkua_token")])
        .expect("valid parameters");
    let dashboard = stack.resource("Dashboard").expect("the dashboard");
    assert_eq!(text(&dashboard["DashboardName"]), format!("ci-{REGION}"));
    serde_json::from_str(&text(&dashboard["DashboardBody"])).expect("the body is JSON")
}

#[test]
fn the_module_renders_the_templates_dashboard() {
    let path = project::root().join("terraform/dashboard.json.tftpl");
    let tftpl = std::fs::read_to_string(&path).expect("dashboard.json.tftpl");
    // The variables monitoring.tf passes, with the values the template gives stack `ci`.
    let variables = [
        ("stack_name", "ci".to_owned()),
        ("region", REGION.to_owned()),
        ("partition", "aws".to_owned()),
        ("account_id", ACCOUNT_ID.to_owned()),
        ("queue", "default".to_owned()),
        ("group_name", "{Ref:AgentAutoScaleGroup}".to_owned()),
    ];
    let call =
        hcl_text(module_resource(&module(), "aws_cloudwatch_dashboard.stack"), "dashboard_body");
    let mut rendered = tftpl.clone();
    for (name, value) in &variables {
        assert!(call.contains(&format!("{name} =")), "monitoring.tf does not pass {name}: {call}");
        rendered = rendered.replace(&format!("${{{name}}}"), value);
    }
    assert!(!rendered.contains("${"), "the dashboard uses a variable monitoring.tf does not pass");
    let module: Json = serde_json::from_str(&rendered).expect("the rendered dashboard is JSON");
    assert_eq!(module, template_dashboard());
}

/// Every `[namespace, metric, …]` of the dashboard's metric widgets, and the text of
/// its expressions.
fn dashboard_metrics(dashboard: &Json) -> (BTreeSet<(String, String)>, Vec<String>) {
    let mut metrics = BTreeSet::new();
    let mut expressions = Vec::new();
    for widget in dashboard["widgets"].as_array().expect("widgets") {
        for metric in widget["properties"]["metrics"].as_array().into_iter().flatten() {
            let items = metric.as_array().expect("a metric is a list");
            match (items.first(), items.get(1)) {
                (Some(Json::String(namespace)), Some(Json::String(name))) => {
                    metrics.insert((namespace.clone(), name.clone()));
                }
                (Some(Json::Object(options)), _) => {
                    expressions.push(text(&options["expression"]));
                }
                _ => panic!("unexpected metric {metric}"),
            }
        }
    }
    (metrics, expressions)
}

#[test]
fn every_metric_read_is_one_something_publishes() {
    let template = template_yaml();
    let stack = Stack::new(&template, "ci", &[("BuildkiteAgentToken", "bkua_token")])
        .expect("valid parameters");
    let namespace = format!("{NAMESPACE_PREFIX}ci");
    let filtered: BTreeSet<(String, String)> = stack
        .resources_of_type("AWS::Logs::MetricFilter")
        .iter()
        .map(|name| {
            let transformation =
                &stack.resource(name).expect("created")["MetricTransformations"][0];
            (text(&transformation["MetricNamespace"]), text(&transformation["MetricName"]))
        })
        .collect();
    assert_eq!(filtered.len(), 3, "{filtered:?}");
    assert!(filtered.iter().all(|(space, _)| *space == namespace), "{filtered:?}");

    let dashboard = template_dashboard();
    let (metrics, expressions) = dashboard_metrics(&dashboard);
    let collected: BTreeSet<&str> = template["Resources"]["AgentAutoScaleGroup"]["Properties"]
        ["MetricsCollection"][0]["Metrics"]
        .as_sequence()
        .expect("the group's metrics")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    for (space, name) in &metrics {
        let published = match space.as_str() {
            "AWS/AutoScaling" => collected.contains(name.as_str()),
            _ => filtered.contains(&(space.clone(), name.clone())),
        };
        assert!(published, "the dashboard reads {space} {name}, which nothing publishes");
    }
    assert_eq!(
        filtered.iter().cloned().collect::<BTreeSet<_>>(),
        metrics.iter().filter(|(space, _)| *space == namespace).cloned().collect(),
        "the dashboard shows every metric filter's metric"
    );

    // The queue metrics: the scaler's names, searched under its namespace and
    // dimensions, for this stack's queue.
    let scaler =
        std::fs::read_to_string(project::root().join("crates/elastic-ci-scaler/src/lib.rs"))
            .expect("the scaler's source");
    let mut shown = BTreeSet::new();
    for expression in &expressions {
        assert!(expression.contains("{Buildkite,Org,Queue} Queue=\"default\""), "{expression}");
        for name in QUEUE_METRICS {
            if expression.contains(&format!("\"{name}\"")) {
                shown.insert(name);
            }
        }
    }
    for name in QUEUE_METRICS {
        assert!(
            scaler.contains(&format!("(\"{name}\", counts.")),
            "the scaler no longer publishes {name}"
        );
        assert!(shown.contains(name), "the dashboard does not show {name}");
    }

    // Alarms read the metric filters' metrics, and the alarm widget names every alarm.
    let mut alarm_arns = BTreeSet::new();
    for name in stack.resources_of_type("AWS::CloudWatch::Alarm") {
        let alarm = stack.resource(&name).expect("created");
        alarm_arns.insert(format!(
            "arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{}",
            text(&alarm["AlarmName"])
        ));
        let mut read = Vec::new();
        if alarm["MetricName"].is_string() {
            read.push((text(&alarm["Namespace"]), text(&alarm["MetricName"])));
        }
        for query in alarm["Metrics"].as_array().into_iter().flatten() {
            if query["MetricStat"].is_object() {
                let metric = &query["MetricStat"]["Metric"];
                read.push((text(&metric["Namespace"]), text(&metric["MetricName"])));
            }
        }
        assert!(!read.is_empty(), "{name} reads no metric");
        for metric in read {
            assert!(filtered.contains(&metric), "{name} reads {metric:?}, which no filter makes");
        }
    }
    assert_eq!(alarm_arns.len(), 3);
    let widget_alarms: BTreeSet<String> = dashboard["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .filter(|widget| widget["type"] == "alarm")
        .flat_map(|widget| widget["properties"]["alarms"].as_array().cloned().unwrap_or_default())
        .map(|arn| text(&arn))
        .collect();
    assert_eq!(widget_alarms, alarm_arns);
}

/// Without a scaler (MinSize equals MaxSize) the stack still watches the boots.
#[test]
fn a_fixed_size_stack_keeps_the_boot_alarm_and_the_dashboard() {
    let template = template_yaml();
    let stack = Stack::new(
        &template,
        "ci",
        &[("BuildkiteAgentToken", "bkua_token"), ("MinSize", "2"), ("MaxSize", "2")],
    )
    .expect("valid parameters");
    assert_eq!(stack.resources_of_type("AWS::CloudWatch::Alarm"), ["BootFailuresAlarm"]);
    assert_eq!(stack.resources_of_type("AWS::Logs::MetricFilter"), ["BootFailuresMetricFilter"]);
    assert!(stack.resources_of_type("AWS::Logs::QueryDefinition").is_empty());
    assert!(stack.resource("Dashboard").is_some());
    let with_topic = Stack::new(
        &template,
        "ci",
        &[
            ("BuildkiteAgentToken", "bkua_token"),
            ("AlarmTopicARN", "arn:aws:sns:us-east-1:123456789012:ci-alarms"),
        ],
    )
    .expect("valid parameters");
    let alarm = with_topic.resource("BootFailuresAlarm").expect("created");
    assert_eq!(
        alarm["AlarmActions"],
        serde_json::json!(["arn:aws:sns:us-east-1:123456789012:ci-alarms"])
    );
    assert_eq!(alarm["OKActions"], alarm["AlarmActions"]);
    let without = stack.resource("BootFailuresAlarm").expect("created");
    assert!(without.get("AlarmActions").is_none(), "{without}");
}

/// The bootstrapper's binary, beside this test's directory in the target directory.
fn bootstrapper() -> PathBuf {
    let this = std::env::current_exe().expect("this test's path");
    let binary = this
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the target directory")
        .join("elastic-ci-bootstrap");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo test --workspace --no-run)",
        binary.display()
    );
    binary
}

#[test]
fn a_failed_boot_is_one_boot_failure() {
    let template = template_yaml();
    let pattern = yaml_text(
        &template["Resources"]["BootFailuresMetricFilter"]["Properties"]["FilterPattern"],
    );
    let root = tempfile::tempdir().expect("a root");
    let actions = root.path().join("actions.jsonl");
    // The metadata service does not answer: the boot fails at its first step, through
    // the failure path a broken instance takes.
    let output = Command::new(bootstrapper())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("ELASTIC_CI_LOG", "info")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_REGION", REGION)
        .args(["boot", "--root"])
        .arg(root.path())
        .arg("--record-actions")
        .arg(&actions)
        .args(["--metadata-retry-delay-ms", "1"])
        .output()
        .expect("the bootstrapper runs");
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let log = std::fs::read_to_string(root.path().join("var/log/elastic-stack.log"))
        .expect("the boot log the instances ship to the elastic-stack group");
    let matching: Vec<&str> = log
        .lines()
        .filter(|line| log_filter::matches(&pattern, line).expect("a known pattern"))
        .collect();
    assert_eq!(matching.len(), 1, "{pattern}: {log}");
    assert!(matching[0].contains("step=\"instance-metadata\""), "{}", matching[0]);
}

#[test]
fn outputs_name_the_dashboard() {
    let template = template_yaml();
    let stack = Stack::new(&template, "ci", &[("BuildkiteAgentToken", "bkua_token")])
        .expect("valid parameters");
    let outputs: BTreeMap<&str, String> = ["DashboardName", "DashboardUrl"]
        .into_iter()
        .map(|name| (name, text(&stack.eval(&template["Outputs"][name]["Value"]))))
        .collect();
    assert_eq!(outputs["DashboardName"], "{Ref:Dashboard}");
    assert_eq!(
        outputs["DashboardUrl"],
        format!(
            "https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#dashboards:name={{Ref:Dashboard}}"
        )
    );
}
