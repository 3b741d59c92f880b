//! Names users type: usernames, organization, repository, key and server names.
//!
//! Names become directory names under the repository root and appear in SSH commands, so they are
//! checked once, where they enter, against a strict alphabet: a checked name can never be a path
//! (`/`, `..`, a leading dot or dash) or need quoting.

use crate::error::{Error, Result};

/// What a name names, for messages.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A username: letters, digits, `-`, `_`.
    User,
    /// An organization name: letters, digits, `-`, `_`.
    Org,
    /// A repository name: letters, digits, `-`, `_`, `.`.
    Repo,
    /// A key or server name: letters, digits, `-`, `_`, `.`.
    Label,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::User => "username",
            Kind::Org => "organization name",
            Kind::Repo => "repository name",
            Kind::Label => "name",
        }
    }

    fn max(self) -> usize {
        match self {
            Kind::User | Kind::Org => 39,
            Kind::Repo => 100,
            Kind::Label => 64,
        }
    }

    fn allows_dot(self) -> bool {
        matches!(self, Kind::Repo | Kind::Label)
    }
}

/// Checks a name; returns it trimmed. Repository names lose a trailing `.git`.
pub fn check(kind: Kind, name: &str) -> Result<String> {
    let mut name = name.trim();
    if matches!(kind, Kind::Repo) {
        name = name.strip_suffix(".git").unwrap_or(name);
    }
    let noun = kind.noun();
    let rules = if kind.allows_dot() {
        "letters, digits, '-', '_' and '.'"
    } else {
        "letters, digits, '-' and '_'"
    };
    if name.is_empty() {
        return Err(Error::Invalid(format!("the {noun} is empty")));
    }
    if name.len() > kind.max() {
        return Err(Error::Invalid(format!(
            "the {noun} '{name}' is longer than {} characters",
            kind.max()
        )));
    }
    let bad = name.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || (*c == '.' && kind.allows_dot()))
    });
    if let Some(c) = bad {
        return Err(Error::Invalid(format!(
            "the {noun} '{name}' contains {c:?}; use only {rules}"
        )));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Error::Invalid(format!(
            "the {noun} '{name}' must start with a letter or digit"
        )));
    }
    if name.contains("..") {
        return Err(Error::Invalid(format!("the {noun} '{name}' contains '..'")));
    }
    Ok(name.to_string())
}

/// Splits and checks `org/repo` (a trailing `.git` is allowed).
pub fn repo_path(spec: &str) -> Result<(String, String)> {
    let Some((org, repo)) = spec.trim().split_once('/') else {
        return Err(Error::Invalid(format!(
            "'{spec}' is not ORG/REPO (e.g. acme/website)"
        )));
    };
    if repo.contains('/') {
        return Err(Error::Invalid(format!(
            "'{spec}' has more than one '/'; repositories are ORG/REPO"
        )));
    }
    Ok((check(Kind::Org, org)?, check(Kind::Repo, repo)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names_pass_and_lose_a_git_suffix() {
        assert_eq!(check(Kind::User, "alice_b-2").unwrap(), "alice_b-2");
        assert_eq!(check(Kind::Repo, "web.site.git").unwrap(), "web.site");
        assert_eq!(
            repo_path("acme/web.git").unwrap(),
            ("acme".into(), "web".into())
        );
    }

    #[test]
    fn names_that_could_be_paths_are_refused() {
        for bad in [
            "", "..", "../x", "a/b", ".hidden", "-flag", "a..b", "a b", "ü", "x\0y",
        ] {
            assert!(check(Kind::Repo, bad).is_err(), "{bad:?}");
        }
        assert!(check(Kind::User, "a.b").is_err(), "no dots in usernames");
        assert!(repo_path("acme").is_err());
        assert!(repo_path("acme/web/../other").is_err());
        assert!(repo_path("/etc/passwd").is_err());
        assert!(check(Kind::Org, &"x".repeat(40)).is_err());
    }
}
