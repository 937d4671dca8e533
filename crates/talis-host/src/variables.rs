//! Spin variables: application variables (`[variables]`) get their values from the
//! `SPIN_VARIABLE_<NAME>` environment (Spin's default provider) or their default; component
//! variables and `allowed_outbound_hosts` entries are `{{ name }}` templates over them.

use std::collections::BTreeMap;

use crate::manifest::RawVariable;

/// Spin's variable name rules (see `spin_expressions::Key::validate`).
pub fn validate_name(key: &str) -> Result<(), String> {
    let reason = if key.is_empty() {
        "must not be empty".to_string()
    } else if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        format!(
            "invalid character {c:?}; variable names may contain only lower-case letters, numbers and underscores"
        )
    } else if !key.as_bytes()[0].is_ascii_lowercase() {
        "must start with a lowercase ASCII letter".into()
    } else if !key.as_bytes()[key.len() - 1].is_ascii_alphanumeric() {
        "must end with a lowercase ASCII letter or digit".into()
    } else if key.contains("__") {
        "must not contain multiple consecutive underscores".into()
    } else {
        return Ok(());
    };
    Err(format!("{key:?}: {reason}"))
}

enum Part<'a> {
    Lit(&'a str),
    Var(&'a str),
}

fn parts(template: &str) -> Result<Vec<Part<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Part::Lit(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unterminated `{{{{` in template {template:?}"))?;
        out.push(Part::Var(after[..end].trim()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Part::Lit(rest));
    }
    Ok(out)
}

/// Checks a template's syntax and that it names only declared application variables.
pub fn check_template(template: &str, app: &BTreeMap<String, RawVariable>) -> Result<(), String> {
    for p in parts(template)? {
        if let Part::Var(name) = p
            && !app.contains_key(name)
        {
            return Err(format!("template refers to unknown variable {name:?}"));
        }
    }
    Ok(())
}

/// Resolved application variable values.
#[derive(Clone, Debug, Default)]
pub struct AppVariables {
    values: BTreeMap<String, String>,
}

impl AppVariables {
    /// Resolves every variable from `env` (name → value, e.g. the process environment) or its
    /// default. Like Spin, a required variable without a value stops the start-up.
    pub fn resolve(
        declared: &BTreeMap<String, RawVariable>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, var) in declared {
            let from_env = env(&format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()));
            match from_env.or_else(|| var.default.clone()) {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "no provider resolved required variable(s): {missing:?} (set SPIN_VARIABLE_<NAME>)"
            ));
        }
        Ok(Self { values })
    }

    pub fn render(&self, template: &str) -> Result<String, String> {
        let mut out = String::new();
        for p in parts(template)? {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => out.push_str(
                    self.values
                        .get(name)
                        .ok_or_else(|| format!("unknown variable {name:?}"))?,
                ),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> BTreeMap<String, RawVariable> {
        let v = |default: Option<&str>, required| RawVariable {
            default: default.map(Into::into),
            required,
            secret: false,
            description: None,
        };
        BTreeMap::from([
            ("greeting".to_string(), v(Some("hello"), false)),
            ("api_key".to_string(), v(None, true)),
        ])
    }

    #[test]
    fn names_follow_spin_rules() {
        assert!(validate_name("api_key2").is_ok());
        for bad in ["", "Api", "1a", "a__b", "a_", "a-b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_overrides_default_and_required_must_be_set() {
        let err = AppVariables::resolve(&declared(), |_| None).unwrap_err();
        assert!(err.contains("api_key"), "{err}");
        let vars = AppVariables::resolve(&declared(), |k| {
            (k == "SPIN_VARIABLE_API_KEY").then(|| "k".to_string())
        })
        .unwrap();
        assert_eq!(
            vars.render("{{ greeting }}-{{api_key}}!").unwrap(),
            "hello-k!"
        );
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_template("{{ greeting }}", &declared()).is_ok());
        assert!(check_template("{{ nope }}", &declared()).is_err());
        assert!(check_template("{{ greeting", &declared()).is_err());
    }
}
