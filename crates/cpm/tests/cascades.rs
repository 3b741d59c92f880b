//! The documented cascades, really happening: deleting an organization, a user, a repository or
//! a cpm key removes (or nulls) what hangs off it, checked with direct SQL, and the directories
//! follow the rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Env, field};

/// alice owns acme (web, api), bob is a member; carol has a grant on acme/web and is an admin
/// of beta (tool), where bob has a grant too.
fn two_orgs(env: &Env) {
    for u in ["alice", "bob", "carol"] {
        env.ok(&["user", "add", u]);
    }
    env.ok(&["org", "create", "acme"]);
    env.ok(&["org", "create", "beta"]);
    env.ok(&["org", "member", "add", "acme", "alice", "--role", "owner"]);
    env.ok(&["org", "member", "add", "acme", "bob"]);
    env.ok(&["org", "member", "add", "beta", "carol", "--role", "owner"]);
    env.ok(&["repo", "create", "acme/web"]);
    env.ok(&["repo", "create", "acme/api"]);
    env.ok(&["repo", "create", "beta/tool"]);
    env.ok(&["access", "grant", "carol", "acme/web", "write"]);
    env.ok(&["access", "grant", "bob", "beta/tool", "read"]);
}

fn acme_id(env: &Env) -> i64 {
    env.count("SELECT id FROM organizations WHERE name = 'acme'")
}

#[test]
fn deleting_an_org_removes_its_repositories_their_grants_and_its_memberships() {
    let env = Env::new();
    two_orgs(&env);
    let acme = acme_id(&env);
    env.ok(&["org", "delete", "acme"]);

    assert_eq!(
        env.count("SELECT count(*) FROM organizations WHERE name = 'acme'"),
        0
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM repositories WHERE org_id = {acme}"
        )),
        0
    );
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM org_members WHERE org_id = {acme}"
        )),
        0
    );
    // Only the grant on beta/tool is left.
    assert_eq!(env.count("SELECT count(*) FROM repo_access"), 1);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM repo_access ra JOIN repositories r ON r.id = ra.repo_id
             WHERE r.name = 'tool'"
        ),
        1
    );
    // The other organization and the users are untouched.
    assert_eq!(field(&env.json(&["repo", "list"], 0), "name"), ["tool"]);
    assert_eq!(env.count("SELECT count(*) FROM org_members"), 1);
    assert_eq!(env.count("SELECT count(*) FROM users"), 3);
    env.assert_foreign_keys_hold();
}

#[test]
fn deleting_an_org_moves_its_repository_directories_into_the_trash() {
    let env = Env::new();
    two_orgs(&env);
    let out = env.json(&["org", "delete", "acme"], 0);
    assert!(!env.repo_dir("acme", "web").exists());
    assert!(!env.repo_dir("acme", "api").exists());
    assert!(
        env.repo_dir("beta", "tool").is_dir(),
        "other orgs are untouched"
    );

    let trash = env.root().join(".trash").join("acme");
    let trashed = env.entries(&trash);
    assert_eq!(trashed.len(), 2, "{trashed:?}");
    assert!(trashed[0].starts_with("api.git."), "{trashed:?}");
    assert!(trashed[1].starts_with("web.git."), "{trashed:?}");
    for t in &trashed {
        assert!(
            trash.join(t).join("HEAD").is_file(),
            "a whole repository: {t}"
        );
    }
    let reported: Vec<String> = out["trash"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(reported.len(), 2);
    for p in reported {
        assert!(std::path::Path::new(&p).is_dir(), "{p}");
        assert!(p.starts_with(trash.to_str().unwrap()), "{p}");
    }
    env.assert_foreign_keys_hold();
}

#[test]
fn deleting_an_org_with_purge_removes_its_repository_directories() {
    let env = Env::new();
    two_orgs(&env);
    env.ok(&["org", "delete", "acme", "--purge"]);
    assert!(!env.repo_dir("acme", "web").exists());
    assert!(!env.repo_dir("acme", "api").exists());
    assert!(
        env.entries(&env.root().join(".trash").join("acme"))
            .is_empty()
    );
    assert!(env.repo_dir("beta", "tool").is_dir());
    assert_eq!(env.count("SELECT count(*) FROM repositories"), 1);
    env.assert_foreign_keys_hold();
}

#[test]
fn deleting_a_user_removes_their_memberships_grants_and_keys() {
    let env = Env::new();
    two_orgs(&env);
    let k1 = env.ssh_keygen("b1");
    let k2 = env.ssh_keygen("b2");
    env.ok(&[
        "user",
        "key",
        "add",
        "bob",
        "--key-file",
        k1.to_str().unwrap(),
    ]);
    env.ok(&[
        "user",
        "key",
        "add",
        "bob",
        "--key-file",
        k2.to_str().unwrap(),
    ]);
    let bob = env.count("SELECT id FROM users WHERE username = 'bob'");
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM user_keys WHERE user_id = {bob}"
        )),
        2
    );

    env.ok(&["user", "remove", "bob"]);
    for table in ["org_members", "repo_access", "user_keys"] {
        assert_eq!(
            env.count(&format!(
                "SELECT count(*) FROM {table} WHERE user_id = {bob}"
            )),
            0,
            "{table} still has bob's rows"
        );
    }
    // Everyone else's rows stay.
    assert_eq!(env.count("SELECT count(*) FROM org_members"), 2);
    assert_eq!(env.count("SELECT count(*) FROM repo_access"), 1);
    assert_eq!(env.count("SELECT count(*) FROM repositories"), 3);
    // bob's keys are free again for someone else.
    env.ok(&["user", "add", "dave", "--key-file", k1.to_str().unwrap()]);
    env.assert_foreign_keys_hold();
}

