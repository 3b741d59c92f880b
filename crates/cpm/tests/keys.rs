//! Tests for `cpm::keys`, with the real `ssh-keygen` as the peer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cpm::keys::{
    GeneratedKey, KeyError, fingerprint_of, generate, parse_public_key, read_public_key_file,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn ssh_keygen(args: &[&str]) -> std::process::Output {
    Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("ssh-keygen must be installed (apt-get install openssh-client)")
}

/// The fingerprint `ssh-keygen -lf` prints for a public key file.
fn keygen_fingerprint(pub_path: &Path) -> String {
    let out = ssh_keygen(&["-lf", pub_path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let fp = text.split_whitespace().nth(1).unwrap().to_owned();
    assert!(fp.starts_with("SHA256:"), "{text}");
    fp
}

/// Makes a key pair with ssh-keygen; returns the private key path, or None
/// if this ssh-keygen refuses the type.
fn keygen_pair(dir: &Path, name: &str, args: &[&str]) -> Option<PathBuf> {
    let path = dir.join(name);
    let mut all = vec!["-q", "-N", "", "-C", "someone@example.org", "-f"];
    all.push(path.to_str().unwrap());
    all.extend_from_slice(args);
    let out = ssh_keygen(&all);
    if out.status.success() {
        Some(path)
    } else {
        eprintln!("ssh-keygen {args:?} refused: {out:?}");
        None
    }
}

fn pub_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn code<T: std::fmt::Debug>(r: Result<T, KeyError>) -> &'static str {
    r.expect_err("expected an error").code()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn first_two(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn generated_key_has_safe_modes_and_matches_ssh_keygen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state").join("keys");
    let key: GeneratedKey = generate(&dir, "host_ed25519", "cpm@test host").unwrap();

    assert_eq!(key.private_key_path, dir.join("host_ed25519"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&key.private_key_path), 0o600);
    let pub_file = dir.join("host_ed25519.pub");
    assert_eq!(mode(&pub_file), 0o644);
    assert_eq!(entries(&dir), ["host_ed25519", "host_ed25519.pub"]);

    assert!(key.public_key.starts_with("ssh-ed25519 AAAA"));
    assert!(key.public_key.ends_with(" cpm@test host"));
    assert_eq!(
        std::fs::read_to_string(&pub_file).unwrap(),
        format!("{}\n", key.public_key)
    );
    let private_text = std::fs::read_to_string(&key.private_key_path).unwrap();
    assert!(private_text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));

    // ssh-keygen derives the same public key from our private key.
    let out = ssh_keygen(&["-y", "-f", key.private_key_path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let derived = String::from_utf8(out.stdout).unwrap();
    assert_eq!(first_two(&derived), first_two(&key.public_key));

    // ...and the same fingerprint.
    assert_eq!(keygen_fingerprint(&pub_file), key.fingerprint);
    assert_eq!(fingerprint_of(&key.public_key).unwrap(), key.fingerprint);

    // Our own parser round-trips it.
    let info = read_public_key_file(&pub_file).unwrap();
    assert_eq!(info.openssh, key.public_key);
    assert_eq!(info.comment, "cpm@test host");
    assert_eq!(info.algorithm, "ssh-ed25519");
}

#[test]
fn generate_into_existing_dir_and_with_empty_comment() {
    let tmp = tempfile::tempdir().unwrap();
    let key = generate(tmp.path(), "k", "").unwrap();
    assert_eq!(key.public_key.split_whitespace().count(), 2);
    assert_eq!(
        keygen_fingerprint(&tmp.path().join("k.pub")),
        key.fingerprint
    );
    let other = generate(tmp.path(), "k2", "x").unwrap();
    assert_ne!(other.fingerprint, key.fingerprint);
}

#[test]
fn generating_twice_refuses_and_keeps_first_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let first = generate(dir, "deploy", "first").unwrap();
    let private_before = std::fs::read(dir.join("deploy")).unwrap();
    let public_before = std::fs::read(dir.join("deploy.pub")).unwrap();

    let err = generate(dir, "deploy", "second").unwrap_err();
    assert_eq!(err.code(), "key_exists");
    assert_eq!(err.exit_code(), 73);
    assert!(err.to_string().contains("already exists"), "{err}");

    assert_eq!(std::fs::read(dir.join("deploy")).unwrap(), private_before);
    assert_eq!(
        std::fs::read(dir.join("deploy.pub")).unwrap(),
        public_before
    );
    assert_eq!(entries(dir), ["deploy", "deploy.pub"]);
    assert_eq!(mode(&first.private_key_path), 0o600);
}

#[test]
fn existing_public_half_alone_also_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("lonely.pub"), "x\n").unwrap();
    let err = generate(tmp.path(), "lonely", "c").unwrap_err();
    assert_eq!(err.code(), "key_exists");
    assert_eq!(entries(tmp.path()), ["lonely.pub"]);
}

