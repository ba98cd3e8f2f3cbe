//! A small evaluator of CloudFormation templates for the tests that read them: given
//! parameter values, it resolves what CloudFormation would (parameters, pseudo
//! parameters, conditions, mappings, `Fn::Sub`, `Fn::If`, `Fn::Join`, `Fn::Split`,
//! `Fn::Select`, `Fn::FindInMap`) and evaluates the `Rules` section with the rule
//! functions.
//!
//! The local AWS emulator evaluates neither Rules nor IAM conditions, so this is how the
//! tests check what a template refuses and what its policies grant. Values the
//! evaluator cannot know stand as placeholders: `{Ref:Name}` for a resource's id,
//! `{GetAtt:Name.Attribute}` for an attribute, except a log group's `Arn`, which is
//! computed from its name as CloudFormation does.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use serde_yaml_ng::Value as Yaml;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

/// The functions CloudFormation accepts in the Rules section.
pub const RULE_FUNCTIONS: [&str; 11] = [
    "Fn::And",
    "Fn::Or",
    "Fn::Not",
    "Fn::Equals",
    "Fn::Contains",
    "Fn::EachMemberEquals",
    "Fn::EachMemberIn",
    "Fn::RefAll",
    "Fn::ValueOf",
    "Fn::ValueOfAll",
    "Ref",
];

/// What `AWS::NoValue` resolves to; removed from lists and maps.
const NO_VALUE: &str = "\u{0}AWS::NoValue";

/// A template with a set of parameter values, as one stack would see it.
pub struct Stack<'a> {
    template: &'a Yaml,
    name: String,
    parameters: BTreeMap<String, Json>,
}

/// One statement of an IAM policy, with its lists normalised.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: String,
    pub effect: String,
    pub actions: Vec<String>,
    pub not_action: bool,
    pub resources: Vec<String>,
    pub not_resource: bool,
    pub condition: Json,
}

impl<'a> Stack<'a> {
    /// The stack `name` of `template` with the parameters' defaults, overridden by
    /// `values`. Fails on an unknown parameter, or a required one left out.
    pub fn new(template: &'a Yaml, name: &str, values: &[(&str, &str)]) -> Result<Self, String> {
        let declared =
            template["Parameters"].as_mapping().ok_or("the template has no Parameters")?;
        let mut parameters = BTreeMap::new();
        for (key, declaration) in declared {
            let key = key.as_str().ok_or("a parameter name is not a string")?;
            let given = values.iter().find(|(name, _)| *name == key).map(|(_, value)| *value);
            let text = match (given, &declaration["Default"]) {
                (Some(value), _) => value.to_owned(),
                (None, Yaml::Null) => return Err(format!("parameter {key} has no default")),
                (None, default) => scalar(default),
            };
            let value = if declaration["Type"].as_str() == Some("CommaDelimitedList") {
                Json::Array(text.split(',').map(|item| json!(item)).collect())
            } else {
                json!(text)
            };
            parameters.insert(key.to_owned(), value);
        }
        if let Some((unknown, _)) = values.iter().find(|(key, _)| !parameters.contains_key(*key)) {
            return Err(format!("the template has no parameter {unknown}"));
        }
        Ok(Stack { template, name: name.to_owned(), parameters })
    }

    /// The value of a condition of the Conditions section.
    pub fn condition(&self, name: &str) -> bool {
        let condition = &self.template["Conditions"][name];
        assert!(!condition.is_null(), "no condition {name}");
        truthy(&self.eval(condition))
    }

