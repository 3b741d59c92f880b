//! The `cpm` command line end to end, through the real binary: every command group, the three
//! output formats with the seed's field names, errors and exit statuses, the documented queries,
//! and adopting a database made by the original cpm.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::{Env, field, fingerprint, is_rfc3339};
use serde_json::Value;

/// Keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// Keys of a YAML mapping, sorted.
fn yaml_keys(v: &serde_yaml_ng::Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_mapping()
        .unwrap_or_else(|| panic!("not a mapping: {v:?}"))
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    k.sort();
    k
}

/// An org `acme` owned by alice, with the repository `acme/web`.
fn acme_with_web(env: &Env) {
    env.ok(&["user", "add", "alice", "--email", "alice@example.com"]);
    env.ok(&["org", "create", "acme", "-d", "Acme Corp"]);
    env.ok(&["org", "member", "add", "acme", "alice", "--role", "owner"]);
    env.ok(&["repo", "create", "acme/web"]);
}

// ---------------------------------------------------------------------------------------------
// users
// ---------------------------------------------------------------------------------------------

#[test]
fn an_added_user_is_listed_in_the_table() {
    let env = Env::new();
    let out = env.ok(&["user", "add", "alice", "--email", "alice@example.com"]);
    assert!(out.contains("alice"), "{out}");
    let table = env.ok(&["user", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("USERNAME"), "{table}");
    assert!(
        lines[1].starts_with("alice") && lines[1].contains("alice@example.com"),
        "{table}"
    );
}

#[test]
fn user_list_json_has_the_seed_fields_and_omits_an_absent_public_key() {
    let env = Env::new();
    let key = env.public_key("alice");
    env.ok(&[
        "user",
        "add",
        "alice",
        "--email",
        "a@example.com",
        "--key",
        &key,
    ]);
    env.ok(&["user", "add", "bob"]);
    let list = env.json(&["user", "list"], 0);
    assert_eq!(field(&list, "username"), ["alice", "bob"]);
    let alice = &list[0];
    assert_eq!(
        keys(alice),
        ["created_at", "email", "id", "public_key", "username"]
    );
    assert_eq!(alice["email"], "a@example.com");
    assert_eq!(alice["public_key"], key.as_str());
    assert!(alice["id"].is_i64());
    assert!(is_rfc3339(alice["created_at"].as_str().unwrap()), "{alice}");
    let bob = &list[1];
    assert_eq!(keys(bob), ["created_at", "email", "id", "username"]);
    assert_eq!(bob["email"], "");
}

#[test]
fn user_list_yaml_has_the_seed_fields() {
    let env = Env::new();
    let key = env.public_key("alice");
    env.ok(&[
        "user",
        "add",
        "alice",
        "--email",
        "a@example.com",
        "--key",
        &key,
    ]);
    let list = env.yaml(&["user", "list"], 0);
    let alice = &list[0];
    assert_eq!(
        yaml_keys(alice),
        ["created_at", "email", "id", "public_key", "username"]
    );
    assert_eq!(alice["username"].as_str(), Some("alice"));
    assert_eq!(alice["public_key"].as_str(), Some(key.as_str()));
}

#[test]
fn user_show_gives_keys_organizations_and_reachable_repositories() {
    let env = Env::new();
    let pub_path = env.ssh_keygen("alice");
    env.ok(&[
        "user",
        "add",
        "alice",
        "--key-file",
        pub_path.to_str().unwrap(),
    ]);
    env.ok(&["org", "create", "acme"]);
    env.ok(&["org", "member", "add", "acme", "alice", "--role", "admin"]);
    env.ok(&["repo", "create", "acme/web"]);

    let shown = env.json(&["user", "show", "alice"], 0);
    assert_eq!(shown["username"], "alice");
    assert_eq!(shown["keys"][0]["fingerprint"], fingerprint(&pub_path));
    assert_eq!(shown["organizations"][0]["org"], "acme");
    assert_eq!(shown["organizations"][0]["role"], "admin");
    assert_eq!(shown["repositories"], serde_json::json!(["acme/web"]));

    let text = env.ok(&["user", "show", "alice"]);
    assert!(text.contains(&fingerprint(&pub_path)), "{text}");
    assert!(text.contains("acme") && text.contains("acme/web"), "{text}");
    let yaml = env.yaml(&["user", "show", "alice"], 0);
    assert_eq!(yaml["username"].as_str(), Some("alice"));
}

#[test]
fn user_update_changes_the_email_and_the_username() {
    let env = Env::new();
    env.ok(&["user", "add", "alice", "--email", "old@example.com"]);
    let updated = env.json(
        &[
            "user",
            "update",
            "alice",
            "--email",
            "new@example.com",
            "--rename",
            "alicia",
        ],
        0,
    );
    assert_eq!(updated["username"], "alicia");
    assert_eq!(updated["email"], "new@example.com");
    env.fails(&["user", "show", "alice"], 66);
    assert_eq!(
        env.json(&["user", "show", "alicia"], 0)["email"],
        "new@example.com"
    );
}

#[test]
fn user_update_with_an_empty_email_clears_it() {
    let env = Env::new();
    env.ok(&["user", "add", "alice", "--email", "old@example.com"]);
    env.ok(&["user", "update", "alice", "--email", ""]);
    assert_eq!(env.json(&["user", "show", "alice"], 0)["email"], "");
}

#[test]
fn an_invalid_email_is_refused_with_64() {
    let env = Env::new();
    env.fails(&["user", "add", "alice", "--email", "not an email"], 64);
    assert_eq!(env.count("SELECT count(*) FROM users"), 0);
}

#[test]
fn a_removed_user_is_gone() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"]);
    let out = env.ok(&["user", "remove", "alice"]);
    assert!(out.contains("alice"), "{out}");
    let err = env.fails(&["user", "show", "alice"], 66);
    assert!(err.contains("alice"), "{err}");
    assert_eq!(env.json(&["user", "list"], 0), serde_json::json!([]));
}

#[test]
fn a_user_can_have_several_keys() {
    let env = Env::new();
    let k1 = env.ssh_keygen("k1");
    let k2 = env.ssh_keygen("k2");
    let k3 = env.ssh_keygen("k3");
    env.ok(&[
        "user",
        "add",
        "alice",
        "--key-file",
        k1.to_str().unwrap(),
        "--key-file",
        k2.to_str().unwrap(),
    ]);
    env.ok(&[
        "user",
        "key",
        "add",
        "alice",
        "--key-file",
        k3.to_str().unwrap(),
    ]);
    let list = env.json(&["user", "key", "list", "alice"], 0);
    assert_eq!(
        field(&list, "fingerprint"),
        [fingerprint(&k1), fingerprint(&k2), fingerprint(&k3)]
    );
    let table = env.ok(&["user", "key", "list", "alice"]);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains("ssh-ed25519"), "{table}");
    let yaml = env.yaml(&["user", "key", "list", "alice"], 0);
    assert_eq!(yaml.as_sequence().unwrap().len(), 3);
    let users = env.ok(&["user", "list"]);
    assert!(
        users
            .lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .any(|c| c == "3"),
        "{users}"
    );
}