#[test]
fn bad_names_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    for name in [
        "a/b",
        "../escape",
        "..",
        ".",
        ".hidden",
        "-rf",
        "",
        "with space",
        "nul\0byte",
        "é",
        &"x".repeat(65),
        "/abs",
    ] {
        let err = generate(&dir, name, "c").unwrap_err();
        assert_eq!(err.code(), "invalid_name", "{name:?}");
        assert_eq!(err.exit_code(), 64);
    }
    assert!(!dir.exists());
    assert!(entries(tmp.path()).is_empty());
    assert!(!tmp.path().parent().unwrap().join("escape").exists());

    // The longest allowed name, and all allowed characters, work.
    generate(&dir, &"x".repeat(64), "c").unwrap();
    generate(&dir, "Az09._-", "c").unwrap();
}

#[test]
fn bad_comments_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for comment in ["two\nlines", "tab\there", " padded", &"c".repeat(2000)] {
        let err = generate(tmp.path(), "k", comment).unwrap_err();
        assert_eq!(err.code(), "invalid_comment", "{comment:?}");
    }
    assert!(entries(tmp.path()).is_empty());
}

#[test]
fn unusable_dir_is_an_io_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = generate(&file, "k", "c").unwrap_err();
    assert_eq!(err.code(), "io_error");
    assert_eq!(err.exit_code(), 74);
    let err = generate(&file.join("sub"), "k", "c").unwrap_err();
    assert_eq!(err.code(), "io_error");
}

#[test]
fn keys_made_by_ssh_keygen_parse_with_matching_fingerprints() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        ("ed", &["-t", "ed25519"], "ssh-ed25519"),
        (
            "ec256",
            &["-t", "ecdsa", "-b", "256"],
            "ecdsa-sha2-nistp256",
        ),
        (
            "ec384",
            &["-t", "ecdsa", "-b", "384"],
            "ecdsa-sha2-nistp384",
        ),
        (
            "ec521",
            &["-t", "ecdsa", "-b", "521"],
            "ecdsa-sha2-nistp521",
        ),
        ("rsa2048", &["-t", "rsa", "-b", "2048"], "ssh-rsa"),
        ("rsa3072", &["-t", "rsa", "-b", "3072"], "ssh-rsa"),
    ];
    for (name, args, algorithm) in cases {
        let private = keygen_pair(tmp.path(), name, args).expect("ssh-keygen should make this");
        let pub_file = pub_path(&private);
        let line = std::fs::read_to_string(&pub_file).unwrap();

        let info = parse_public_key(&line).unwrap();
        assert_eq!(info.algorithm, *algorithm);
        assert_eq!(info.fingerprint, keygen_fingerprint(&pub_file), "{name}");
        assert_eq!(info.comment, "someone@example.org");
        assert_eq!(info.openssh, line.trim_end());
        assert_eq!(read_public_key_file(&pub_file).unwrap(), info);
        assert_eq!(fingerprint_of(&line).unwrap(), info.fingerprint);

        // Surrounding whitespace, CRLF and extra inner spaces are tolerated
        // and normalised away.
        let (ty, rest) = line.trim().split_once(' ').unwrap();
        let messy = format!("\n  \t{ty}   {rest}\r\n\n");
        assert_eq!(parse_public_key(&messy).unwrap(), info);
    }
}

#[test]
fn comment_is_kept_and_omitted_when_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let private = keygen_pair(tmp.path(), "ed", &["-t", "ed25519"]).unwrap();
    let line = std::fs::read_to_string(pub_path(&private)).unwrap();
    let bare = first_two(&line);

    let info = parse_public_key(&bare).unwrap();
    assert_eq!(info.comment, "");
    assert_eq!(info.openssh, bare);

    let info = parse_public_key(&format!("{bare}   alice  at  laptop  ")).unwrap();
    assert_eq!(info.comment, "alice  at  laptop");
    assert_eq!(info.openssh, format!("{bare} alice  at  laptop"));
}

