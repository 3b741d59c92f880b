//! Repositories on disk: `repo create` makes a real bare repository under the root together with
//! its row, the real `git` can use it, rename and delete keep disk and database in step, paths
//! never leave the root, and the configuration file decides where the root is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Env, field};

fn acme(env: &Env) {
    env.ok(&["org", "create", "acme"]);
}

/// The `path` column of `acme/<name>`, if there is such a row.
fn row_path(env: &Env, name: &str) -> Option<String> {
    env.sql()
        .query_row(
            "SELECT r.path FROM repositories r JOIN organizations o ON o.id = r.org_id
             WHERE o.name = 'acme' AND r.name = ?1",
            [name],
            |r| r.get(0),
        )
        .ok()
}

fn is_bare(env: &Env, dir: &Path) -> bool {
    env.git(
        None,
        &[
            "--git-dir",
            dir.to_str().unwrap(),
            "rev-parse",
            "--is-bare-repository",
        ],
    )
    .trim()
        == "true"
}

/// Clones `from` into `<home>/<into>`, commits a file on the branch the clone starts on (the one
/// the bare repository's HEAD names), and pushes it back with a plain `git push origin HEAD`.
/// Returns the commit id.
fn push_a_commit(env: &Env, from: &Path, into: &str) -> String {
    env.git(None, &["clone", "--quiet", from.to_str().unwrap(), into]);
    let work = env.path(into);
    std::fs::write(work.join("README"), "hello\n").unwrap();
    env.git(Some(&work), &["add", "README"]);
    env.git(Some(&work), &["commit", "--quiet", "-m", "first"]);
    env.git(Some(&work), &["push", "--quiet", "origin", "HEAD"]);
    env.git(Some(&work), &["rev-parse", "HEAD"])
        .trim()
        .to_string()
}

#[test]
fn repo_create_makes_a_bare_repository_under_the_default_root_with_its_row() {
    let env = Env::new();
    acme(&env);
    let created = env.json(&["repo", "create", "acme/web", "-d", "The website"], 0);
    let dir = env.repo_dir("acme", "web");
    assert_eq!(dir, env.path(".cpm/repos/acme/web.git"));
    assert!(dir.is_dir());
    assert!(is_bare(&env, &dir));
    assert_eq!(created["path"], dir.to_str().unwrap());
    assert_eq!(created["description"], "The website");
    assert_eq!(row_path(&env, "web").as_deref(), dir.to_str());
    // Nothing else is left beside it (no temporary directories).
    assert_eq!(env.entries(&env.root().join("acme")), ["web.git"]);
}

#[test]
fn a_trailing_git_in_the_name_is_the_same_repository() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web.git"]);
    assert!(env.repo_dir("acme", "web").is_dir());
    assert_eq!(
        row_path(&env, "web").as_deref(),
        env.repo_dir("acme", "web").to_str()
    );
    env.ok(&["repo", "show", "acme/web.git"]);
    env.fails(&["repo", "create", "acme/web"], 73);
}

#[test]
fn a_created_repository_can_be_cloned_pushed_to_and_cloned_again() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    let dir = env.repo_dir("acme", "web");
    let commit = push_a_commit(&env, &dir, "work");

    env.git(None, &["clone", "--quiet", dir.to_str().unwrap(), "again"]);
    let again = env.path("again");
    assert_eq!(
        std::fs::read_to_string(again.join("README")).unwrap(),
        "hello\n"
    );
    assert_eq!(env.git(Some(&again), &["rev-parse", "HEAD"]).trim(), commit);
    let log = env.git(Some(&again), &["log", "--format=%s"]);
    assert_eq!(log.trim(), "first");
}

#[test]
fn repo_rename_moves_the_directory_and_the_row_together() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    let old = env.repo_dir("acme", "web");
    let commit = push_a_commit(&env, &old, "work");

    let renamed = env.json(&["repo", "rename", "acme/web", "site"], 0);
    let new = env.repo_dir("acme", "site");
    assert!(!old.exists(), "the old path is gone");
    assert!(new.is_dir());
    assert!(is_bare(&env, &new));
    assert_eq!(renamed["name"], "site");
    assert_eq!(renamed["path"], new.to_str().unwrap());
    assert_eq!(row_path(&env, "site").as_deref(), new.to_str());
    assert_eq!(row_path(&env, "web"), None);
    env.fails(&["repo", "show", "acme/web"], 66);
    // The history came along.
    env.git(None, &["clone", "--quiet", new.to_str().unwrap(), "after"]);
    assert_eq!(
        env.git(Some(&env.path("after")), &["rev-parse", "HEAD"])
            .trim(),
        commit
    );
}

#[test]
fn renaming_onto_an_existing_directory_is_73_and_changes_nothing() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    let squatter = env.repo_dir("acme", "site");
    std::fs::create_dir_all(&squatter).unwrap();
    std::fs::write(squatter.join("precious"), "keep me").unwrap();

    env.fails(&["repo", "rename", "acme/web", "site"], 73);
    assert!(env.repo_dir("acme", "web").is_dir());
    assert_eq!(
        row_path(&env, "web").as_deref(),
        env.repo_dir("acme", "web").to_str()
    );
    assert_eq!(row_path(&env, "site"), None);
    assert_eq!(
        std::fs::read_to_string(squatter.join("precious")).unwrap(),
        "keep me"
    );
}

