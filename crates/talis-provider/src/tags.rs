//! Tags Talis puts on provider resources. Creation is idempotent because every machine carries
//! the tag of its instance: after a crash the workflow finds it again instead of creating a second.
//!
//! DigitalOcean tag rules: 1–255 characters, letters, numbers, colons, dashes and underscores.

/// Every resource Talis creates carries this tag.
pub const TALIS: &str = "talis";
const PROJECT_PREFIX: &str = "talis-project-";
const INSTANCE_PREFIX: &str = "talis-instance-";

/// Tag of every resource of a project: one list call by this tag polls the whole project.
pub fn project(project_id: &str) -> String {
    format!("{PROJECT_PREFIX}{project_id}")
}

/// Tag of the machine (and volumes) of one instance: the idempotency key of creation.
pub fn instance(instance_id: &str) -> String {
    format!("{INSTANCE_PREFIX}{instance_id}")
}

/// The instance id carried by a tag made with [`instance`].
pub fn instance_id(tag: &str) -> Option<&str> {
    tag.strip_prefix(INSTANCE_PREFIX).filter(|s| !s.is_empty())
}

/// The project id carried by a tag made with [`project`].
pub fn project_id(tag: &str) -> Option<&str> {
    tag.strip_prefix(PROJECT_PREFIX).filter(|s| !s.is_empty())
}

/// Separates an instance's display name from its id in a machine name.
const NAME_ID_SEP: &str = ".i";

/// The provider name of an instance's machine: `<name>.i<instance id>`, unique within a project
/// even when display names repeat, so a multi-create (which gives every machine the same tags)
/// still lets each machine be found by name after a crash. cloud-init sets the hostname to the
/// first label, i.e. the display name.
pub fn machine_name(name: &str, instance_id: &str) -> String {
    format!("{name}{NAME_ID_SEP}{instance_id}")
}

/// The instance id carried by a name made with [`machine_name`].
pub fn instance_of_machine(machine_name: &str) -> Option<&str> {
    let (_, id) = machine_name.rsplit_once(NAME_ID_SEP)?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(id)
}

/// Whether `tag` is a valid DigitalOcean tag name.
pub fn is_valid(tag: &str) -> bool {
    (1..=255).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_valid() {
        let id = "0b7c7c1e-4f7a-4c43-9d7e-2f6f1b7b9a10";
        assert_eq!(instance_id(&instance(id)), Some(id));
        assert_eq!(project_id(&project(id)), Some(id));
        assert_eq!(instance_id(&project(id)), None);
        for t in [TALIS.to_string(), project(id), instance(id)] {
            assert!(is_valid(&t), "{t}");
        }
    }

    #[test]
    fn machine_names_carry_the_instance() {
        assert_eq!(machine_name("web-1", "42"), "web-1.i42");
        assert_eq!(instance_of_machine("web-1.i42"), Some("42"));
        assert_eq!(instance_of_machine("a.io.i7"), Some("7"));
        assert_eq!(instance_of_machine("web-1"), None);
        assert_eq!(instance_of_machine("web.i"), None);
    }

    #[test]
    fn validity_table() {
        for (tag, ok) in [
            ("a", true),
            ("env:prod_1-x", true),
            ("", false),
            ("has space", false),
            ("dot.ted", false),
            ("slash/x", false),
        ] {
            assert_eq!(is_valid(tag), ok, "{tag:?}");
        }
        assert!(is_valid(&"a".repeat(255)));
        assert!(!is_valid(&"a".repeat(256)));
    }
}