#[test]
fn deleting_a_repository_removes_its_grants() {
    let env = Env::new();
    two_orgs(&env);
    let web = env.count("SELECT id FROM repositories WHERE name = 'web'");
    env.ok(&["repo", "delete", "acme/web"]);
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM repo_access WHERE repo_id = {web}"
        )),
        0
    );
    assert_eq!(env.count("SELECT count(*) FROM repo_access"), 1);
    assert_eq!(env.count("SELECT count(*) FROM org_members"), 3);
    let check = env.json(&["repo", "list", "--user", "carol"], 0);
    assert_eq!(field(&check, "name"), ["tool"]);
    env.assert_foreign_keys_hold();
}

#[test]
fn removing_a_cpm_key_leaves_its_servers_without_a_key() {
    let env = Env::new();
    env.ok(&["key", "generate", "deploy"]);
    env.ok(&["key", "generate", "other"]);
    env.ok(&["server", "add", "mirror", "m.example", "--key", "deploy"]);
    env.ok(&["neighbors", "add", "peer", "p.example", "--key", "deploy"]);
    env.ok(&["server", "add", "kept", "k.example", "--key", "other"]);

    env.ok(&["key", "remove", "deploy"]);
    assert_eq!(
        env.count("SELECT count(*) FROM servers WHERE ssh_key_id IS NULL"),
        2
    );
    assert_eq!(env.count("SELECT count(*) FROM servers"), 3, "servers stay");
    assert_eq!(
        env.count(
            "SELECT count(*) FROM servers s JOIN ssh_keys k ON k.id = s.ssh_key_id
             WHERE s.name = 'kept' AND k.name = 'other'"
        ),
        1
    );
    let mirror = env.json(&["server", "show", "mirror"], 0);
    assert!(mirror.get("ssh_key_id").is_none(), "{mirror}");
    let neighbors = env.json(&["neighbors", "list"], 0);
    assert!(neighbors[0].get("ssh_key_id").is_none(), "{neighbors}");
    assert_eq!(neighbors[0]["is_neighbor"], true);
    env.assert_foreign_keys_hold();
}

#[test]
fn removing_a_server_keeps_its_key() {
    let env = Env::new();
    env.ok(&["key", "generate", "deploy"]);
    env.ok(&["server", "add", "mirror", "m.example", "--key", "deploy"]);
    env.ok(&["server", "remove", "mirror"]);
    assert_eq!(env.count("SELECT count(*) FROM ssh_keys"), 1);
    assert!(env.path(".cpm/keys/deploy").exists());
    env.assert_foreign_keys_hold();
}

#[test]
fn an_org_recreated_after_deletion_starts_empty() {
    let env = Env::new();
    two_orgs(&env);
    env.ok(&["org", "delete", "acme"]);
    env.ok(&["org", "create", "acme"]);
    let shown = env.json(&["org", "show", "acme"], 0);
    assert_eq!(shown["members"], serde_json::json!([]));
    assert_eq!(shown["repositories"], serde_json::json!([]));
    // The old repository name is free again, on disk too.
    env.ok(&["repo", "create", "acme/web"]);
    assert!(env.repo_dir("acme", "web").is_dir());
    env.assert_foreign_keys_hold();
}
