-- Figures of the owned llama-server next to the machine's: generation throughput scraped from
-- its /metrics, and the CPU and resident memory of its process tree (the router and the
-- model processes it starts). Added columns only, so the documented statements still work.
ALTER TABLE metrics ADD COLUMN tokens_per_second REAL DEFAULT 0;
ALTER TABLE metrics ADD COLUMN llama_cpu_usage REAL DEFAULT 0;
ALTER TABLE metrics ADD COLUMN llama_memory_used REAL DEFAULT 0;
