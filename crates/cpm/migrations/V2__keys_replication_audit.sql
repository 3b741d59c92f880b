-- Extensions, in new tables only (the documented ones stay as documented):
-- several SSH keys per user, replication status per server and repository, and an audit log.

CREATE TABLE user_keys (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    UNIQUE(user_id, name)
) STRICT;
CREATE INDEX idx_user_keys_user_id ON user_keys(user_id);

CREATE TABLE replication_status (
    server_id INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    last_attempt_at TEXT,
    last_ok_at TEXT,
    last_error TEXT,
    last_pushed_commit TEXT,
    PRIMARY KEY (server_id, repo_id)
) STRICT;

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX idx_audit_log_at ON audit_log(at);