#[test]
fn the_same_key_cannot_belong_to_two_users() {
    let env = Env::new();
    let k = env.ssh_keygen("shared");
    env.ok(&["user", "add", "alice", "--key-file", k.to_str().unwrap()]);
    env.ok(&["user", "add", "bob"]);
    let err = env.fails(
        &[
            "user",
            "key",
            "add",
            "bob",
            "--key-file",
            k.to_str().unwrap(),
        ],
        73,
    );
    assert!(err.contains("alice"), "the message names the owner: {err}");
    assert_eq!(
        env.json(&["user", "key", "list", "bob"], 0),
        serde_json::json!([])
    );
    // Nor can a new user be created with it.
    env.fails(
        &["user", "add", "carol", "--key-file", k.to_str().unwrap()],
        73,
    );
    env.fails(&["user", "show", "carol"], 66);
}

#[test]
fn a_user_key_can_be_removed_by_fingerprint() {
    let env = Env::new();
    let k1 = env.ssh_keygen("k1");
    let k2 = env.ssh_keygen("k2");
    env.ok(&[
        "user",
        "add",
        "alice",
        "--key-file",
        k1.to_str().unwrap(),
        "--key-file",
        k2.to_str().unwrap(),
    ]);
    env.ok(&["user", "key", "remove", "alice", &fingerprint(&k1)]);
    let list = env.json(&["user", "key", "list", "alice"], 0);
    assert_eq!(field(&list, "fingerprint"), [fingerprint(&k2)]);
}

#[test]
fn a_user_key_can_be_removed_by_name() {
    let env = Env::new();
    let k1 = env.ssh_keygen("k1");
    let k2 = env.ssh_keygen("k2");
    env.ok(&["user", "add", "alice", "--key-file", k1.to_str().unwrap()]);
    let added = env.json(
        &[
            "user",
            "key",
            "add",
            "alice",
            "--key-file",
            k2.to_str().unwrap(),
            "--name",
            "laptop",
        ],
        0,
    );
    assert_eq!(added[0]["name"], "laptop");
    env.ok(&["user", "key", "remove", "alice", "laptop"]);
    let list = env.json(&["user", "key", "list", "alice"], 0);
    assert_eq!(field(&list, "fingerprint"), [fingerprint(&k1)]);
    env.fails(&["user", "key", "remove", "alice", "laptop"], 66);
}

#[test]
fn the_documented_public_key_column_follows_the_first_remaining_key() {
    let env = Env::new();
    let k1 = env.public_key("k1");
    let k2 = env.public_key("k2");
    env.ok(&["user", "add", "alice", "--key", &k1, "--key", &k2]);
    assert_eq!(
        env.json(&["user", "show", "alice"], 0)["public_key"],
        k1.as_str()
    );
    env.ok(&["user", "key", "remove", "alice", "k1-test"]);
    assert_eq!(
        env.json(&["user", "show", "alice"], 0)["public_key"],
        k2.as_str()
    );
    env.ok(&["user", "key", "remove", "alice", "k2-test"]);
    let shown = env.json(&["user", "show", "alice"], 0);
    assert!(shown.get("public_key").is_none(), "{shown}");
}

#[test]
fn two_keys_with_the_same_comment_can_both_be_added() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b");
    for p in [&a, &b] {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f"])
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let a_pub = env.path("a.pub");
    let b_pub = env.path("b.pub");
    env.ok(&[
        "user",
        "add",
        "alice",
        "--key-file",
        a_pub.to_str().unwrap(),
    ]);
    env.ok(&[
        "user",
        "key",
        "add",
        "alice",
        "--key-file",
        b_pub.to_str().unwrap(),
    ]);
    let list = env.json(&["user", "key", "list", "alice"], 0);
    let names = field(&list, "name");
    assert_eq!(names.len(), 2);
    assert_ne!(names[0], names[1], "each key gets its own name");
}

#[test]
fn invalid_key_text_is_refused_with_65_and_creates_no_user() {
    let env = Env::new();
    for bad in [
        "not a key",
        "ssh-ed25519 AAAAthis-is-not-base64!! x@y",
        "ssh-ed25519",
    ] {
        let err = env.fails(&["user", "add", "alice", "--key", bad], 65);
        assert!(err.contains("key"), "{err}");
    }
    assert_eq!(env.count("SELECT count(*) FROM users"), 0);
    env.ok(&["user", "add", "alice"]);
    env.fails(&["user", "key", "add", "alice", "--key", "garbage"], 65);
    assert_eq!(env.count("SELECT count(*) FROM user_keys"), 0);
}

#[test]
fn a_private_key_file_is_refused_as_a_user_key() {
    let env = Env::new();
    env.ssh_keygen("secret");
    let private = env.path("secret");
    let (code, out, err) = env.run(&[
        "user",
        "add",
        "alice",
        "--key-file",
        private.to_str().unwrap(),
    ]);
    assert_eq!(code, 65, "{out}{err}");
    assert_eq!(env.count("SELECT count(*) FROM users"), 0);
}

// ---------------------------------------------------------------------------------------------
// organizations
// ---------------------------------------------------------------------------------------------

#[test]
fn org_create_list_and_show_work_in_every_format() {
    let env = Env::new();
    env.ok(&["org", "create", "acme", "-d", "Acme Corp"]);
    let table = env.ok(&["org", "list"]);
    assert!(table.lines().next().unwrap().starts_with("NAME"), "{table}");
    assert!(
        table.contains("acme") && table.contains("Acme Corp"),
        "{table}"
    );

    let list = env.json(&["org", "list"], 0);
    let org = &list[0];
    for k in ["id", "name", "description", "created_at"] {
        assert!(org.get(k).is_some(), "{k} missing in {org}");
    }
    assert_eq!(org["name"], "acme");
    assert_eq!(org["description"], "Acme Corp");

    let yaml = env.yaml(&["org", "show", "acme"], 0);
    assert_eq!(yaml["name"].as_str(), Some("acme"));
    assert_eq!(yaml["description"].as_str(), Some("Acme Corp"));

    let text = env.ok(&["org", "show", "acme"]);
    assert!(text.starts_with("acme"), "{text}");
}

#[test]
fn org_show_lists_members_and_repositories() {
    let env = Env::new();
    acme_with_web(&env);
    let shown = env.json(&["org", "show", "acme"], 0);
    assert_eq!(field(&shown["members"], "username"), ["alice"]);
    assert_eq!(field(&shown["members"], "role"), ["owner"]);
    assert_eq!(field(&shown["repositories"], "name"), ["web"]);
    let text = env.ok(&["org", "show", "acme"]);
    assert!(text.contains("alice") && text.contains("web"), "{text}");
}

