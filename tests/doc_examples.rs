//! The Python examples of docs/COLLECTORS.md run through `pythond check`, so the
//! documentation cannot drift from what the shim and the point rules accept.

mod common;

use common::{parse_points, Home};

const DOC: &str = include_str!("../docs/COLLECTORS.md");

/// The ```python blocks of the page, in order.
fn python_blocks() -> Vec<&'static str> {
    DOC.split("```python\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect()
}

fn block_starting(prefix: &str) -> &'static str {
    python_blocks()
        .into_iter()
        .find(|b| b.starts_with(prefix))
        .unwrap_or_else(|| panic!("docs/COLLECTORS.md has no python block starting {prefix:?}"))
}

#[test]
fn the_first_collector_reports_what_the_page_says() {
    let home = Home::new();
    home.write(
        "python.d/mytest/mytest.py",
        block_starting("from datakit_framework import DataKitFramework"),
    );
    let (code, stdout, stderr) = home.check(&["python.d/mytest"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let points = parse_points(&stdout);
    let orders = common::the_point(&points, "metric", "orders");
    assert_eq!(orders["fields"]["count"], 3);
}

#[test]
fn every_report_and_feed_example_is_accepted() {
    let home = Home::new();
    // The report() and feed_*() examples are method bodies: wrap them in run().
    let body: String = [block_starting("import time"), block_starting("# Metric")]
        .concat()
        .lines()
        .map(|l| format!("        {l}\n"))
        .collect();
    home.write(
        "python.d/examples/examples.py",
        &format!(
            "from datakit_framework import DataKitFramework\n\nclass Examples(DataKitFramework):\n    name = \"examples\"\n\n    def run(self):\n{body}"
        ),
    );
    let (code, stdout, stderr) = home.check(&["python.d/examples"]);
    assert_eq!(code, 0, "a documented example fails:\n{stdout}\n{stderr}");
    let points = parse_points(&stdout);
    for category in [
        "metric",
        "logging",
        "object",
        "custom_object",
        "keyevent",
        "rum",
    ] {
        assert!(
            points.iter().any(|p| p["category"] == category),
            "no {category} example accepted: {points:#?}"
        );
    }
    // Three keyevent helpers plus the report() example.
    let events: Vec<_> = points
        .iter()
        .filter(|p| p["category"] == "keyevent")
        .collect();
    assert_eq!(events.len(), 4, "{events:#?}");
}

#[test]
fn the_unit_test_recipe_captures_reports() {
    let home = Home::new();
    home.write(
        "mytest.py",
        block_starting("from datakit_framework import DataKitFramework"),
    );
    let recipe = block_starting("import sys; sys.path.insert(0, \"/usr/lib/pythond/python\")")
        .replace(
            "/usr/lib/pythond/python",
            &format!("{}/python", env!("CARGO_MANIFEST_DIR")),
        );
    let (code, stdout, stderr) = common::run_to_end({
        let mut python = std::process::Command::new("python3");
        python.arg("-c").arg(recipe).current_dir(home.path());
        python
    });
    assert_eq!(code, 0, "the recipe fails:\n{stdout}\n{stderr}");
}
