//! Configuration loading: a YAML or TOML file, then environment overrides, then strict
//! deserialisation (`deny_unknown_fields` on the caller's types), then validation that
//! reports every problem at once, each with the path of the offending key.
//!
//! Two stages, as STYLE.md asks: a `Raw*` struct that serde fills and a validated type
//! that makes bad states unrepresentable. [`load`] drives both through the [`Validate`]
//! trait, so a binary gets either a valid config or the full list of what is wrong.

use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// One problem with one key of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key (`failover.lease_ttl`, `regions[1]`), or `.` for the whole file.
    pub path: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything that is wrong with a configuration, reported together so that an operator
/// fixes the file once rather than once per error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConfigErrors {
    /// Where the configuration came from (file path or `<env>`).
    pub source_name: String,
    /// The problems, in the order found.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration in {}:", self.source_name)?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

/// Turns a deserialised raw config into a validated one, collecting every error.
pub trait Validate {
    /// The validated configuration type.
    type Valid;
    /// Checks every field; returns all problems, never just the first.
    fn validate(self) -> Result<Self::Valid, Vec<ConfigError>>;
}

/// File formats [`load`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// TOML (`.toml`).
    Toml,
}

impl Format {
    /// Picks the format from a file extension.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Ok(Self::Yaml),
            Some("toml") => Ok(Self::Toml),
            other => Err(ConfigError::new(
                ".",
                format!(
                    "{}: unknown config file extension {other:?}; use .yaml, .yml or .toml",
                    path.display()
                ),
            )),
        }
    }
}

/// Environment overrides: `PREFIX__A__B=value` sets key `a.b`; aliases map whole
/// variable names to keys (`REGION` -> `region`) for names existing deployments use.
///
/// Values are read as YAML scalars or flow collections, so `3` is a number, `true` a
/// bool, `30s` a string and `[a, b]` a list.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    prefix: Option<String>,
    aliases: Vec<(String, String)>,
}

impl EnvOverrides {
    /// Overrides from variables starting with `prefix__`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: Some(prefix.into()),
            aliases: Vec::new(),
        }
    }

    /// Also accept the variable `var` as the key at dotted `path`.
    #[must_use]
    pub fn alias(mut self, var: impl Into<String>, path: impl Into<String>) -> Self {
        self.aliases.push((var.into(), path.into()));
        self
    }

    fn apply(&self, root: &mut Value, vars: &[(String, String)], errors: &mut Vec<ConfigError>) {
        for (name, raw) in vars {
            let path: Option<Vec<String>> = self
                .aliases
                .iter()
                .find(|(v, _)| v == name)
                .map(|(_, p)| p.split('.').map(str::to_owned).collect())
                .or_else(|| {
                    let prefix = self.prefix.as_deref()?;
                    let rest = name.strip_prefix(prefix)?.strip_prefix("__")?;
                    Some(rest.split("__").map(str::to_ascii_lowercase).collect())
                });
            let Some(path) = path else { continue };
            let value = match serde_norway::from_str::<Value>(raw) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(ConfigError::new(
                        name.clone(),
                        format!("not a valid value: {e}"),
                    ));
                    continue;
                }
            };
            if let Err(msg) = set_path(root, &path, value) {
                errors.push(ConfigError::new(name.clone(), msg));
            }
        }
    }
}

fn set_path(root: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let mut cur = root;
    for (i, seg) in path.iter().enumerate() {
        if seg.is_empty() {
            return Err("empty key segment in variable name".into());
        }
        if !cur.is_object() {
            if cur.is_null() {
                *cur = Value::Object(serde_json::Map::new());
            } else {
                return Err(format!("{} is not a table", path[..i].join(".")));
            }
        }
        let Value::Object(map) = cur else {
            return Err("unreachable: not an object".into());
        };
        if i + 1 == path.len() {
            map.insert(seg.clone(), value);
            return Ok(());
        }
        cur = map.entry(seg.clone()).or_insert(Value::Null);
    }
    Ok(())
}