#[test]
fn org_update_changes_the_description() {
    let env = Env::new();
    env.ok(&["org", "create", "acme", "-d", "old"]);
    let updated = env.json(&["org", "update", "acme", "-d", "new words"], 0);
    assert_eq!(updated["description"], "new words");
    assert_eq!(
        env.json(&["org", "show", "acme"], 0)["description"],
        "new words"
    );
}

#[test]
fn a_deleted_org_is_gone() {
    let env = Env::new();
    env.ok(&["org", "create", "acme"]);
    env.ok(&["org", "delete", "acme"]);
    env.fails(&["org", "show", "acme"], 66);
    assert_eq!(env.json(&["org", "list"], 0), serde_json::json!([]));
}

#[test]
fn org_list_sorts_by_name_created_members_and_repos() {
    let env = Env::new();
    for u in ["u1", "u2", "u3"] {
        env.ok(&["user", "add", u]);
    }
    // Created in this order: zeta, alpha, mid.
    for o in ["zeta", "alpha", "mid"] {
        env.ok(&["org", "create", o]);
    }
    // Members: mid 3, zeta 1, alpha 0. Repositories: alpha 2, mid 1, zeta 0.
    for u in ["u1", "u2", "u3"] {
        env.ok(&["org", "member", "add", "mid", u]);
    }
    env.ok(&["org", "member", "add", "zeta", "u1"]);
    env.ok(&["repo", "create", "alpha/a1"]);
    env.ok(&["repo", "create", "alpha/a2"]);
    env.ok(&["repo", "create", "mid/m1"]);

    let names = |sort: &str| field(&env.json(&["org", "list", "--sort", sort], 0), "name");
    assert_eq!(names("name"), ["alpha", "mid", "zeta"]);
    assert_eq!(names("created"), ["zeta", "alpha", "mid"]);
    assert_eq!(names("members"), ["mid", "zeta", "alpha"]);
    assert_eq!(names("repos"), ["alpha", "mid", "zeta"]);
    // The default is by name.
    assert_eq!(
        field(&env.json(&["org", "list"], 0), "name"),
        ["alpha", "mid", "zeta"]
    );
    // The table follows the same order.
    let table = env.ok(&["org", "list", "--sort", "members"]);
    let first: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(first, ["mid", "zeta", "alpha"]);
}

#[test]
fn org_member_add_list_and_role_filter() {
    let env = Env::new();
    for u in ["alice", "bob", "carol"] {
        env.ok(&["user", "add", u]);
    }
    env.ok(&["org", "create", "acme"]);
    env.ok(&["org", "member", "add", "acme", "alice", "--role", "owner"]);
    env.ok(&["org", "member", "add", "acme", "bob", "--role", "admin"]);
    env.ok(&["org", "member", "add", "acme", "carol"]);

    let all = env.json(&["org", "member", "list", "acme"], 0);
    assert_eq!(all.as_array().unwrap().len(), 3);
    let carol = all
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["username"] == "carol")
        .unwrap();
    assert_eq!(carol["role"], "member", "the default role is member");
    for k in ["id", "username", "email", "role", "joined_at"] {
        assert!(carol.get(k).is_some(), "{k} missing in {carol}");
    }
    let admins = env.json(&["org", "member", "list", "acme", "--role", "admin"], 0);
    assert_eq!(field(&admins, "username"), ["bob"]);
    let yaml = env.yaml(&["org", "member", "list", "acme", "--role", "owner"], 0);
    assert_eq!(yaml[0]["username"].as_str(), Some("alice"));
    let table = env.ok(&["org", "member", "list", "acme"]);
    assert_eq!(table.lines().count(), 4, "{table}");
}

#[test]
fn adding_an_existing_member_again_changes_their_role() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"]);
    env.ok(&["user", "add", "bob"]);
    env.ok(&["org", "create", "acme"]);
    env.ok(&["org", "member", "add", "acme", "alice", "--role", "owner"]);
    env.ok(&["org", "member", "add", "acme", "bob", "--role", "member"]);
    let changed = env.json(
        &["org", "member", "add", "acme", "bob", "--role", "admin"],
        0,
    );
    assert_eq!(changed["role"], "admin");
    assert_eq!(changed["previous_role"], "member");
    let members = env.json(&["org", "member", "list", "acme"], 0);
    assert_eq!(members.as_array().unwrap().len(), 2, "no duplicate row");
    assert_eq!(
        env.count(
            "SELECT count(*) FROM org_members m JOIN users u ON u.id = m.user_id
             WHERE u.username = 'bob' AND m.role = 'admin'"
        ),
        1
    );
}

#[test]
fn a_member_can_be_removed() {
    let env = Env::new();
    acme_with_web(&env);
    env.ok(&["user", "add", "bob"]);
    env.ok(&["org", "member", "add", "acme", "bob"]);
    env.ok(&["org", "member", "remove", "acme", "bob"]);
    let members = env.json(&["org", "member", "list", "acme"], 0);
    assert_eq!(field(&members, "username"), ["alice"]);
    let check = env.json(&["access", "check", "bob", "acme/web"], 0);
    assert_eq!(check["can_read"], false);
    env.fails(&["org", "member", "remove", "acme", "bob"], 66);
}

#[test]
fn the_last_owner_cannot_be_removed() {
    let env = Env::new();
    acme_with_web(&env);
    let err = env.json(&["org", "member", "remove", "acme", "alice"], 64);
    assert!(
        err["error"]["message"].as_str().unwrap().contains("owner"),
        "{err}"
    );
    let members = env.json(&["org", "member", "list", "acme"], 0);
    assert_eq!(field(&members, "role"), ["owner"]);
}

#[test]
fn an_owner_can_be_removed_while_another_owner_remains() {
    let env = Env::new();
    acme_with_web(&env);
    env.ok(&["user", "add", "bob"]);
    env.ok(&["org", "member", "add", "acme", "bob", "--role", "owner"]);
    env.ok(&["org", "member", "remove", "acme", "alice"]);
    let members = env.json(&["org", "member", "list", "acme"], 0);
    assert_eq!(field(&members, "username"), ["bob"]);
    // Now bob is the last owner.
    env.fails(&["org", "member", "remove", "acme", "bob"], 64);
}

#[test]
fn the_last_owner_cannot_be_demoted() {
    let env = Env::new();
    acme_with_web(&env);
    // Demoting the only owner would leave nobody able to delete or manage the organization,
    // just like removing them.
    let (code, out, err) = env.run(&["org", "member", "add", "acme", "alice", "--role", "member"]);
    assert_eq!(
        code, 64,
        "demoting the last owner must be refused: {out}{err}"
    );
    let owners = env.json(&["org", "member", "list", "acme", "--role", "owner"], 0);
    assert_eq!(field(&owners, "username"), ["alice"]);
}

