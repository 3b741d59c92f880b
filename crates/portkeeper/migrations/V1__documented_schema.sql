-- Port Keeper's documented schema (seed 000, "Database Schema"), kept exactly: names, columns,
-- CHECK constraints, indexes, both triggers and both views, so the documented SQL runs unchanged.

CREATE TABLE ports (
    number INTEGER PRIMARY KEY,
    projectName TEXT NOT NULL,
    description TEXT,
    status TEXT NOT NULL CHECK (status IN ('reserved', 'in-use', 'free')),
    pid INTEGER,
    processName TEXT,
    reservedAt TEXT NOT NULL DEFAULT (datetime('now')),
    lastSeenAt TEXT,
    updatedAt TEXT NOT NULL DEFAULT (datetime('now')),
    autoRelease BOOLEAN DEFAULT 0,
    tags TEXT,
    metadata TEXT
);
CREATE INDEX idx_ports_status ON ports(status);
CREATE INDEX idx_ports_project ON ports(projectName);
CREATE INDEX idx_ports_reserved_at ON ports(reservedAt);
CREATE INDEX idx_ports_tags ON ports(tags);

CREATE TABLE port_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    port INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('reserved', 'released', 'in-use', 'killed')),
    projectName TEXT,
    description TEXT,
    performedBy TEXT,
    performedAt TEXT NOT NULL DEFAULT (datetime('now')),
    details TEXT,
    FOREIGN KEY (port) REFERENCES ports(number)
);
CREATE INDEX idx_history_port ON port_history(port);
CREATE INDEX idx_history_action ON port_history(action);
CREATE INDEX idx_history_date ON port_history(performedAt);

CREATE TABLE active_scans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    port INTEGER NOT NULL,
    pid INTEGER,
    processName TEXT,
    state TEXT,
    address TEXT,
    protocol TEXT DEFAULT 'tcp',
    scannedAt TEXT NOT NULL DEFAULT (datetime('now')),
    UNIQUE(port, pid)
);
CREATE INDEX idx_scans_port ON active_scans(port);
CREATE INDEX idx_scans_pid ON active_scans(pid);
CREATE INDEX idx_scans_date ON active_scans(scannedAt);

CREATE TABLE configurations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT,
    data TEXT NOT NULL,
    version TEXT NOT NULL,
    createdAt TEXT NOT NULL DEFAULT (datetime('now')),
    createdBy TEXT,
    checksum TEXT
);
CREATE INDEX idx_config_name ON configurations(name);
CREATE INDEX idx_config_created ON configurations(createdAt);

CREATE TABLE migrations (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL UNIQUE,
    description TEXT,
    appliedAt TEXT NOT NULL DEFAULT (datetime('now')),
    checksum TEXT
);

CREATE TRIGGER update_ports_timestamp
AFTER UPDATE ON ports
BEGIN
    UPDATE ports
    SET updatedAt = datetime('now')
    WHERE number = NEW.number;
END;

CREATE TRIGGER track_port_changes
AFTER UPDATE ON ports
WHEN OLD.status != NEW.status
BEGIN
    INSERT INTO port_history (
        port, action, projectName,
        description, performedAt
    ) VALUES (
        NEW.number,
        CASE
            WHEN NEW.status = 'reserved' THEN 'reserved'
            WHEN NEW.status = 'in-use' THEN 'in-use'
            WHEN NEW.status = 'free' THEN 'released'
        END,
        NEW.projectName,
        NEW.description,
        datetime('now')
    );
END;

CREATE VIEW v_port_summary AS
SELECT
    COUNT(CASE WHEN status = 'reserved' THEN 1 END) as reserved_count,
    COUNT(CASE WHEN status = 'in-use' THEN 1 END) as in_use_count,
    COUNT(CASE WHEN status = 'free' THEN 1 END) as free_count,
    COUNT(*) as total_count
FROM ports;

CREATE VIEW v_project_ports AS
SELECT
    projectName,
    GROUP_CONCAT(number) as ports,
    COUNT(*) as port_count,
    SUM(CASE WHEN status = 'in-use' THEN 1 ELSE 0 END) as active_count
FROM ports
WHERE status != 'free'
GROUP BY projectName;

INSERT INTO migrations (id, version, description)
VALUES (1, '1.0.0', 'Port Keeper documented schema: ports, port_history, active_scans, configurations, migrations');
