//! A finding checked against the OCSF schema: the Detection Finding class and the objects
//! findings use, as the schema at [`VERSION`](super::VERSION) defines them
//! (`fixtures/ocsf/`, compiled from `ocsf/ocsf-schema`). For tests: every required
//! attribute present (those of a profile when the finding declares it), no attribute the
//! schema does not define, every value of the schema's type, every enum value one of the
//! schema's and its caption the schema's, and each object's at-least-one constraints.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

const SCHEMA: &str = include_str!("../../../../fixtures/ocsf/detection_finding-1.8.0.json");

#[derive(Deserialize)]
struct Schema {
    version: String,
    class: Definition,
    objects: BTreeMap<String, Definition>,
    types: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Definition {
    #[serde(default)]
    uid: Option<u32>,
    attributes: BTreeMap<String, Attribute>,
    #[serde(default)]
    at_least_one: Vec<String>,
}

#[derive(Deserialize)]
struct Attribute {
    #[serde(rename = "type")]
    type_name: String,
    requirement: String,
    #[serde(default)]
    is_array: bool,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    #[serde(rename = "enum")]
    values: Option<BTreeMap<String, String>>,
}

fn schema() -> &'static Schema {
    static SCHEMA_PARSED: OnceLock<Schema> = OnceLock::new();
    SCHEMA_PARSED.get_or_init(|| serde_json::from_str(SCHEMA).expect("the kept schema parses"))
}

/// Why `finding` is not a Detection Finding of the schema, if it is not.
pub fn check(finding: &Value) -> Result<(), String> {
    let schema = schema();
    if finding["metadata"]["version"] != schema.version.as_str() {
        return Err(format!("metadata.version is not {}", schema.version));
    }
    if finding["class_uid"] != schema.class.uid.expect("the class has a uid") {
        return Err("class_uid is not the Detection Finding's".into());
    }
    let profiles: Vec<&str> = finding["metadata"]["profiles"]
        .as_array()
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Checker { schema, profiles }.object(&schema.class, finding, "")
}

struct Checker<'s> {
    schema: &'s Schema,
    profiles: Vec<&'s str>,
}

impl Checker<'_> {
    fn object(&self, definition: &Definition, value: &Value, path: &str) -> Result<(), String> {
        let object = value
            .as_object()
            .ok_or_else(|| format!("{path}: not an object"))?;
        let at = |name: &str| match path {
            "" => name.to_owned(),
            _ => format!("{path}.{name}"),
        };
        for (name, attribute) in &definition.attributes {
            if attribute.requirement == "required"
                && self.applies(attribute)
                && !object.contains_key(name)
            {
                return Err(format!("{}: required, missing", at(name)));
            }
        }
        for (name, value) in object {
            let attribute = (definition.attributes.get(name))
                .ok_or_else(|| format!("{}: not an attribute the schema defines", at(name)))?;
            if !self.applies(attribute) {
                return Err(format!(
                    "{}: of a profile the finding does not declare",
                    at(name)
                ));
            }
            self.value(attribute, value, &at(name))?;
            self.caption(object, name, attribute, &at(name))?;
        }
        let names = &definition.at_least_one;
        if !names.is_empty() && !names.iter().any(|n| object.contains_key(n)) {
            return Err(format!("{path}: has none of {names:?}"));
        }
        Ok(())
    }

    fn applies(&self, attribute: &Attribute) -> bool {
        (attribute.profile.as_deref()).is_none_or(|p| self.profiles.contains(&p))
    }

    fn value(&self, attribute: &Attribute, value: &Value, path: &str) -> Result<(), String> {
        match (attribute.is_array, value.as_array()) {
            (true, Some(items)) => (items.iter().enumerate())
                .try_for_each(|(n, item)| self.one(attribute, item, &format!("{path}[{n}]"))),
            (true, None) => Err(format!("{path}: not an array")),
            (false, _) => self.one(attribute, value, path),
        }
    }

    fn one(&self, attribute: &Attribute, value: &Value, path: &str) -> Result<(), String> {
        let name = attribute.type_name.as_str();
        if let Some(object) = self.schema.objects.get(name) {
            return self.object(object, value, path);
        }
        let base = self.schema.types.get(name).map_or(name, String::as_str);
        let fits = match base {
            "string_t" => value.is_string(),
            "integer_t" | "long_t" => value.is_i64() || value.is_u64(),
            "float_t" => value.is_number(),
            "boolean_t" => value.is_boolean(),
            "json_t" => true,
            "object" => value.is_object(),
            _ => {
                return Err(format!(
                    "{path}: of type {name}, which the kept schema lacks"
                ));
            }
        };
        if !fits {
            return Err(format!("{path}: not of type {name}: {value}"));
        }
        if name == "ip_t"
            && value
                .as_str()
                .is_none_or(|ip| ip.parse::<IpAddr>().is_err())
        {
            return Err(format!("{path}: not an IP address: {value}"));
        }
        if let Some(values) = &attribute.values
            && !values.contains_key(&value.to_string())
        {
            return Err(format!(
                "{path}: {value} is none of the schema's {:?}",
                values.keys()
            ));
        }
        Ok(())
    }

    /// An enum's caption, beside its id (`severity` beside `severity_id`, `class_name`
    /// beside `class_uid`), is the schema's for that id, unless the id is `Other` (99),
    /// where it says what the source said.
    fn caption(
        &self,
        object: &serde_json::Map<String, Value>,
        name: &str,
        attribute: &Attribute,
        path: &str,
    ) -> Result<(), String> {
        let base = name
            .strip_suffix("_id")
            .or_else(|| name.strip_suffix("_uid"));
        let (Some(values), Some(base)) = (&attribute.values, base) else {
            return Ok(());
        };
        let id = object[name].to_string();
        let caption = object
            .get(base)
            .or_else(|| object.get(&format!("{base}_name")));
        match (caption, values.get(&id)) {
            (Some(caption), Some(expected)) if id != "99" && caption != expected.as_str() => {
                Err(format!("{path}: {id} is {expected:?}, not {caption}"))
            }
            _ => Ok(()),
        }
    }
}