#[test]
fn org_member_list_orders_by_role_as_text_then_username() {
    let env = Env::new();
    for u in ["dave", "carol", "bob", "alice", "erin"] {
        env.ok(&["user", "add", u]);
    }
    env.ok(&["org", "create", "acme"]);
    env.ok(&["org", "member", "add", "acme", "dave", "--role", "owner"]);
    env.ok(&["org", "member", "add", "acme", "carol", "--role", "member"]);
    env.ok(&["org", "member", "add", "acme", "bob", "--role", "owner"]);
    env.ok(&["org", "member", "add", "acme", "alice", "--role", "member"]);
    env.ok(&["org", "member", "add", "acme", "erin", "--role", "admin"]);
    // The documented query: ORDER BY om.role, u.username — role as text: admin < member < owner.
    let members = env.json(&["org", "member", "list", "acme"], 0);
    assert_eq!(
        field(&members, "username"),
        ["erin", "alice", "carol", "bob", "dave"]
    );
    assert_eq!(
        field(&members, "role"),
        ["admin", "member", "member", "owner", "owner"]
    );
    // The same rows as the documented SQL, run directly.
    let conn = env.sql();
    let mut stmt = conn
        .prepare(
            "SELECT u.username FROM users u JOIN org_members om ON u.id = om.user_id
             WHERE om.org_id = (SELECT id FROM organizations WHERE name = 'acme')
             ORDER BY om.role, u.username",
        )
        .unwrap();
    let documented: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(field(&members, "username"), documented);
}

// ---------------------------------------------------------------------------------------------
// repositories (the on-disk side is in tests/repos.rs)
// ---------------------------------------------------------------------------------------------

#[test]
fn repo_json_has_the_seed_fields() {
    let env = Env::new();
    acme_with_web(&env);
    let list = env.json(&["repo", "list"], 0);
    let repo = &list[0];
    for k in ["id", "name", "org_id", "path", "description", "created_at"] {
        assert!(repo.get(k).is_some(), "{k} missing in {repo}");
    }
    assert_eq!(repo["name"], "web");
    assert_eq!(repo["path"], env.repo_dir("acme", "web").to_str().unwrap());
    let org_id = env.count("SELECT id FROM organizations WHERE name = 'acme'");
    assert_eq!(repo["org_id"], org_id);
    assert!(is_rfc3339(repo["created_at"].as_str().unwrap()));
    let yaml = env.yaml(&["repo", "show", "acme/web"], 0);
    assert_eq!(yaml["org_id"].as_i64(), Some(org_id));
    assert_eq!(yaml["name"].as_str(), Some("web"));
}

#[test]
fn repo_list_filters_by_org() {
    let env = Env::new();
    env.ok(&["org", "create", "acme"]);
    env.ok(&["org", "create", "beta"]);
    env.ok(&["repo", "create", "acme/web"]);
    env.ok(&["repo", "create", "acme/api"]);
    env.ok(&["repo", "create", "beta/tool"]);
    assert_eq!(
        field(&env.json(&["repo", "list", "--org", "acme"], 0), "name"),
        ["api", "web"]
    );
    assert_eq!(
        field(&env.json(&["repo", "list"], 0), "name"),
        ["api", "web", "tool"]
    );
    let table = env.ok(&["repo", "list", "--org", "beta"]);
    assert!(
        table.contains("beta/tool") && !table.contains("acme/"),
        "{table}"
    );
    env.fails(&["repo", "list", "--org", "nope"], 66);
}

#[test]
fn repo_list_for_a_user_is_the_union_of_membership_and_grants_without_duplicates() {
    let env = Env::new();
    env.ok(&["user", "add", "bob"]);
    env.ok(&["user", "add", "carol"]);
    for o in ["acme", "beta", "zeta"] {
        env.ok(&["org", "create", o]);
    }
    for r in ["acme/a1", "acme/a2", "beta/b1", "beta/b2", "zeta/z1"] {
        env.ok(&["repo", "create", r]);
    }
    // bob is a member of acme (both repositories), has a grant on beta/b1, and also a grant on
    // acme/a1 (reached twice: it must appear once).
    env.ok(&["org", "member", "add", "acme", "bob"]);
    env.ok(&["access", "grant", "bob", "beta/b1", "read"]);
    env.ok(&["access", "grant", "bob", "acme/a1", "write"]);
    // Another user's membership and grants do not leak into bob's list.
    env.ok(&["org", "member", "add", "zeta", "carol"]);
    env.ok(&["access", "grant", "carol", "beta/b2", "read"]);

    let list = env.json(&["repo", "list", "--user", "bob"], 0);
    let mut got: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = [("acme", "a1"), ("acme", "a2"), ("beta", "b1")]
        .iter()
        .map(|(o, n)| env.repo_dir(o, n).to_string_lossy().into_owned())
        .collect();
    want.sort();
    assert_eq!(got, want);

    // The documented query gives the same set.
    let conn = env.sql();
    let mut stmt = conn
        .prepare(
            "SELECT DISTINCT r.path FROM repositories r
             LEFT JOIN org_members om ON r.org_id = om.org_id
             LEFT JOIN repo_access ra ON r.id = ra.repo_id
             WHERE om.user_id = ?1 OR ra.user_id = ?1 ORDER BY r.path",
        )
        .unwrap();
    let bob = env.count("SELECT id FROM users WHERE username = 'bob'");
    let documented: Vec<String> = stmt
        .query_map([bob], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, documented);
}

#[test]
fn repo_list_for_a_user_without_access_is_empty() {
    let env = Env::new();
    acme_with_web(&env);
    env.ok(&["user", "add", "bob"]);
    assert_eq!(
        env.json(&["repo", "list", "--user", "bob"], 0),
        serde_json::json!([])
    );
    env.fails(&["repo", "list", "--user", "nobody"], 66);
}

#[test]
fn repo_list_refuses_org_and_user_together() {
    let env = Env::new();
    acme_with_web(&env);
    env.fails(&["repo", "list", "--org", "acme", "--user", "alice"], 64);
}

