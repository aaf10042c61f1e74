//! Matching a URI against an RFC 6570 template, for `resources/read`.

use std::collections::HashMap;

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `{name}` (no `/`) or `{+name}` (`/` allowed).
    Var {
        name: String,
        reserved: bool,
    },
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UriTemplate {
    parts: Vec<Part>,
}

impl UriTemplate {
    pub(crate) fn parse(template: &str) -> Self {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let inner = &rest[open + 1..open + close];
            let (reserved, name) = match inner.strip_prefix('+') {
                Some(name) => (true, name),
                None => (false, inner),
            };
            parts.push(Part::Var {
                name: name.to_owned(),
                reserved,
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Self { parts }
    }

    /// The variables of `uri`, when it matches.
    pub(crate) fn matches(&self, uri: &str) -> Option<HashMap<String, String>> {
        let mut vars = HashMap::new();
        match_parts(&self.parts, uri, &mut vars).then_some(vars)
    }
}

/// Backtracking match: a variable takes one or more characters, up to an occurrence of the
/// literal that follows it.
fn match_parts(parts: &[Part], uri: &str, vars: &mut HashMap<String, String>) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return uri.is_empty();
    };
    match first {
        Part::Literal(literal) => uri
            .strip_prefix(literal.as_str())
            .is_some_and(|tail| match_parts(rest, tail, vars)),
        Part::Var { name, reserved } => {
            let allowed = |s: &str| !s.is_empty() && (*reserved || !s.contains('/'));
            for end in (1..=uri.len()).filter(|&i| uri.is_char_boundary(i)) {
                let (value, tail) = uri.split_at(end);
                if !allowed(value) {
                    break;
                }
                if match_parts(rest, tail, vars) {
                    vars.insert(name.clone(), value.to_owned());
                    return true;
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(template: &str, uri: &str) -> Option<Vec<(String, String)>> {
        let mut vars: Vec<_> = UriTemplate::parse(template)
            .matches(uri)?
            .into_iter()
            .collect();
        vars.sort();
        Some(vars)
    }

    #[test]
    fn simple_variables_stop_at_slashes() {
        let t = "test://template/{id}/data";
        assert_eq!(
            vars(t, "test://template/123/data"),
            Some(vec![("id".into(), "123".into())])
        );
        assert_eq!(vars(t, "test://template//data"), None);
        assert_eq!(vars(t, "test://template/1/2/data"), None);
        assert_eq!(vars(t, "test://template/1/datax"), None);
        assert_eq!(vars(t, "other://template/1/data"), None);
    }

    #[test]
    fn reserved_variables_take_slashes_and_several_variables_split() {
        assert_eq!(
            vars("file:///{+path}", "file:///a/b.txt"),
            Some(vec![("path".into(), "a/b.txt".into())])
        );
        assert_eq!(
            vars("db://{table}/{row}", "db://users/42"),
            Some(vec![
                ("row".into(), "42".into()),
                ("table".into(), "users".into())
            ])
        );
        assert_eq!(vars("db://{table}/{row}", "db://users/"), None);
        assert_eq!(vars("plain://x", "plain://x"), Some(vec![]));
    }
}