/// Where the configuration text comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on disk; the format follows from its extension.
    File(PathBuf),
    /// Text already in memory (tests, embedded defaults), with its format.
    Text {
        /// A name for error messages.
        name: String,
        /// The text.
        text: String,
        /// Its format.
        format: Format,
    },
    /// No file: the configuration comes from environment variables only.
    Empty,
}

/// Loads, overrides, deserialises and validates a configuration.
///
/// `vars` is the environment to read (pass `std::env::vars()` in binaries, a fixed list
/// in tests, so that tests never depend on the developer's shell).
pub fn load<R>(
    source: &Source,
    overrides: &EnvOverrides,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<R::Valid, ConfigErrors>
where
    R: DeserializeOwned + Validate,
{
    let (name, text, format) = match source {
        Source::File(path) => {
            let name = path.display().to_string();
            let format = Format::from_path(path).map_err(|e| single(&name, e))?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| single(&name, ConfigError::new(".", format!("cannot read: {e}"))))?;
            (name, text, Some(format))
        }
        Source::Text { name, text, format } => (name.clone(), text.clone(), Some(*format)),
        Source::Empty => ("<env>".to_owned(), String::new(), None),
    };
    let mut root = match format {
        None => Value::Object(serde_json::Map::new()),
        Some(f) => parse(&text, f).map_err(|e| single(&name, e))?,
    };
    if root.is_null() {
        root = Value::Object(serde_json::Map::new());
    }
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    let mut errors = Vec::new();
    overrides.apply(&mut root, &vars, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors {
            source_name: name,
            errors,
        });
    }
    let raw: R = serde_path_to_error::deserialize(root).map_err(|e| {
        let path = e.path().to_string();
        single(&name, ConfigError::new(path, e.into_inner().to_string()))
    })?;
    raw.validate().map_err(|errors| ConfigErrors {
        source_name: name,
        errors,
    })
}

fn single(name: &str, e: ConfigError) -> ConfigErrors {
    ConfigErrors {
        source_name: name.to_owned(),
        errors: vec![e],
    }
}

