-- The database of seed 003, statement for statement: five tables and the eight documented indexes.
-- Timestamps are unix seconds. There are no foreign keys, as documented.

CREATE TABLE models (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  type TEXT DEFAULT 'llama',
  status TEXT DEFAULT 'idle',
  parameters TEXT DEFAULT '{}',
  model_path TEXT,
  file_size INTEGER,
  params TEXT,
  quantization TEXT,
  ctx_size INTEGER DEFAULT 4096,
  embedding_size INTEGER DEFAULT 0,
  block_count INTEGER DEFAULT 0,
  head_count INTEGER DEFAULT 0,
  head_count_kv INTEGER DEFAULT 0,
  ffn_dim INTEGER DEFAULT 0,
  file_type INTEGER DEFAULT 0,
  batch_size INTEGER DEFAULT 512,
  threads INTEGER DEFAULT 4,
  favorite INTEGER DEFAULT 0,
  created_at INTEGER,
  updated_at INTEGER
);

CREATE TABLE metrics (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  cpu_usage REAL,
  memory_usage REAL,
  disk_usage REAL,
  active_models INTEGER,
  uptime REAL,
  gpu_usage REAL DEFAULT 0,
  gpu_memory_used REAL DEFAULT 0,
  gpu_memory_total REAL DEFAULT 0,
  swap_usage REAL DEFAULT 0,
  timestamp INTEGER DEFAULT (strftime('%s', 'now'))
);

CREATE TABLE logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  level TEXT NOT NULL,
  message TEXT NOT NULL,
  source TEXT,
  timestamp INTEGER DEFAULT (strftime('%s', 'now'))
);

CREATE TABLE server_config (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at INTEGER);

CREATE INDEX idx_models_status ON models(status);
CREATE INDEX idx_models_name ON models(name);
CREATE INDEX idx_models_created ON models(created_at DESC);
CREATE INDEX idx_metrics_timestamp ON metrics(timestamp DESC);
CREATE INDEX idx_logs_timestamp ON logs(timestamp DESC);
CREATE INDEX idx_logs_source ON logs(source);
CREATE INDEX idx_logs_level ON logs(level);
CREATE INDEX idx_metadata_key ON metadata(key);