#[test]
fn security_key_types_are_accepted() {
    use ssh_key::public::{Ed25519PublicKey, SkEd25519};
    let tmp = tempfile::tempdir().unwrap();
    let sk = SkEd25519::new(Ed25519PublicKey([7; 32]), "ssh:".to_owned());
    let mut key = ssh_key::PublicKey::from(sk);
    key.set_comment("yubikey");
    let line = key.to_openssh().unwrap();
    let file = tmp.path().join("sk.pub");
    std::fs::write(&file, format!("{line}\n")).unwrap();

    let info = parse_public_key(&line).unwrap();
    assert_eq!(info.algorithm, "sk-ssh-ed25519@openssh.com");
    assert_eq!(info.fingerprint, keygen_fingerprint(&file));
}

#[test]
fn weak_rsa_and_dsa_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    if let Some(private) = keygen_pair(tmp.path(), "rsa1024", &["-t", "rsa", "-b", "1024"]) {
        let line = std::fs::read_to_string(pub_path(&private)).unwrap();
        let err = parse_public_key(&line).unwrap_err();
        assert_eq!(err.code(), "weak_key", "{err}");
        assert_eq!(err.exit_code(), 65);
        assert!(err.to_string().contains("1024"), "{err}");
    }
    if let Some(private) = keygen_pair(tmp.path(), "dsa", &["-t", "dsa"]) {
        let line = std::fs::read_to_string(pub_path(&private)).unwrap();
        let err = parse_public_key(&line).unwrap_err();
        assert_eq!(err.code(), "unsupported_key_type", "{err}");
        assert!(err.to_string().contains("DSA"), "{err}");
    }
    let err = parse_public_key("ssh-ed448 AAAAC3NzaC1lZDQ0OA== x").unwrap_err();
    assert_eq!(err.code(), "unsupported_key_type", "{err}");
}

