-- The notes example's first schema: notes, plus a one-row running total that every write updates
-- in the same transaction (the crash tests check the two never disagree).
CREATE TABLE notes (
    id         INTEGER PRIMARY KEY,
    body       TEXT    NOT NULL,
    batch      INTEGER,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX notes_created_at ON notes (created_at);
CREATE INDEX notes_batch ON notes (batch);

CREATE TABLE totals (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    notes INTEGER NOT NULL
) STRICT;
INSERT INTO totals (id, notes) VALUES (1, 0);