#[test]
fn repo_delete_moves_the_directory_into_the_trash() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    let dir = env.repo_dir("acme", "web");
    let commit = push_a_commit(&env, &dir, "work");

    let out = env.json(&["repo", "delete", "acme/web"], 0);
    assert!(!dir.exists());
    assert_eq!(row_path(&env, "web"), None);
    let trash = env.root().join(".trash").join("acme");
    let trashed = env.entries(&trash);
    assert_eq!(trashed.len(), 1, "{trashed:?}");
    assert!(trashed[0].starts_with("web.git."), "{trashed:?}");
    assert_eq!(out["trash"][0], trash.join(&trashed[0]).to_str().unwrap());
    // It is recoverable: the trashed copy still has the commit.
    let kept = trash.join(&trashed[0]);
    assert_eq!(
        env.git(
            None,
            &["--git-dir", kept.to_str().unwrap(), "rev-parse", "HEAD"]
        )
        .trim(),
        commit
    );
}

#[test]
fn repo_delete_with_purge_removes_the_directory() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    let out = env.ok(&["repo", "delete", "acme/web", "--purge"]);
    assert!(out.contains("acme/web"), "{out}");
    assert!(!env.repo_dir("acme", "web").exists());
    assert!(env.entries(&env.root().join(".trash/acme")).is_empty());
    assert_eq!(row_path(&env, "web"), None);
}

#[test]
fn the_config_delete_purge_makes_deletes_remove_directories() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    std::fs::write(env.path(".cpm/config.toml"), "delete = \"purge\"\n").unwrap();
    env.ok(&["repo", "delete", "acme/web"]);
    assert!(!env.repo_dir("acme", "web").exists());
    assert!(env.entries(&env.root().join(".trash/acme")).is_empty());
}

#[test]
fn a_recreated_repository_can_be_deleted_again() {
    let env = Env::new();
    acme(&env);
    // Create and delete the same name several times in quick succession: each deletion must
    // find its own place in the trash.
    for round in 0..3 {
        env.ok(&["repo", "create", "acme/web"]);
        let (code, out, err) = env.run(&["repo", "delete", "acme/web"]);
        assert_eq!(code, 0, "round {round}: {out}{err}");
        assert!(!env.repo_dir("acme", "web").exists(), "round {round}");
        assert_eq!(row_path(&env, "web"), None, "round {round}");
    }
    assert_eq!(
        env.entries(&env.root().join(".trash").join("acme")).len(),
        3
    );
}

#[test]
fn deleting_a_repository_whose_directory_is_already_gone_removes_its_row() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    std::fs::remove_dir_all(env.repo_dir("acme", "web")).unwrap();
    env.ok(&["repo", "delete", "acme/web"]);
    assert_eq!(row_path(&env, "web"), None);
}

#[test]
fn a_directory_already_at_the_target_makes_repo_create_73_and_leaves_no_row() {
    let env = Env::new();
    acme(&env);
    let squatter = env.repo_dir("acme", "web");
    std::fs::create_dir_all(&squatter).unwrap();
    std::fs::write(squatter.join("precious"), "keep me").unwrap();

    let err = env.fails(&["repo", "create", "acme/web"], 73);
    assert!(err.contains("web.git"), "{err}");
    assert_eq!(row_path(&env, "web"), None);
    assert_eq!(env.count("SELECT count(*) FROM repositories"), 0);
    assert_eq!(env.entries(&squatter), ["precious"], "left as it was");
    assert_eq!(
        env.entries(&env.root().join("acme")),
        ["web.git"],
        "no temporary left"
    );
}

#[test]
fn a_create_refused_by_the_database_leaves_no_directory() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    // The row stays but the directory was removed by hand: the name is still taken.
    std::fs::remove_dir_all(env.repo_dir("acme", "web")).unwrap();
    env.fails(&["repo", "create", "acme/web"], 73);
    assert!(!env.repo_dir("acme", "web").exists(), "no orphan directory");
    assert!(env.entries(&env.root().join("acme")).is_empty());
    assert_eq!(env.count("SELECT count(*) FROM repositories"), 1);
}

#[test]
fn path_tricks_are_refused_with_64() {
    let env = Env::new();
    acme(&env);
    for spec in [
        "acme/../x",
        "/etc/passwd",
        "acme/x/y",
        "acme/..",
        "acme/.",
        "../acme/x",
        "acme/web.git/../other",
        "acme//x",
        "acme",
        "acme/",
        "/acme/x",
    ] {
        let (code, out, err) = env.run(&["repo", "create", "--", spec]);
        assert_eq!(code, 64, "repo create {spec:?}: {out}{err}");
    }
    assert_eq!(env.count("SELECT count(*) FROM repositories"), 0);
    let root = env.entries(&env.root());
    assert!(root.iter().all(|e| e == "acme"), "{root:?}");
    assert!(env.entries(&env.root().join("acme")).is_empty());
    let home = env.entries(env.home());
    assert_eq!(home, [".cpm"], "nothing made beside HOME's .cpm");
}