#[test]
fn certificates_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = keygen_pair(tmp.path(), "ca", &["-t", "ed25519"]).unwrap();
    let user = keygen_pair(tmp.path(), "user", &["-t", "ed25519"]).unwrap();
    let out = ssh_keygen(&[
        "-q",
        "-s",
        ca.to_str().unwrap(),
        "-I",
        "id",
        "-n",
        "user",
        pub_path(&user).to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let cert = std::fs::read_to_string(tmp.path().join("user-cert.pub")).unwrap();
    let err = parse_public_key(&cert).unwrap_err();
    assert_eq!(err.code(), "unsupported_key_type", "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn bad_input_is_refused_with_the_right_code() {
    let tmp = tempfile::tempdir().unwrap();
    let ed = keygen_pair(tmp.path(), "ed", &["-t", "ed25519"]).unwrap();
    let ec = keygen_pair(tmp.path(), "ec", &["-t", "ecdsa"]).unwrap();
    let rsa = keygen_pair(tmp.path(), "rsa", &["-t", "rsa", "-b", "3072"]).unwrap();
    let ed_line = std::fs::read_to_string(pub_path(&ed)).unwrap();
    let ec_line = std::fs::read_to_string(pub_path(&ec)).unwrap();

    // Private keys, in every format we can make.
    for private in [&ed, &ec, &rsa] {
        let text = std::fs::read_to_string(private).unwrap();
        let err = parse_public_key(&text).unwrap_err();
        assert_eq!(err.code(), "private_key_given");
        assert!(err.to_string().contains("give the .pub file"), "{err}");
        assert!(!err.to_string().contains("BEGIN"), "must not echo the key");
        assert_eq!(code(read_public_key_file(private)), "private_key_given");
    }
    let pem = keygen_pair(tmp.path(), "pem", &["-t", "rsa", "-b", "2048", "-m", "PEM"]).unwrap();
    let text = std::fs::read_to_string(&pem).unwrap();
    assert!(text.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert_eq!(code(parse_public_key(&text)), "private_key_given");

    // Two keys.
    let err = parse_public_key(&format!("{ed_line}{ec_line}")).unwrap_err();
    assert_eq!(err.code(), "multiple_keys");
    assert!(err.to_string().contains("found 2"), "{err}");
    assert_eq!(err.exit_code(), 65);

    // Empty input.
    for empty in ["", "   ", "\n\n\t\r\n"] {
        let err = parse_public_key(empty).unwrap_err();
        assert_eq!(err.code(), "invalid_key");
        assert!(err.to_string().contains("empty"), "{err}");
    }

    // Random text.
    for junk in [
        "hello world",
        "correct horse battery staple",
        "AAAAC3NzaC1lZDI1NTE5AAAAI",
        "ssh-ed25519",
        "ssh-ed25519 !!!not-base64!!!",
        "\u{1f511}",
    ] {
        assert_eq!(code(parse_public_key(junk)), "invalid_key", "{junk:?}");
    }

    // Truncated base64, at an arbitrary point and at a 4-character boundary.
    let (ty, rest) = ed_line.trim().split_once(' ').unwrap();
    let b64 = rest.split_whitespace().next().unwrap();
    for cut in [b64.len() - 5, b64.len() - 4, (b64.len() / 4) * 4 - 8, 20] {
        let truncated = format!("{ty} {} c", &b64[..cut]);
        let err = parse_public_key(&truncated).unwrap_err();
        assert_eq!(err.code(), "invalid_key", "cut at {cut}: {err}");
    }

    // Key data of one type under another type's name.
    let lying = format!("ecdsa-sha2-nistp256 {b64}");
    assert_eq!(code(parse_public_key(&lying)), "invalid_key");

    // Extra data appended to the key blob.
    let padded = format!("{ty} {b64}AAAA");
    assert_eq!(code(parse_public_key(&padded)), "invalid_key");

    // authorized_keys options in front.
    let with_options = format!("no-pty,command=\"/bin/true\" {ed_line}");
    let err = parse_public_key(&with_options).unwrap_err();
    assert_eq!(err.code(), "invalid_key");
    assert!(err.to_string().contains("options"), "{err}");

    // A key wrapped over two lines.
    let (head, tail) = ed_line.split_at(40);
    let err = parse_public_key(&format!("{head}\n{tail}")).unwrap_err();
    assert_eq!(err.code(), "invalid_key");
    assert!(err.to_string().contains("single line"), "{err}");

    // An RFC 4716 export of the same key.
    let out = ssh_keygen(&["-e", "-f", pub_path(&ed).to_str().unwrap()]);
    assert!(out.status.success());
    let rfc4716 = String::from_utf8(out.stdout).unwrap();
    let err = parse_public_key(&rfc4716).unwrap_err();
    assert_eq!(err.code(), "invalid_key");
    assert!(err.to_string().contains("ssh-keygen -i"), "{err}");

    // Control characters in the comment.
    let bad_comment = format!("{ty} {b64} evil\u{1b}[2Jcomment");
    assert_eq!(code(parse_public_key(&bad_comment)), "invalid_key");

    // Far too large.
    let huge = format!("{ty} {b64} {}", "x".repeat(20_000));
    assert_eq!(code(parse_public_key(&huge)), "invalid_key");
}

#[test]
fn reading_key_files() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.pub");
    let err = read_public_key_file(&missing).unwrap_err();
    assert_eq!(err.code(), "io_error");
    assert_eq!(err.exit_code(), 74);
    assert!(err.to_string().contains("nope.pub"), "{err}");

    let big = tmp.path().join("big.pub");
    std::fs::write(&big, vec![b'a'; 16 * 1024 + 1]).unwrap();
    let err = read_public_key_file(&big).unwrap_err();
    assert_eq!(err.code(), "invalid_key");
    assert!(err.to_string().contains("16 KiB"), "{err}");

    let binary = tmp.path().join("bin.pub");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    assert_eq!(code(read_public_key_file(&binary)), "invalid_key");

    let text = tmp.path().join("text.pub");
    std::fs::write(&text, "just some notes\n").unwrap();
    let err = read_public_key_file(&text).unwrap_err();
    assert_eq!(err.code(), "invalid_key");
    assert!(err.to_string().contains("text.pub"), "{err}");

    assert_eq!(code(read_public_key_file(tmp.path())), "invalid_key");
}

#[test]
fn error_codes_and_exit_codes_are_stable() {
    let cases: Vec<(KeyError, &str, u8)> = vec![
        (
            KeyError::InvalidName {
                name: "x/y".into(),
                reason: "r",
            },
            "invalid_name",
            64,
        ),
        (
            KeyError::AlreadyExists { path: "/k".into() },
            "key_exists",
            73,
        ),
        (
            KeyError::Io {
                path: "/k".into(),
                source: std::io::Error::other("boom"),
            },
            "io_error",
            74,
        ),
        (
            KeyError::NotAPublicKey { detail: "d".into() },
            "invalid_key",
            65,
        ),
        (KeyError::PrivateKeyGiven, "private_key_given", 65),
        (KeyError::MultipleKeys { count: 2 }, "multiple_keys", 65),
        (
            KeyError::UnsupportedAlgorithm {
                algorithm: "ssh-dss".into(),
                hint: "h".into(),
            },
            "unsupported_key_type",
            65,
        ),
        (KeyError::WeakKey { detail: "d".into() }, "weak_key", 65),
    ];
    for (err, code, exit) in cases {
        assert_eq!(err.code(), code);
        assert_eq!(err.exit_code(), exit);
    }
}