    /// The Rules whose assertions fail, as (rule, AssertDescription).
    pub fn failed_rules(&self) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let Some(rules) = self.template["Rules"].as_mapping() else { return failed };
        for (name, rule) in rules {
            let name = name.as_str().unwrap_or_default();
            if !rule["RuleCondition"].is_null() && !truthy(&self.eval(&rule["RuleCondition"])) {
                continue;
            }
            for assertion in rule["Assertions"].as_sequence().into_iter().flatten() {
                if !truthy(&self.eval(&assertion["Assert"])) {
                    let description = assertion["AssertDescription"].as_str().unwrap_or_default();
                    failed.push((name.to_owned(), description.to_owned()));
                }
            }
        }
        failed
    }

    /// A resource's properties, or `None` when its condition leaves it out.
    pub fn resource(&self, name: &str) -> Option<Json> {
        let resource = &self.template["Resources"][name];
        assert!(!resource.is_null(), "no resource {name}");
        if let Some(condition) = resource["Condition"].as_str()
            && !self.condition(condition)
        {
            return None;
        }
        Some(self.eval(&resource["Properties"]))
    }

    /// The names of the resources of a type that this stack creates.
    pub fn resources_of_type(&self, kind: &str) -> Vec<String> {
        self.template["Resources"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter(|(_, resource)| resource["Type"].as_str() == Some(kind))
            .filter_map(|(name, _)| name.as_str().map(str::to_owned))
            .filter(|name| self.resource(name).is_some())
            .collect()
    }

    /// Resolves every intrinsic function in `value`.
    pub fn eval(&self, value: &Yaml) -> Json {
        match value {
            Yaml::Null => Json::Null,
            Yaml::Bool(flag) => json!(flag),
            Yaml::Number(_) | Yaml::String(_) => json!(scalar(value)),
            Yaml::Sequence(items) => Json::Array(
                items
                    .iter()
                    .map(|item| self.eval(item))
                    .filter(|item| !is_no_value(item))
                    .collect(),
            ),
            Yaml::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let tag = tag.trim_start_matches('!');
                let function = match tag {
                    "Ref" | "Condition" => tag.to_owned(),
                    other => format!("Fn::{other}"),
                };
                self.function(&function, &tagged.value)
            }
            Yaml::Mapping(mapping) => {
                if mapping.len() == 1 {
                    let (key, argument) = mapping.iter().next().expect("one entry");
                    if let Some(key) = key.as_str()
                        && (key == "Ref" || key == "Condition" || key.starts_with("Fn::"))
                    {
                        return self.function(key, argument);
                    }
                }
                let mut object = serde_json::Map::new();
                for (key, item) in mapping {
                    let item = self.eval(item);
                    if !is_no_value(&item) {
                        object.insert(scalar(key), item);
                    }
                }
                Json::Object(object)
            }
        }
    }

    fn function(&self, function: &str, argument: &Yaml) -> Json {
        let args = || argument.as_sequence().cloned().unwrap_or_default();
        match function {
            "Ref" => self.reference(argument.as_str().expect("Ref takes a name")),
            "Condition" => json!(self.condition(argument.as_str().expect("a condition name"))),
            "Fn::Sub" => self.sub(argument),
            "Fn::If" => {
                let args = args();
                let name = args[0].as_str().expect("Fn::If takes a condition name");
                self.eval(&args[if self.condition(name) { 1 } else { 2 }])
            }
            "Fn::Equals" => {
                let args = args();
                json!(text(&self.eval(&args[0])) == text(&self.eval(&args[1])))
            }
            "Fn::Not" => json!(!truthy(&self.eval(&args()[0]))),
            "Fn::And" => json!(args().iter().all(|item| truthy(&self.eval(item)))),
            "Fn::Or" => json!(args().iter().any(|item| truthy(&self.eval(item)))),
            "Fn::Join" => {
                let args = args();
                let separator = scalar(&args[0]);
                let items = list(&self.eval(&args[1]));
                json!(items.join(&separator))
            }
            "Fn::Split" => {
                let args = args();
                let separator = scalar(&args[0]);
                let whole = text(&self.eval(&args[1]));
                Json::Array(whole.split(separator.as_str()).map(|item| json!(item)).collect())
            }
            "Fn::Select" => {
                let args = args();
                let index: usize = text(&self.eval(&args[0])).parse().expect("a numeric index");
                let items = self.eval(&args[1]);
                let items = items.as_array().expect("Fn::Select takes a list");
                items.get(index).cloned().unwrap_or_else(|| {
                    panic!("Fn::Select cannot select index {index} of {items:?}")
                })
            }
            "Fn::FindInMap" => {
                let args = args();
                let map = scalar(&args[0]);
                let top = text(&self.eval(&args[1]));
                let second = text(&self.eval(&args[2]));
                let found = &self.template["Mappings"][map.as_str()][top.as_str()][second.as_str()];
                assert!(!found.is_null(), "Unable to get mapping for {map}::{top}::{second}");
                self.eval(found)
            }
            "Fn::GetAtt" => {
                let (resource, attribute) = match argument {
                    Yaml::String(dotted) => dotted.split_once('.').expect("Resource.Attribute"),
                    _ => {
                        let args = argument.as_sequence().expect("a list");
                        (args[0].as_str().expect("a name"), args[1].as_str().expect("a name"))
                    }
                };
                json!(self.attribute(resource, attribute))
            }
            "Fn::GetAZs" => {
                json!([format!("{REGION}a"), format!("{REGION}b"), format!("{REGION}c")])
            }
            "Fn::Base64" => self.eval(argument),
            "Fn::Contains" => {
                let args = args();
                let value = text(&self.eval(&args[1]));
                json!(list(&self.eval(&args[0])).contains(&value))
            }
            "Fn::EachMemberEquals" => {
                let args = args();
                let value = text(&self.eval(&args[1]));
                json!(list(&self.eval(&args[0])).iter().all(|item| *item == value))
            }
            "Fn::EachMemberIn" => {
                let args = args();
                let allowed = list(&self.eval(&args[1]));
                json!(list(&self.eval(&args[0])).iter().all(|item| allowed.contains(item)))
            }
            other => panic!("the evaluator does not know {other}"),
        }
    }

    fn reference(&self, name: &str) -> Json {
        match name {
            "AWS::Region" => json!(REGION),
            "AWS::AccountId" => json!(ACCOUNT_ID),
            "AWS::Partition" => json!("aws"),
            "AWS::URLSuffix" => json!("amazonaws.com"),
            "AWS::StackName" => json!(self.name),
            "AWS::StackId" => json!(self.stack_id()),
            "AWS::NoValue" => json!(NO_VALUE),
            parameter if self.parameters.contains_key(parameter) => {
                self.parameters[parameter].clone()
            }
            resource => {
                assert!(
                    !self.template["Resources"][resource].is_null(),
                    "Ref to {resource}, which is neither a parameter nor a resource"
                );
                json!(format!("{{Ref:{resource}}}"))
            }
        }
    }

    pub fn stack_id(&self) -> String {
        format!("arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{}/id", self.name)
    }

    fn attribute(&self, resource: &str, attribute: &str) -> String {
        let declared = &self.template["Resources"][resource];
        assert!(!declared.is_null(), "Fn::GetAtt of {resource}, which is not a resource");
        if declared["Type"].as_str() == Some("AWS::Logs::LogGroup") && attribute == "Arn" {
            let name = text(&self.eval(&declared["Properties"]["LogGroupName"]));
            return format!("arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}:*");
        }
        format!("{{GetAtt:{resource}.{attribute}}}")
    }

    fn sub(&self, argument: &Yaml) -> Json {
        let (template, variables) = match argument {
            Yaml::Sequence(args) => {
                let variables: BTreeMap<String, Json> = args[1]
                    .as_mapping()
                    .expect("Fn::Sub variables")
                    .iter()
                    .map(|(key, value)| (scalar(key), self.eval(value)))
                    .collect();
                (scalar(&args[0]), variables)
            }
            other => (scalar(other), BTreeMap::new()),
        };
        let mut out = String::new();
        let mut rest = template.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("a closing brace") + start;
            let name = &rest[start + 2..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(&text(value));
            } else if let Some((resource, attribute)) =
                name.split_once('.').filter(|(resource, _)| !resource.starts_with("AWS::"))
            {
                out.push_str(&self.attribute(resource, attribute));
            } else {
                out.push_str(&text(&self.reference(name)));
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        json!(out)
    }
}

