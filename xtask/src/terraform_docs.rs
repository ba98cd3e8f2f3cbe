//! `cargo xtask terraform-docs`: the inputs and outputs tables of `terraform/README.md`,
//! generated from `variables.tf` and `outputs.tf`.
//!
//! The README is written by hand except between the `BEGIN_TF_DOCS` and `END_TF_DOCS`
//! markers, which this task rewrites (the markers terraform-docs uses, so the file
//! reads the same to people who know that tool). `--check` changes nothing and fails
//! when the tables differ from what the module's files give; `cargo xtask ci` runs it.

use std::path::Path;

use anyhow::{Context, bail};
use hcl::{Body, Expression};

use crate::flags::TerraformDocsArgs;
use crate::project;

/// The module's README, relative to the project root.
pub(crate) const README: &str = "terraform/README.md";
const BEGIN_MARKER: &str = "<!-- BEGIN_TF_DOCS -->";
const END_MARKER: &str = "<!-- END_TF_DOCS -->";

pub(crate) fn run(args: &TerraformDocsArgs) -> anyhow::Result<()> {
    if args.check {
        return check();
    }
    let root = project::root();
    let current = read(&root.join(README))?;
    let updated = update_readme(&current, &tables(&root.join("terraform"))?)?;
    if updated == current {
        eprintln!("{README} is up to date");
        return Ok(());
    }
    std::fs::write(root.join(README), updated)
        .with_context(|| format!("failed to write {README}"))?;
    eprintln!("updated the inputs and outputs tables of {README}");
    Ok(())
}

/// Fails when the README's tables are not what the module's files give.
pub(crate) fn check() -> anyhow::Result<()> {
    let root = project::root();
    let current = read(&root.join(README))?;
    let expected = update_readme(&current, &tables(&root.join("terraform"))?)?;
    if expected != current {
        bail!(
            "{README} is out of date with terraform/variables.tf and terraform/outputs.tf: run `cargo xtask terraform-docs`"
        );
    }
    eprintln!("{README} matches variables.tf and outputs.tf");
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))
}

fn parse(path: &Path) -> anyhow::Result<Body> {
    hcl::parse(&read(path)?).with_context(|| format!("{} is not valid HCL", path.display()))
}

/// The generated part of the README: the inputs, then the outputs.
pub(crate) fn tables(module: &Path) -> anyhow::Result<String> {
    let variables = parse(&module.join("variables.tf"))?;
    let outputs = parse(&module.join("outputs.tf"))?;
    let mut text = String::from(
        "## Inputs\n\n| Name | Description | Type | Default | Required |\n|------|-------------|------|---------|:--------:|\n",
    );
    for block in variables.blocks().filter(|block| block.identifier() == "variable") {
        let name = label(block)?;
        let body = block.body();
        let description = string_attribute(body, "description")
            .with_context(|| format!("variable {name} has no description"))?;
        let kind = attribute(body, "type").map_or_else(|| "any".to_owned(), ToString::to_string);
        let (default, required) = match attribute(body, "default") {
            Some(default) => (format!("`{}`", cell(&default.to_string())), "no"),
            None => ("n/a".to_owned(), "yes"),
        };
        text.push_str(&format!(
            "| <a name=\"input_{name}\"></a> [{name}](#input_{name}) | {} | `{}` | {default} | {required} |\n",
            cell(&description),
            cell(&kind),
        ));
    }
    text.push_str("\n## Outputs\n\n| Name | Description |\n|------|-------------|\n");
    for block in outputs.blocks().filter(|block| block.identifier() == "output") {
        let name = label(block)?;
        let description = string_attribute(block.body(), "description")
            .with_context(|| format!("output {name} has no description"))?;
        text.push_str(&format!(
            "| <a name=\"output_{name}\"></a> [{name}](#output_{name}) | {} |\n",
            cell(&description)
        ));
    }
    Ok(text)
}

/// The README with `tables` between the markers.
pub(crate) fn update_readme(readme: &str, tables: &str) -> anyhow::Result<String> {
    let (Some(begin), Some(end)) = (readme.find(BEGIN_MARKER), readme.find(END_MARKER)) else {
        bail!("{README} lacks the {BEGIN_MARKER} and {END_MARKER} markers");
    };
    if end < begin {
        bail!("{README} has {END_MARKER} before {BEGIN_MARKER}");
    }
    let head = &readme[..begin + BEGIN_MARKER.len()];
    let tail = &readme[end..];
    Ok(format!("{head}\n{tables}{tail}"))
}

fn label(block: &hcl::Block) -> anyhow::Result<String> {
    match block.labels() {
        [label] => Ok(label.as_str().to_owned()),
        labels => bail!("a {} block with labels {labels:?}", block.identifier()),
    }
}

fn attribute<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|attribute| attribute.key() == key).map(|attribute| attribute.expr())
}

fn string_attribute(body: &Body, key: &str) -> Option<String> {
    match attribute(body, key) {
        Some(Expression::String(text)) => Some(text.clone()),
        _ => None,
    }
}

/// A value made safe for one Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_tables_are_current() {
        check().expect("run `cargo xtask terraform-docs`");
    }

    #[test]
    fn tables_list_every_variable_and_output_with_its_type_and_default() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(
            dir.path().join("variables.tf"),
            "variable \"name\" {\n  description = \"A | name.\"\n  type = string\n  default = \"x\"\n}\n\nvariable \"needed\" {\n  description = \"Required.\"\n  type = list(string)\n}\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("outputs.tf"),
            "output \"id\" {\n  description = \"The id.\"\n  value = 1\n}\n",
        )
        .expect("write");
        let tables = tables(dir.path()).expect("tables");
        assert!(tables.contains(
            "| <a name=\"input_name\"></a> [name](#input_name) | A \\| name. | `string` | `\"x\"` | no |\n"
        ), "{tables}");
        assert!(tables.contains(
            "| <a name=\"input_needed\"></a> [needed](#input_needed) | Required. | `list(string)` | n/a | yes |\n"
        ), "{tables}");
        assert!(
            tables.contains("| <a name=\"output_id\"></a> [id](#output_id) | The id. |\n"),
            "{tables}"
        );
    }

    #[test]
    fn a_stale_readme_is_found_and_rewritten_between_the_markers_only() {
        let readme =
            format!("# Module\n\nIntro.\n\n{BEGIN_MARKER}\nold tables\n{END_MARKER}\n\nAfter.\n");
        let updated = update_readme(&readme, "new tables\n").expect("markers");
        assert_eq!(
            updated,
            format!("# Module\n\nIntro.\n\n{BEGIN_MARKER}\nnew tables\n{END_MARKER}\n\nAfter.\n")
        );
        assert_eq!(update_readme(&updated, "new tables\n").expect("markers"), updated);
        let error = update_readme("# no markers\n", "x").expect_err("no markers");
        assert!(error.to_string().contains("lacks the"), "{error}");
    }

    #[test]
    fn a_variable_without_a_description_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(
            dir.path().join("variables.tf"),
            "variable \"bare\" {\n  type = string\n}\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("outputs.tf"), "").expect("write");
        let error = tables(dir.path()).expect_err("no description");
        assert_eq!(error.to_string(), "variable bare has no description");
    }
}