#[test]
fn repo_show_says_who_can_reach_it_and_why() {
    let env = Env::new();
    acme_with_web(&env);
    env.ok(&["user", "add", "bob"]);
    env.ok(&["access", "grant", "bob", "acme/web", "write"]);
    let shown = env.json(&["repo", "show", "acme/web"], 0);
    assert_eq!(shown["name"], "web");
    let reach: Vec<(String, String)> = shown["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["username"].as_str().unwrap().to_string(),
                m["level"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        reach,
        [
            ("alice".to_string(), "admin".to_string()),
            ("bob".to_string(), "write".to_string())
        ]
    );
    assert_eq!(field(&shown["grants"], "username"), ["bob"]);
    let text = env.ok(&["repo", "show", "acme/web"]);
    assert!(text.contains("bob") && text.contains("write"), "{text}");
}

#[test]
fn repo_update_changes_the_description() {
    let env = Env::new();
    acme_with_web(&env);
    let updated = env.json(&["repo", "update", "acme/web", "-d", "The website"], 0);
    assert_eq!(updated["description"], "The website");
    assert_eq!(
        env.json(&["repo", "show", "acme/web"], 0)["description"],
        "The website"
    );
    let text = env.ok(&["repo", "list"]);
    assert!(text.contains("The website"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// access
// ---------------------------------------------------------------------------------------------

#[test]
fn access_grant_list_and_revoke() {
    let env = Env::new();
    acme_with_web(&env);
    env.ok(&["user", "add", "bob"]);
    let out = env.ok(&["access", "grant", "bob", "acme/web", "read"]);
    assert!(out.contains("bob") && out.contains("read"), "{out}");
    let grants = env.json(&["access", "list"], 0);
    assert_eq!(field(&grants, "username"), ["bob"]);
    assert_eq!(field(&grants, "access_level"), ["read"]);
    assert_eq!(field(&grants, "repository"), ["acme/web"]);
    assert_eq!(
        field(&env.json(&["access", "list", "acme/web"], 0), "username"),
        ["bob"]
    );
    assert_eq!(
        field(
            &env.json(&["access", "list", "--user", "bob"], 0),
            "repository"
        ),
        ["acme/web"]
    );
    let yaml = env.yaml(&["access", "list"], 0);
    assert_eq!(yaml[0]["access_level"].as_str(), Some("read"));
    let table = env.ok(&["access", "list"]);
    assert!(
        table.contains("acme/web") && table.contains("bob"),
        "{table}"
    );

    env.ok(&["access", "revoke", "bob", "acme/web"]);
    assert_eq!(env.json(&["access", "list"], 0), serde_json::json!([]));
    env.fails(&["access", "revoke", "bob", "acme/web"], 66);
}

#[test]
fn granting_again_changes_the_level_without_a_second_row() {
    let env = Env::new();
    acme_with_web(&env);
    env.ok(&["user", "add", "bob"]);
    env.ok(&["access", "grant", "bob", "acme/web", "read"]);
    let changed = env.json(&["access", "grant", "bob", "acme/web", "admin"], 0);
    assert_eq!(changed["previous"], "read");
    assert_eq!(env.count("SELECT count(*) FROM repo_access"), 1);
    assert_eq!(
        field(&env.json(&["access", "list"], 0), "access_level"),
        ["admin"]
    );
}

#[test]
fn an_unknown_access_level_is_refused_with_64() {
    let env = Env::new();
    acme_with_web(&env);
    env.ok(&["user", "add", "bob"]);
    env.fails(&["access", "grant", "bob", "acme/web", "root"], 64);
    assert_eq!(env.count("SELECT count(*) FROM repo_access"), 0);
}

#[test]
fn access_check_reports_level_reason_and_what_is_allowed() {
    let env = Env::new();
    acme_with_web(&env);
    for u in ["bob", "carol", "dave"] {
        env.ok(&["user", "add", u]);
    }
    env.ok(&["org", "member", "add", "acme", "carol"]);
    env.ok(&["access", "grant", "dave", "acme/web", "write"]);

    let check = |user: &str| env.json(&["access", "check", user, "acme/web"], 0);

    let none = check("bob");
    assert_eq!(none["level"], Value::Null);
    assert!(
        none["reason"].as_str().unwrap().contains("no access"),
        "{none}"
    );
    assert_eq!(
        (&none["can_read"], &none["can_write"], &none["can_admin"]),
        (
            &Value::Bool(false),
            &Value::Bool(false),
            &Value::Bool(false)
        )
    );

    for (user, level, why, allowed) in [
        ("carol", "read", "member", [true, false, false]),
        ("dave", "write", "grant", [true, true, false]),
        ("alice", "admin", "owner", [true, true, true]),
    ] {
        let d = check(user);
        assert_eq!(d["level"], level, "{user}");
        assert!(d["reason"].as_str().unwrap().contains(why), "{d}");
        let got = [&d["can_read"], &d["can_write"], &d["can_admin"]].map(|v| v.as_bool().unwrap());
        assert_eq!(got, allowed, "{user}");
    }

    let text = env.ok(&["access", "check", "dave", "acme/web"]);
    assert!(text.contains("write"), "{text}");
    let yaml = env.yaml(&["access", "check", "carol", "acme/web"], 0);
    assert_eq!(yaml["level"].as_str(), Some("read"));
    assert_eq!(yaml["can_write"].as_bool(), Some(false));
}

#[test]
fn a_direct_grant_stronger_than_the_role_wins() {
    let env = Env::new();
    acme_with_web(&env);
    env.ok(&["user", "add", "carol"]);
    env.ok(&["org", "member", "add", "acme", "carol"]);
    env.ok(&["access", "grant", "carol", "acme/web", "write"]);
    let c = env.json(&["access", "check", "carol", "acme/web"], 0);
    assert_eq!(c["level"], "write");
    assert_eq!(c["can_write"], true);
    // Revoking the grant falls back to the role.
    env.ok(&["access", "revoke", "carol", "acme/web"]);
    let c = env.json(&["access", "check", "carol", "acme/web"], 0);
    assert_eq!(c["level"], "read");
}

// ---------------------------------------------------------------------------------------------
// cpm's own key pairs
// ---------------------------------------------------------------------------------------------

#[test]
fn key_generate_writes_a_0600_private_key_that_ssh_keygen_reads() {
    let env = Env::new();
    let key = env.json(&["key", "generate", "deploy"], 0);
    let private = std::path::PathBuf::from(key["private_key_path"].as_str().unwrap());
    assert_eq!(private, env.path(".cpm/keys/deploy"));
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private key mode {mode:o}");

    let out = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&private)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let derived = String::from_utf8(out.stdout).unwrap();
    let stored = key["public_key"].as_str().unwrap();
    let first_two = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(first_two(&derived), first_two(stored));
    assert!(stored.starts_with("ssh-ed25519 "), "{stored}");
    assert!(stored.ends_with("cpm@deploy"), "default comment: {stored}");
    assert_eq!(
        key["fingerprint"],
        fingerprint(&env.path(".cpm/keys/deploy.pub"))
    );
}

#[test]
fn key_list_and_show_give_the_seed_fields_in_every_format() {
    let env = Env::new();
    env.ok(&["key", "generate", "deploy", "--comment", "ops@example"]);
    env.ok(&["key", "generate", "backup"]);
    let list = env.json(&["key", "list"], 0);
    assert_eq!(field(&list, "name"), ["backup", "deploy"]);
    for k in ["id", "name", "public_key", "private_key_path", "created_at"] {
        assert!(list[0].get(k).is_some(), "{k} missing in {}", list[0]);
    }
    let shown = env.yaml(&["key", "show", "deploy"], 0);
    assert_eq!(shown["name"].as_str(), Some("deploy"));
    assert!(
        shown["public_key"]
            .as_str()
            .unwrap()
            .ends_with("ops@example")
    );
    let table = env.ok(&["key", "list"]);
    assert!(
        table.contains("backup") && table.contains("deploy"),
        "{table}"
    );
    let text = env.ok(&["key", "show", "deploy"]);
    assert!(text.contains("SHA256:"), "{text}");
    env.fails(&["key", "show", "nope"], 66);
}

#[test]
fn key_remove_keeps_the_files_unless_asked_to_delete_them() {
    let env = Env::new();
    env.ok(&["key", "generate", "keep"]);
    env.ok(&["key", "generate", "drop"]);
    env.ok(&["key", "remove", "keep"]);
    assert!(env.path(".cpm/keys/keep").exists());
    assert!(env.path(".cpm/keys/keep.pub").exists());
    env.ok(&["key", "remove", "drop", "--delete-files"]);
    assert!(!env.path(".cpm/keys/drop").exists());
    assert!(!env.path(".cpm/keys/drop.pub").exists());
    assert_eq!(env.json(&["key", "list"], 0), serde_json::json!([]));
    env.fails(&["key", "remove", "drop"], 66);
}

#[test]
fn generating_a_taken_key_name_is_refused_and_keeps_the_existing_files() {
    let env = Env::new();
    env.ok(&["key", "generate", "deploy"]);
    let before = std::fs::read(env.path(".cpm/keys/deploy")).unwrap();
    env.fails(&["key", "generate", "deploy"], 73);
    assert_eq!(std::fs::read(env.path(".cpm/keys/deploy")).unwrap(), before);
    assert_eq!(env.count("SELECT count(*) FROM ssh_keys"), 1);
}

// ---------------------------------------------------------------------------------------------
// servers and neighbors
// ---------------------------------------------------------------------------------------------

#[test]
fn server_add_list_show_and_remove() {
    let env = Env::new();
    env.ok(&["key", "generate", "deploy"]);
    env.ok(&[
        "server",
        "add",
        "mirror",
        "git.example.com",
        "--port",
        "2222",
        "--key",
        "deploy",
    ]);
    env.ok(&["server", "add", "plain", "10.0.0.5"]);

    let list = env.json(&["server", "list"], 0);
    assert_eq!(field(&list, "name"), ["mirror", "plain"]);
    let mirror = &list[0];
    assert_eq!(
        keys(mirror),
        [
            "created_at",
            "host",
            "id",
            "is_neighbor",
            "name",
            "port",
            "replication",
            "ssh_key_id"
        ]
    );
    assert_eq!(mirror["host"], "git.example.com");
    assert_eq!(mirror["port"], 2222);
    assert_eq!(mirror["is_neighbor"], false);
    assert_eq!(
        mirror["ssh_key_id"],
        env.count("SELECT id FROM ssh_keys WHERE name = 'deploy'")
    );
    let plain = &list[1];
    assert!(
        plain.get("ssh_key_id").is_none(),
        "omitted when none: {plain}"
    );
    assert_eq!(plain["port"], 22, "default port");

    let shown = env.yaml(&["server", "show", "mirror"], 0);
    assert_eq!(shown["host"].as_str(), Some("git.example.com"));
    assert_eq!(shown["is_neighbor"].as_bool(), Some(false));
    let table = env.ok(&["server", "list"]);
    assert!(
        table.contains("deploy") && table.contains("2222"),
        "{table}"
    );

    env.ok(&["server", "remove", "plain"]);
    assert_eq!(field(&env.json(&["server", "list"], 0), "name"), ["mirror"]);
    env.fails(&["server", "show", "plain"], 66);
}

#[test]
fn server_add_with_an_unknown_key_is_66_and_adds_nothing() {
    let env = Env::new();
    let err = env.fails(
        &["server", "add", "mirror", "h.example", "--key", "ghost"],
        66,
    );
    assert!(err.contains("ghost"), "{err}");
    assert_eq!(env.count("SELECT count(*) FROM servers"), 0);
}

#[test]
fn a_bad_host_is_refused_with_64() {
    let env = Env::new();
    env.fails(&["server", "add", "evil", "-oProxyCommand=sh"], 64);
    env.fails(&["server", "add", "evil", "--", "-oProxyCommand=sh"], 64);
    env.fails(&["server", "add", "evil", "user@host"], 64);
    assert_eq!(env.count("SELECT count(*) FROM servers"), 0);
}

#[test]
fn neighbors_add_and_remove_flag_a_server_without_deleting_it() {
    let env = Env::new();
    env.ok(&["server", "add", "plain", "10.0.0.5"]);
    env.ok(&["neighbors", "add", "peer", "10.0.0.9", "--port", "2022"]);
    let neighbors = env.json(&["neighbors", "list"], 0);
    assert_eq!(field(&neighbors, "name"), ["peer"]);
    assert_eq!(neighbors[0]["is_neighbor"], true);
    assert_eq!(neighbors[0]["port"], 2022);
    let table = env.ok(&["neighbors", "list"]);
    assert!(
        table.contains("peer") && !table.contains("plain"),
        "{table}"
    );

    env.ok(&["neighbors", "remove", "peer"]);
    assert_eq!(env.json(&["neighbors", "list"], 0), serde_json::json!([]));
    let all = env.json(&["server", "list"], 0);
    assert_eq!(field(&all, "name"), ["peer", "plain"], "still registered");
    env.fails(&["neighbors", "remove", "ghost"], 66);
}

#[test]
fn neighbors_add_flags_an_existing_server() {
    let env = Env::new();
    env.ok(&["server", "add", "plain", "10.0.0.5"]);
    env.ok(&["neighbors", "add", "plain", "10.0.0.5"]);
    let yaml = env.yaml(&["neighbors", "list"], 0);
    assert_eq!(yaml[0]["name"].as_str(), Some("plain"));
    assert_eq!(yaml[0]["is_neighbor"].as_bool(), Some(true));
    assert_eq!(env.count("SELECT count(*) FROM servers"), 1);
}

// ---------------------------------------------------------------------------------------------
// log, completions, db
// ---------------------------------------------------------------------------------------------

#[test]
fn log_records_each_change_newest_first_with_the_os_user() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"]);
    env.ok(&["org", "create", "acme"]);
    env.ok(&["repo", "create", "acme/web"]);
    env.ok(&["user", "list"]);
    let log = env.json(&["log"], 0);
    assert_eq!(
        field(&log, "action"),
        ["repo.create", "org.create", "user.add"],
        "reads are not logged"
    );
    assert_eq!(field(&log, "target"), ["acme/web", "acme", "alice"]);
    assert!(field(&log, "actor").iter().all(|a| a == "tester"), "{log}");
    assert_eq!(
        field(&env.json(&["log", "-n", "1"], 0), "action"),
        ["repo.create"]
    );
    let table = env.ok(&["log"]);
    assert!(
        table.contains("repo.create") && table.contains("tester"),
        "{table}"
    );
    let yaml = env.yaml(&["log"], 0);
    assert_eq!(yaml.as_sequence().unwrap().len(), 3);
}

#[test]
fn a_failed_change_leaves_no_log_entry() {
    let env = Env::new();
    env.ok(&["org", "create", "acme"]);
    env.fails(&["org", "create", "acme"], 73);
    env.fails(&["user", "add", "../x"], 64);
    assert_eq!(field(&env.json(&["log"], 0), "action"), ["org.create"]);
}

#[test]
fn completions_bash_prints_a_completion_script() {
    let env = Env::new();
    let out = env.ok(&["completions", "bash"]);
    assert!(out.contains("_cpm"), "{out}");
    assert!(out.contains("complete"), "{out}");
    for sub in ["user", "org", "repo", "access", "neighbors"] {
        assert!(out.contains(sub), "{sub} missing");
    }
}

#[test]
fn completions_piped_into_a_closed_reader_exit_without_a_panic() {
    // `cpm completions bash | head -1`: the reader goes away before cpm writes.
    let env = Env::new();
    let mut child = env
        .cmd()
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "cpm panicked on a closed pipe: {err}"
    );
}

#[test]
fn db_backup_then_restore_brings_back_a_deleted_user() {
    let env = Env::new();
    env.ok(&["user", "add", "alice", "--email", "alice@example.com"]);
    let dir = env.path("backups");
    std::fs::create_dir(&dir).unwrap();
    env.ok(&["db", "backup", "--out", dir.to_str().unwrap()]);
    let files = env.entries(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let backup = dir.join(&files[0]);

    env.ok(&["user", "remove", "alice"]);
    env.fails(&["user", "show", "alice"], 66);
    // A database with data is not replaced without --force.
    env.fails(&["db", "restore", "--in", backup.to_str().unwrap()], 73);
    env.ok(&["db", "restore", "--in", backup.to_str().unwrap(), "--force"]);
    let alice = env.json(&["user", "show", "alice"], 0);
    assert_eq!(alice["email"], "alice@example.com");
}

#[test]
fn db_check_passes_on_a_database_cpm_made() {
    let env = Env::new();
    acme_with_web(&env);
    let out = env.ok(&["db", "check"]);
    assert!(out.starts_with("ok"), "{out}");
    let (code, json, err) = env.run(&["db", "check", "--json"]);
    assert_eq!(code, 0, "{json}{err}");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn db_check_honours_the_global_format_flag() {
    let env = Env::new();
    acme_with_web(&env);
    // `--format json` is a global flag; a script passing it expects one JSON document.
    let out = env.ok(&["db", "check", "--format", "json"]);
    let parsed: Result<Value, _> = serde_json::from_str(&out);
    assert!(
        parsed.is_ok(),
        "`db check --format json` printed no JSON: {out}"
    );
}

// ---------------------------------------------------------------------------------------------
// formats and configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn the_config_file_sets_the_default_format() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"]);
    std::fs::write(env.path(".cpm/config.toml"), "format = \"json\"\n").unwrap();
    let out = env.ok(&["user", "list"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(field(&v, "username"), ["alice"]);
    // The flag still wins.
    let table = env.ok(&["user", "list", "--format", "table"]);
    assert!(table.starts_with("USERNAME"), "{table}");
}

#[test]
fn the_short_format_flag_works_before_the_command() {
    let env = Env::new();
    env.ok(&["org", "create", "acme"]);
    let out = env.ok(&["-o", "yaml", "org", "list"]);
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(v[0]["name"].as_str(), Some("acme"));
}

// ---------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_names_are_66_with_a_message_naming_them() {
    let env = Env::new();
    env.ok(&["org", "create", "acme"]);
    env.ok(&["user", "add", "alice"]);
    for (args, name) in [
        (vec!["user", "show", "ghost"], "ghost"),
        (vec!["user", "remove", "ghost"], "ghost"),
        (vec!["user", "key", "list", "ghost"], "ghost"),
        (vec!["org", "show", "nowhere"], "nowhere"),
        (vec!["org", "delete", "nowhere"], "nowhere"),
        (vec!["org", "member", "add", "nowhere", "alice"], "nowhere"),
        (vec!["org", "member", "add", "acme", "ghost"], "ghost"),
        (vec!["repo", "show", "acme/nothing"], "acme/nothing"),
        (vec!["repo", "create", "nowhere/web"], "nowhere"),
        (vec!["repo", "delete", "acme/nothing"], "acme/nothing"),
        (vec!["repo", "rename", "acme/nothing", "x"], "acme/nothing"),
        (
            vec!["access", "grant", "alice", "acme/nothing", "read"],
            "acme/nothing",
        ),
        (
            vec!["access", "check", "ghost", "acme/nothing"],
            "acme/nothing",
        ),
        (vec!["key", "show", "nokey"], "nokey"),
        (vec!["server", "remove", "nohost"], "nohost"),
    ] {
        let (code, out, err) = env.run(&args);
        assert_eq!(code, 66, "{args:?}: {out}{err}");
        assert!(
            err.contains(name),
            "{args:?}: the message should name {name}: {err}"
        );
        assert!(out.is_empty(), "{args:?}: nothing on stdout: {out}");
    }
}

#[test]
fn json_errors_are_one_document_on_stdout() {
    let env = Env::new();
    let (code, out, err) = env.run(&["user", "show", "ghost", "--format", "json"]);
    assert_eq!(code, 66);
    assert!(err.is_empty(), "nothing on stderr: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys(&v), ["error"]);
    assert_eq!(keys(&v["error"]), ["code", "message"]);
    assert_eq!(v["error"]["code"], "not_found");
    assert!(v["error"]["message"].as_str().unwrap().contains("ghost"));

    let exists = {
        env.ok(&["org", "create", "acme"]);
        env.json(&["org", "create", "acme"], 73)
    };
    assert_eq!(exists["error"]["code"], "already_exists");
    let invalid = env.json(&["org", "create", "a/b"], 64);
    assert_eq!(invalid["error"]["code"], "invalid_argument");
}

#[test]
fn yaml_errors_are_one_document_on_stdout() {
    let env = Env::new();
    let v = env.yaml(&["org", "show", "ghost"], 66);
    assert_eq!(v["error"]["code"].as_str(), Some("not_found"));
    assert!(v["error"]["message"].as_str().unwrap().contains("ghost"));
}

#[test]
fn duplicate_names_are_73() {
    let env = Env::new();
    acme_with_web(&env);
    env.ok(&["key", "generate", "deploy"]);
    env.ok(&["server", "add", "mirror", "h.example"]);
    env.ok(&["repo", "create", "acme/api"]);
    for args in [
        vec!["user", "add", "alice"],
        vec!["org", "create", "acme"],
        vec!["repo", "create", "acme/web"],
        vec!["repo", "rename", "acme/api", "web"],
        vec!["key", "generate", "deploy"],
        vec!["server", "add", "mirror", "other.example"],
    ] {
        let (code, out, err) = env.run(&args);
        assert_eq!(code, 73, "{args:?}: {out}{err}");
    }
    assert_eq!(env.count("SELECT count(*) FROM users"), 1);
    assert_eq!(env.count("SELECT count(*) FROM organizations"), 1);
    assert_eq!(env.count("SELECT count(*) FROM repositories"), 2);
    assert_eq!(env.count("SELECT count(*) FROM ssh_keys"), 1);
    assert_eq!(env.count("SELECT count(*) FROM servers"), 1);
}

#[test]
fn renaming_a_user_onto_another_is_73() {
    let env = Env::new();
    env.ok(&["user", "add", "alice"]);
    env.ok(&["user", "add", "bob"]);
    env.fails(&["user", "update", "bob", "--rename", "alice"], 73);
    env.ok(&["user", "show", "bob"]);
}

#[test]
fn invalid_names_are_64_and_create_nothing() {
    let env = Env::new();
    env.ok(&["org", "create", "acme"]);
    let bad = ["../x", "a/b", ".hidden", "-rf", "with space", "..", ""];
    for name in bad {
        for args in [
            vec!["user", "add", "--", name],
            vec!["org", "create", "--", name],
            vec!["key", "generate", "--", name],
            vec!["server", "add", "--", name, "h.example"],
        ] {
            let (code, out, err) = env.run(&args);
            assert_eq!(code, 64, "{args:?}: {out}{err}");
        }
        let spec = format!("acme/{name}");
        let (code, out, err) = env.run(&["repo", "create", "--", &spec]);
        assert_eq!(code, 64, "repo create {spec:?}: {out}{err}");
    }
    assert_eq!(env.count("SELECT count(*) FROM users"), 0);
    assert_eq!(env.count("SELECT count(*) FROM organizations"), 1);
    assert_eq!(env.count("SELECT count(*) FROM repositories"), 0);
    assert_eq!(env.count("SELECT count(*) FROM ssh_keys"), 0);
    assert_eq!(env.count("SELECT count(*) FROM servers"), 0);
    // Nothing on disk either: no repository directories, no key files.
    let root = env.entries(&env.root());
    assert!(root.iter().all(|e| e == "acme"), "{root:?}");
    let acme = env.entries(&env.root().join("acme"));
    assert!(acme.is_empty(), "{acme:?}");
    assert!(env.entries(&env.path(".cpm/keys")).is_empty());
    assert_eq!(env.entries(env.home()), [".cpm"]);
}

#[test]
fn an_invalid_new_name_for_a_repository_is_64_and_changes_nothing() {
    let env = Env::new();
    acme_with_web(&env);
    for bad in ["../x", "a/b", ".hidden", "-rf", "a b"] {
        env.fails(&["repo", "rename", "--", "acme/web", bad], 64);
    }
    assert!(env.repo_dir("acme", "web").is_dir());
    assert_eq!(field(&env.json(&["repo", "list"], 0), "name"), ["web"]);
}

#[test]
fn an_unknown_flag_is_a_usage_error_64() {
    let env = Env::new();
    env.fails(&["user", "list", "--frobnicate"], 64);
    env.fails(&["nosuchcommand"], 64);
    env.fails(&["org", "list", "--sort", "size"], 64);
}

#[test]
fn help_and_version_exit_0() {
    let env = Env::new();
    let help = env.ok(&["--help"]);
    assert!(help.contains("repo"), "{help}");
    let version = env.ok(&["--version"]);
    assert!(version.starts_with("cpm "), "{version}");
}

// ---------------------------------------------------------------------------------------------
// a database made by the original cpm
// ---------------------------------------------------------------------------------------------

const ORIGINAL_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN0BIHEyNW7sV0q0Cg6w+8BThAYPerm5BjfSIWcE+No+ old@laptop";

/// Makes `~/.cpm/cpm.db` as the original Go cpm would have: the documented tables created with
/// `CREATE TABLE IF NOT EXISTS`, no migration history, and (as in its `initSchema`) no
/// `org_members` table.
fn original_database(env: &Env) {
    std::fs::create_dir_all(env.path(".cpm")).unwrap();
    let v1 = include_str!("../migrations/V1__documented_schema.sql");
    let start = v1.find("CREATE TABLE IF NOT EXISTS org_members").unwrap();
    let end = start + v1[start..].find(");").unwrap() + 2;
    let without_members = format!("{}{}", &v1[..start], &v1[end..]);
    assert!(!without_members.contains("org_members"));
    let conn = rusqlite::Connection::open(env.db()).unwrap();
    conn.execute_batch(&without_members).unwrap();
    conn.execute(
        "INSERT INTO users (username, email, public_key) VALUES ('olduser', 'old@example.com', ?1)",
        [ORIGINAL_KEY],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO organizations (name, description) VALUES ('oldorg', 'from the Go version')",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO repositories (name, org_id, path, description) VALUES ('legacy', 1, '/srv/git/oldorg/legacy.git', 'old')",
        [],
    )
    .unwrap();
}

fn table_exists(env: &Env, table: &str) -> bool {
    env.sql()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        == 1
}

#[test]
fn a_database_made_by_the_original_cpm_is_adopted() {
    let env = Env::new();
    original_database(&env);
    assert!(!table_exists(&env, "org_members"));

    let list = env.json(&["user", "list"], 0);
    assert_eq!(field(&list, "username"), ["olduser"]);
    assert!(
        table_exists(&env, "org_members"),
        "the missing table is created"
    );

    let shown = env.json(&["user", "show", "olduser"], 0);
    assert_eq!(shown["email"], "old@example.com");
    assert_eq!(shown["public_key"], ORIGINAL_KEY);
    assert!(is_rfc3339(shown["created_at"].as_str().unwrap()), "{shown}");

    let repos = env.json(&["repo", "list", "--org", "oldorg"], 0);
    assert_eq!(field(&repos, "name"), ["legacy"]);
    assert_eq!(repos[0]["path"], "/srv/git/oldorg/legacy.git");
    // The adopted database now takes members and passes cpm's own check.
    env.ok(&[
        "org", "member", "add", "oldorg", "olduser", "--role", "owner",
    ]);
    env.ok(&["db", "check"]);
}

#[test]
fn an_adopted_users_documented_key_is_one_of_their_keys() {
    let env = Env::new();
    original_database(&env);
    // The original kept one key per user in users.public_key; after adoption it must still
    // identify that user: listed among their keys, and refused for anyone else.
    let keys = env.json(&["user", "key", "list", "olduser"], 0);
    assert_eq!(
        field(&keys, "public_key"),
        [ORIGINAL_KEY],
        "the adopted user's key is not among their keys"
    );
    env.ok(&["user", "add", "intruder"]);
    env.fails(
        &["user", "key", "add", "intruder", "--key", ORIGINAL_KEY],
        73,
    );
}