fn parse(text: &str, format: Format) -> Result<Value, ConfigError> {
    match format {
        Format::Yaml => serde_norway::from_str::<Value>(text).map_err(|e| {
            let at = e.location().map_or_else(
                || ".".to_owned(),
                |l| format!("line {} column {}", l.line(), l.column()),
            );
            ConfigError::new(at, format!("not valid YAML: {e}"))
        }),
        Format::Toml => toml::from_str::<Value>(text)
            .map_err(|e| ConfigError::new(".", format!("not valid TOML: {}", e.message()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::time::Duration;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawDemo {
        region: String,
        #[serde(with = "humantime_serde")]
        lease_ttl: Duration,
        #[serde(with = "humantime_serde")]
        renew: Duration,
        #[serde(default)]
        resolvers: Vec<String>,
        #[serde(default)]
        witness: Option<RawWitness>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawWitness {
        bucket: String,
    }

    #[derive(Debug, PartialEq)]
    struct Demo {
        region: String,
        lease_ttl: Duration,
        resolvers: usize,
        bucket: Option<String>,
    }

    impl Validate for RawDemo {
        type Valid = Demo;
        fn validate(self) -> Result<Demo, Vec<ConfigError>> {
            let mut errs = Vec::new();
            if self.region.is_empty() {
                errs.push(ConfigError::new("region", "must not be empty"));
            }
            if self.renew >= self.lease_ttl {
                errs.push(ConfigError::new("renew", "must be shorter than lease_ttl"));
            }
            if !self.resolvers.is_empty() && self.resolvers.len() != 3 {
                errs.push(ConfigError::new(
                    "resolvers",
                    "needs exactly 3 for a 2-of-3 quorum",
                ));
            }
            if errs.is_empty() {
                Ok(Demo {
                    region: self.region,
                    lease_ttl: self.lease_ttl,
                    resolvers: self.resolvers.len(),
                    bucket: self.witness.map(|w| w.bucket),
                })
            } else {
                Err(errs)
            }
        }
    }

    fn yaml(text: &str) -> Source {
        Source::Text {
            name: "test.yaml".into(),
            text: text.into(),
            format: Format::Yaml,
        }
    }

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn yaml_and_toml_load_the_same_config() {
        let y = load::<RawDemo>(
            &yaml("region: a\nlease_ttl: 30s\nrenew: 10s\n"),
            &EnvOverrides::default(),
            vec![],
        );
        let t = load::<RawDemo>(
            &Source::Text {
                name: "t.toml".into(),
                text: "region = \"a\"\nlease_ttl = \"30s\"\nrenew = \"10s\"\n".into(),
                format: Format::Toml,
            },
            &EnvOverrides::default(),
            vec![],
        );
        assert_eq!(y.expect("yaml"), t.expect("toml"));
    }

    #[test]
    fn unknown_keys_fail_with_their_path() {
        let err = load::<RawDemo>(
            &yaml("region: a\nlease_ttl: 30s\nrenew: 10s\nwitness: {bucket: b, buckit: c}\n"),
            &EnvOverrides::default(),
            vec![],
        )
        .expect_err("typo must fail");
        assert_eq!(err.errors.len(), 1);
        assert_eq!(err.errors[0].path, "witness.buckit");
        assert!(err.errors[0].message.contains("buckit"), "{err}");
    }

    #[test]
    fn every_validation_error_is_reported_at_once() {
        let err = load::<RawDemo>(
            &yaml("region: ''\nlease_ttl: 10s\nrenew: 10s\nresolvers: [a]\n"),
            &EnvOverrides::default(),
            vec![],
        )
        .expect_err("invalid");
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["region", "renew", "resolvers"], "{err}");
        let shown = err.to_string();
        assert!(
            shown.contains("test.yaml") && shown.contains("renew: must be shorter"),
            "{shown}"
        );
    }

    #[test]
    fn env_overrides_beat_the_file_and_aliases_work() {
        let ov = EnvOverrides::with_prefix("SRE").alias("REGION", "region");
        let got = load::<RawDemo>(
            &yaml("region: a\nlease_ttl: 30s\nrenew: 10s\n"),
            &ov,
            vars(&[
                ("REGION", "b"),
                ("SRE__LEASE_TTL", "45s"),
                ("SRE__WITNESS__BUCKET", "lease"),
                ("OTHER", "x"),
                ("SRE__RESOLVERS", "[r1, r2, r3]"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            got,
            Demo {
                region: "b".into(),
                lease_ttl: Duration::from_secs(45),
                resolvers: 3,
                bucket: Some("lease".into())
            }
        );
    }

    #[test]
    fn env_only_config_works_without_a_file() {
        let got = load::<RawDemo>(
            &Source::Empty,
            &EnvOverrides::with_prefix("X"),
            vars(&[
                ("X__REGION", "a"),
                ("X__LEASE_TTL", "30s"),
                ("X__RENEW", "5s"),
            ]),
        );
        assert_eq!(got.expect("valid").region, "a");
    }

    #[test]
    fn bad_values_and_bad_files_are_typed_errors() {
        let err = load::<RawDemo>(
            &yaml("region: a\nlease_ttl: soon\nrenew: 10s\n"),
            &EnvOverrides::default(),
            vec![],
        )
        .expect_err("bad duration");
        assert_eq!(err.errors[0].path, "lease_ttl", "{err}");
        let err = load::<RawDemo>(
            &yaml("region: [unclosed\n"),
            &EnvOverrides::default(),
            vec![],
        )
        .expect_err("bad yaml");
        assert!(err.errors[0].message.contains("not valid YAML"), "{err}");
        let err = load::<RawDemo>(
            &Source::File("/nonexistent/x.yaml".into()),
            &EnvOverrides::default(),
            vec![],
        )
        .expect_err("missing");
        assert!(err.errors[0].message.contains("cannot read"), "{err}");
        let err = load::<RawDemo>(
            &Source::File("x.ini".into()),
            &EnvOverrides::default(),
            vec![],
        )
        .expect_err("ext");
        assert!(
            err.errors[0]
                .message
                .contains("unknown config file extension"),
            "{err}"
        );
        let err = load::<RawDemo>(
            &yaml("region: a\n"),
            &EnvOverrides::with_prefix("S"),
            vars(&[("S__REGION__X", "1")]),
        )
        .expect_err("scalar");
        assert!(err.errors[0].message.contains("not a table"), "{err}");
    }
}
