//! Repositories on disk: one root, `<root>/<org>/<repo>.git`, kept in step with the rows.
//!
//! A new repository is made by the system `git init --bare` in a hidden temporary directory beside
//! its final place, then renamed into place (never over an existing directory) inside the same
//! transaction that inserts its row; if the commit fails the directory is taken out again, so a
//! row never points at nothing and no half-made repository is ever visible. Deleting moves the
//! directory to `<root>/.trash/<org>/<repo>.git.<UTC time>` (or removes it with `purge`).
//!
//! Paths are built only from checked names ([`crate::names`]), and every path is verified to stay
//! inside the root: no component may be a symlink, so nothing can lead out of it.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use crate::config::DeleteMode;
use crate::error::{Error, Result};

/// The repository root.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
    default_branch: String,
}

impl Root {
    /// Opens (creating, 0700) the root directory; new repositories' HEAD names `default_branch`.
    pub fn open(path: &Path, default_branch: &str) -> Result<Root> {
        if !path.is_absolute() {
            return Err(Error::Config(format!(
                "the repository root {} must be an absolute path",
                path.display()
            )));
        }
        create_private_dir(path)?;
        let path = path.canonicalize().map_err(|e| Error::io(path, e))?;
        Ok(Root {
            path,
            default_branch: default_branch.to_string(),
        })
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `org/name` lives: `<root>/<org>/<name>.git`. Names must already be checked.
    pub fn repo_dir(&self, org: &str, name: &str) -> PathBuf {
        self.path.join(org).join(format!("{name}.git"))
    }

    /// Refuses a path that is not strictly inside the root, or that passes through a symlink.
    pub fn check_inside(&self, path: &Path) -> Result<()> {
        let rest = path.strip_prefix(&self.path).map_err(|_| outside(path))?;
        if rest.as_os_str().is_empty()
            || !rest.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(outside(path));
        }
        let mut at = self.path.clone();
        for part in rest.components() {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Error::Invalid(format!(
                        "{} is a symbolic link; repositories must be real directories inside {}",
                        at.display(),
                        self.path.display()
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(Error::io(&at, e)),
            }
        }
        Ok(())
    }

    /// Makes a bare repository for `org/name` in a hidden temporary directory; [`Staged::place`]
    /// moves it into place.
    pub fn stage_bare(&self, org: &str, name: &str) -> Result<Staged> {
        let org_dir = self.path.join(org);
        self.check_inside(&org_dir)?;
        create_private_dir(&org_dir)?;
        let target = self.repo_dir(org, name);
        self.check_inside(&target)?;
        if target.exists() {
            return Err(Error::Exists(format!(
                "{} already exists on disk; move it away or pick another name",
                target.display()
            )));
        }
        let temp = org_dir.join(format!(".{name}.git.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&temp);
        let out = Command::new("git")
            .args(["init", "--bare", "--quiet"])
            .arg(format!("--initial-branch={}", self.default_branch))
            .arg(&temp)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| {
                Error::Git(format!(
                    "cannot run git ({e}); install git (e.g. `apt-get install git`)"
                ))
            })?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(Error::Git(format!(
                "git init --bare failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Staged {
            temp,
            target,
            placed: false,
        })
    }

    /// Renames a repository's directory (never over an existing one).
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.check_inside(from)?;
        self.check_inside(to)?;
        store::rename_no_replace(from, to).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Error::Exists(format!("{} already exists on disk", to.display()))
            }
            _ => Error::io(from, e),
        })
    }

    /// Trashes or removes a repository directory. Returns where it went (trash) or `None`.
    pub fn remove(&self, dir: &Path, mode: DeleteMode, stamp: &str) -> Result<Option<PathBuf>> {
        self.check_inside(dir)?;
        if !dir.exists() {
            return Ok(None);
        }
        match mode {
            DeleteMode::Purge => {
                std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                Ok(None)
            }
            DeleteMode::Trash => {
                let rel = dir.strip_prefix(&self.path).map_err(|_| outside(dir))?;
                let base = rel
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default();
                let trash_dir = self
                    .path
                    .join(".trash")
                    .join(rel.parent().unwrap_or(Path::new("")));
                create_private_dir(&trash_dir)?;
                // Deleted twice within a second (re-created in between): `.2`, `.3`, …
                let mut target = trash_dir.join(format!("{base}.{stamp}"));
                let mut n = 1;
                while target.exists() {
                    n += 1;
                    target = trash_dir.join(format!("{base}.{stamp}.{n}"));
                }
                store::rename_no_replace(dir, &target).map_err(|e| Error::io(dir, e))?;
                Ok(Some(target))
            }
        }
    }
}

/// A bare repository made in a temporary directory, not yet in place. Dropped unplaced, it is removed.
#[derive(Debug)]
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
    placed: bool,
}

impl Staged {
    /// Where it goes.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Moves it into place, never over an existing directory.
    pub fn place(&mut self) -> Result<()> {
        store::rename_no_replace(&self.temp, &self.target).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Exists(format!(
                "{} appeared on disk meanwhile",
                self.target.display()
            )),
            _ => Error::io(&self.target, e),
        })?;
        self.placed = true;
        Ok(())
    }

    /// Takes a placed repository out again (its row was not committed).
    pub fn undo(mut self) {
        if self.placed {
            let _ = std::fs::remove_dir_all(&self.target);
            self.placed = false;
        }
    }

    /// Keeps it: the row is committed.
    pub fn keep(mut self) {
        self.temp = PathBuf::new();
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed && !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.temp);
        }
    }
}

fn outside(path: &Path) -> Error {
    Error::Invalid(format!(
        "{} is outside the repository root; names may not contain paths",
        path.display()
    ))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_root_or_through_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(&dir.path().join("repos"), "main").unwrap();
        assert!(root.check_inside(&root.repo_dir("acme", "web")).is_ok());
        assert!(root.check_inside(Path::new("/etc/passwd")).is_err());
        assert!(
            root.check_inside(&root.path().join("acme/../../x"))
                .is_err()
        );
        assert!(root.check_inside(root.path()).is_err());
        std::os::unix::fs::symlink("/tmp", root.path().join("evil")).unwrap();
        assert!(
            root.check_inside(&root.path().join("evil/web.git"))
                .is_err()
        );
    }

    #[test]
    fn an_unplaced_stage_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(&dir.path().join("repos"), "main").unwrap();
        let staged = root.stage_bare("acme", "web").unwrap();
        assert!(!staged.target().exists());
        drop(staged);
        let left: Vec<_> = std::fs::read_dir(root.path().join("acme"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