/// Every statement of a resolved policy document.
pub fn statements(document: &Json) -> Vec<Statement> {
    let as_list = |value: &Json| -> Vec<String> {
        match value {
            Json::Null => Vec::new(),
            Json::Array(items) => items.iter().map(text).collect(),
            other => vec![text(other)],
        }
    };
    let listed = match &document["Statement"] {
        Json::Array(items) => items.clone(),
        single => vec![single.clone()],
    };
    listed
        .iter()
        .map(|statement| Statement {
            sid: text(&statement["Sid"]),
            effect: text(&statement["Effect"]),
            not_action: !statement["NotAction"].is_null(),
            actions: as_list(if statement["NotAction"].is_null() {
                &statement["Action"]
            } else {
                &statement["NotAction"]
            }),
            not_resource: !statement["NotResource"].is_null(),
            resources: as_list(if statement["NotResource"].is_null() {
                &statement["Resource"]
            } else {
                &statement["NotResource"]
            }),
            condition: statement["Condition"].clone(),
        })
        .collect()
}

/// IAM's wildcard match: `*` is any run of characters, `?` any one; actions compare
/// without regard to case.
pub fn wildcard_match(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let fold = |text: &str| if ignore_case { text.to_ascii_lowercase() } else { text.to_owned() };
    let pattern: Vec<char> = fold(pattern).chars().collect();
    let value: Vec<char> = fold(value).chars().collect();
    // Classic glob matching with backtracking to the last star.
    let (mut p, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == value[v]) {
            p += 1;
            v += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, v));
            p += 1;
        } else if let Some((star_p, star_v)) = star {
            p = star_p + 1;
            v = star_v + 1;
            star = Some((star_p, star_v + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

fn is_no_value(value: &Json) -> bool {
    value.as_str() == Some(NO_VALUE)
}

/// A condition's or rule's result.
fn truthy(value: &Json) -> bool {
    match value {
        Json::Bool(flag) => *flag,
        other => panic!("expected true or false, got {other}"),
    }
}

/// A resolved value as CloudFormation's strings.
pub fn text(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        Json::Null => String::new(),
        Json::Array(_) | Json::Object(_) => panic!("expected a string, got {value}"),
        other => other.to_string(),
    }
}

fn list(value: &Json) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().map(text).collect())
        .unwrap_or_else(|| vec![text(value)])
}

