-- Rules are desired state per client: every change to a client's rules bumps its generation, and
-- the client reports back which generation it runs and each rule's status.
ALTER TABLE clients ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN applied_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rules ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'active', 'failed'));
ALTER TABLE rules ADD COLUMN status_reason TEXT;
CREATE INDEX credentials_by_user ON credentials(user_id);
CREATE INDEX credentials_by_client ON credentials(client_id);
CREATE INDEX client_enrollments_by_client ON client_enrollments(client_id);
CREATE INDEX audit_by_actor ON audit(actor, at, seq);