#[test]
fn a_symlink_out_of_the_root_is_refused() {
    let env = Env::new();
    env.ok(&["org", "create", "evil"]);
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(env.root()).unwrap();
    std::os::unix::fs::symlink(&outside, env.root().join("evil")).unwrap();

    let (code, out, err) = env.run(&["repo", "create", "evil/x"]);
    assert_ne!(code, 0, "{out}{err}");
    assert_eq!(code, 64, "{out}{err}");
    assert!(
        env.entries(&outside).is_empty(),
        "nothing created outside the root"
    );
    assert_eq!(env.count("SELECT count(*) FROM repositories"), 0);
}

#[test]
fn a_symlinked_repository_directory_is_not_deleted_through() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    // Someone replaces the repository with a link to a directory outside the root.
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), "keep me").unwrap();
    let dir = env.repo_dir("acme", "web");
    std::fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&outside, &dir).unwrap();

    let (code, out, err) = env.run(&["repo", "delete", "acme/web", "--purge"]);
    assert_ne!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me"
    );
    assert!(
        row_path(&env, "web").is_some(),
        "the row stays when the delete is refused"
    );
}

#[test]
fn the_config_repo_root_is_honoured() {
    let env = Env::new();
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(env.path(".cpm")).unwrap();
    std::fs::write(
        env.path(".cpm/config.toml"),
        format!("repo_root = \"{}\"\n", elsewhere.display()),
    )
    .unwrap();
    acme(&env);
    let created = env.json(&["repo", "create", "acme/web"], 0);
    let dir = elsewhere.join("acme").join("web.git");
    assert!(dir.is_dir());
    assert!(is_bare(&env, &dir));
    assert_eq!(created["path"], dir.to_str().unwrap());
    assert!(
        !env.repo_dir("acme", "web").exists(),
        "not under the default root"
    );
    env.ok(&["repo", "delete", "acme/web"]);
    assert_eq!(env.entries(&elsewhere.join(".trash").join("acme")).len(), 1);
}

#[test]
fn a_repo_root_starting_with_a_tilde_is_under_home() {
    let env = Env::new();
    std::fs::create_dir_all(env.path(".cpm")).unwrap();
    std::fs::write(env.path(".cpm/config.toml"), "repo_root = \"~/git\"\n").unwrap();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    assert!(env.path("git/acme/web.git").is_dir());
}

#[test]
fn the_environment_overrides_the_config_repo_root() {
    let env = Env::new();
    std::fs::create_dir_all(env.path(".cpm")).unwrap();
    std::fs::write(
        env.path(".cpm/config.toml"),
        format!("repo_root = \"{}\"\n", env.path("from-config").display()),
    )
    .unwrap();
    acme(&env);
    let out = env
        .cmd()
        .args(["repo", "create", "acme/web"])
        .env("CPM_REPO_ROOT", env.path("from-env"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(env.path("from-env/acme/web.git").is_dir());
    assert!(!env.path("from-config").exists());
}

#[test]
fn a_config_with_an_unknown_key_fails_with_78_and_does_nothing() {
    let env = Env::new();
    std::fs::create_dir_all(env.path(".cpm")).unwrap();
    std::fs::write(env.path(".cpm/config.toml"), "repo_rot = \"/tmp/x\"\n").unwrap();
    let err = env.fails(&["org", "create", "acme"], 78);
    assert!(
        err.contains("repo_rot"),
        "the message names the bad key: {err}"
    );
    let json = env.json(&["user", "list"], 78);
    assert_eq!(json["error"]["code"], "config_error");
    // Nothing was created: the database was never opened.
    assert!(!env.db().exists() || env.count("SELECT count(*) FROM organizations") == 0);
}

#[test]
fn a_relative_repo_root_fails_with_78() {
    let env = Env::new();
    std::fs::create_dir_all(env.path(".cpm")).unwrap();
    std::fs::write(env.path(".cpm/config.toml"), "repo_root = \"repos\"\n").unwrap();
    env.fails(&["user", "list"], 78);
}

#[test]
fn an_explicit_config_file_that_does_not_exist_is_an_error() {
    let env = Env::new();
    let missing = env.path("nope.toml");
    let (code, out, err) = env.run(&["--config", missing.to_str().unwrap(), "user", "list"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("nope.toml"), "{err}");
}

#[test]
fn repositories_of_one_org_are_listed_with_their_paths() {
    let env = Env::new();
    acme(&env);
    env.ok(&["repo", "create", "acme/web"]);
    env.ok(&["repo", "create", "acme/api"]);
    let list = env.json(&["repo", "list", "--org", "acme"], 0);
    assert_eq!(field(&list, "name"), ["api", "web"]);
    for r in list.as_array().unwrap() {
        let p = Path::new(r["path"].as_str().unwrap());
        assert!(is_bare(&env, p), "{p:?}");
    }
}