/// A YAML scalar as the string CloudFormation sees.
fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(text) => text.clone(),
        Yaml::Number(number) => number.to_string(),
        Yaml::Bool(flag) => flag.to_string(),
        Yaml::Null => String::new(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> Yaml {
        serde_yaml_ng::from_str(text).expect("YAML")
    }

    #[test]
    fn resolves_parameters_conditions_and_functions_in_both_forms() {
        let template = template(
            r#"
Parameters:
  Name: {Type: String, Default: ""}
  Items: {Type: CommaDelimitedList, Default: "a,b"}
  Size: {Type: Number, Default: 3}
Conditions:
  HasName: !Not [!Equals [!Ref Name, ""]]
  Both: {"Fn::And": [{Condition: HasName}, !Equals [!Ref Size, 3]]}
Mappings:
  Map: {us-east-1: {key: mapped}}
Resources:
  Group:
    Type: AWS::Logs::LogGroup
    Properties: {LogGroupName: !Sub "/x/${AWS::StackName}"}
  Thing:
    Type: AWS::Some::Thing
    Condition: HasName
    Properties:
      Sub: !Sub ["${A}-${Name}-${AWS::Region}-${!Literal}", {A: !Select [1, !Ref Items]}]
      If: !If [Both, yes, !Ref AWS::NoValue]
      Join: {"Fn::Join": ["+", !Split [",", "x,y"]]}
      Map: !FindInMap [Map, !Ref AWS::Region, key]
      Arn: !GetAtt Group.Arn
      List: [one, !Ref AWS::NoValue]
"#,
        );
        let stack = Stack::new(&template, "st", &[]).expect("defaults");
        assert!(!stack.condition("HasName"));
        assert_eq!(stack.resource("Thing"), None);
        let stack = Stack::new(&template, "st", &[("Name", "n")]).expect("values");
        assert!(stack.condition("Both"));
        assert_eq!(
            stack.resource("Thing"),
            Some(json!({
                "Sub": "b-n-us-east-1-${Literal}",
                "If": "yes",
                "Join": "x+y",
                "Map": "mapped",
                "Arn": "arn:aws:logs:us-east-1:123456789012:log-group:/x/st:*",
                "List": ["one"],
            }))
        );
        assert!(Stack::new(&template, "st", &[("Nope", "x")]).is_err());
    }

    #[test]
    fn evaluates_rules_with_the_rule_functions() {
        let template = template(
            r#"
Parameters:
  A: {Type: String, Default: "x"}
  L: {Type: CommaDelimitedList, Default: ""}
Rules:
  AIsXOrY:
    Assertions:
      - Assert: !Contains [[x, y], !Ref A]
        AssertDescription: A must be x or y.
  ListNeededForY:
    RuleCondition: !Equals [!Ref A, y]
    Assertions:
      - Assert: !Not [!EachMemberEquals [!Ref L, ""]]
        AssertDescription: Set L.
"#,
        );
        let failed = |values: &[(&str, &str)]| {
            Stack::new(&template, "st", values).expect("values").failed_rules()
        };
        assert!(failed(&[]).is_empty());
        assert_eq!(failed(&[("A", "z")]), [("AIsXOrY".to_owned(), "A must be x or y.".to_owned())]);
        assert_eq!(failed(&[("A", "y")]), [("ListNeededForY".to_owned(), "Set L.".to_owned())]);
        assert!(failed(&[("A", "y"), ("L", "a")]).is_empty());
    }

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard_match("iam:*", "iam:CreateRole", true));
        assert!(wildcard_match("IAM:create*", "iam:CreateRole", true));
        assert!(!wildcard_match("iam:Create?", "iam:CreateRole", true));
        assert!(wildcard_match(
            "arn:aws:logs:*:1:log-group:/b/s-*/*",
            "arn:aws:logs:r:1:log-group:/b/s-1/x:*",
            false
        ));
        assert!(!wildcard_match("arn:*:role/a-*", "arn:aws:iam::1:role/b-1", false));
        assert!(wildcard_match("*", "", false));
    }
}
