//! The six kinds of data a collector can report, and their three spellings.
//!
//! A category shows up as a one/two-letter code in `report()` dicts (`"M"`, `"CO"`),
//! as a lowercase name in write-API paths (`/v1/write/custom_object`) and in config
//! (`categories = ["metric"]`). Keeping all spellings in one table means the HTTP
//! routes, the worker frames and the config can never disagree about them.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What kind of data a point is; decides which rules apply to it (see `rules`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Metric,
    Logging,
    Object,
    CustomObject,
    Keyevent,
    Rum,
}

/// (category, report() code, URL/config name) — the single source of truth.
const TABLE: [(Category, &str, &str); 6] = [
    (Category::Metric, "M", "metric"),
    (Category::Logging, "L", "logging"),
    (Category::Object, "O", "object"),
    (Category::CustomObject, "CO", "custom_object"),
    (Category::Keyevent, "E", "keyevent"),
    (Category::Rum, "R", "rum"),
];

impl Category {
    /// Every category, in a stable order (the order of `report()`'s keys in the docs).
    pub const ALL: [Category; 6] = [
        Category::Metric,
        Category::Logging,
        Category::Object,
        Category::CustomObject,
        Category::Keyevent,
        Category::Rum,
    ];

    /// The category for a `report()` key: `M`, `L`, `O`, `CO`, `E`, `R` (case-sensitive,
    /// as the shim only ever sends upper case).
    pub fn from_code(code: &str) -> Option<Category> {
        TABLE
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|(cat, _, _)| *cat)
    }

    /// The category for a write-API path segment or config value such as `custom_object`.
    ///
    /// `metrics` is accepted as an alias of `metric` because DataKit still serves the
    /// deprecated `/v1/write/metrics` path and old scripts may post there.
    pub fn from_name(name: &str) -> Option<Category> {
        if name == "metrics" {
            return Some(Category::Metric);
        }
        TABLE
            .iter()
            .find(|(_, _, n)| *n == name)
            .map(|(cat, _, _)| *cat)
    }

    /// The lowercase name used in URLs, config, logs and JSON output.
    pub fn name(self) -> &'static str {
        TABLE[self.index()].2
    }

    /// The `report()` key for this category.
    pub fn code(self) -> &'static str {
        TABLE[self.index()].1
    }

    /// The category's code in the disk buffer's record frame (docs/BUFFER.md). Fixed
    /// forever, whatever order [`Category::ALL`] or the enum is written in: a buffer
    /// written by one release is read by the next. 0 is never a category.
    pub fn buffer_code(self) -> u8 {
        match self {
            Category::Metric => 1,
            Category::Logging => 2,
            Category::Object => 3,
            Category::CustomObject => 4,
            Category::Keyevent => 5,
            Category::Rum => 6,
        }
    }

    /// The category whose [`Category::buffer_code`] is `code`.
    pub fn from_buffer_code(code: u8) -> Option<Category> {
        match code {
            1 => Some(Category::Metric),
            2 => Some(Category::Logging),
            3 => Some(Category::Object),
            4 => Some(Category::CustomObject),
            5 => Some(Category::Keyevent),
            6 => Some(Category::Rum),
            _ => None,
        }
    }

    fn index(self) -> usize {
        // TABLE is written in declaration order; the test below keeps it that way.
        self as usize
    }

    /// `"metric, logging, ..."`, for error messages that must list the valid names.
    fn valid_names() -> String {
        let names: Vec<&str> = TABLE.iter().map(|(_, _, n)| *n).collect();
        names.join(", ")
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Category {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl Visitor<'_> for NameVisitor {
            type Value = Category;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a category name ({})", Category::valid_names())
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Category, E> {
                Category::from_name(v).ok_or_else(|| {
                    E::custom(format!(
                        "unknown category {v:?}, expected one of: {}",
                        Category::valid_names()
                    ))
                })
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_declaration_order() {
        for (i, (cat, _, _)) in TABLE.iter().enumerate() {
            assert_eq!(*cat as usize, i, "{cat:?} out of place in TABLE");
            assert_eq!(Category::ALL[i], *cat);
        }
    }

    #[test]
    fn codes_and_names_round_trip() {
        let expected = [
            (Category::Metric, "M", "metric"),
            (Category::Logging, "L", "logging"),
            (Category::Object, "O", "object"),
            (Category::CustomObject, "CO", "custom_object"),
            (Category::Keyevent, "E", "keyevent"),
            (Category::Rum, "R", "rum"),
        ];
        for (cat, code, name) in expected {
            assert_eq!(cat.code(), code);
            assert_eq!(cat.name(), name);
            assert_eq!(cat.to_string(), name);
            assert_eq!(Category::from_code(code), Some(cat));
            assert_eq!(Category::from_name(name), Some(cat));
        }
    }

    #[test]
    fn buffer_codes_are_fixed_and_round_trip() {
        // These numbers are on disk in every buffer: never change one.
        let expected = [
            (Category::Metric, 1),
            (Category::Logging, 2),
            (Category::Object, 3),
            (Category::CustomObject, 4),
            (Category::Keyevent, 5),
            (Category::Rum, 6),
        ];
        for (cat, code) in expected {
            assert_eq!(cat.buffer_code(), code);
            assert_eq!(Category::from_buffer_code(code), Some(cat));
        }
        assert_eq!(Category::from_buffer_code(0), None);
        assert_eq!(Category::from_buffer_code(7), None);
        assert_eq!(Category::from_buffer_code(255), None);
    }

    #[test]
    fn unknown_spellings_are_rejected() {
        assert_eq!(Category::from_code("m"), None);
        assert_eq!(Category::from_code("X"), None);
        assert_eq!(Category::from_code("metric"), None);
        assert_eq!(Category::from_name("M"), None);
        assert_eq!(Category::from_name("Metric"), None);
        assert_eq!(Category::from_name("tracing"), None);
        assert_eq!(Category::from_name(""), None);
    }

    #[test]
    fn deprecated_metrics_path_is_an_alias() {
        assert_eq!(Category::from_name("metrics"), Some(Category::Metric));
        assert_eq!(Category::Metric.name(), "metric");
    }

    #[test]
    fn serde_uses_names() {
        assert_eq!(
            serde_json::to_string(&Category::CustomObject).unwrap(),
            "\"custom_object\""
        );
        let cats: Vec<Category> = serde_json::from_str(r#"["metric","keyevent"]"#).unwrap();
        assert_eq!(cats, vec![Category::Metric, Category::Keyevent]);
    }

    #[test]
    fn serde_error_lists_valid_names() {
        let err = serde_json::from_str::<Category>("\"metricz\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"metricz\""), "{err}");
        assert!(
            err.contains("metric, logging, object, custom_object, keyevent, rum"),
            "{err}"
        );
        let err = serde_json::from_str::<Category>("3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("custom_object"), "{err}");
    }
}
