-- 010_inline_payload.sql — a small payload lives in its job's row. NULL: the payload is in
-- job_payloads (a large one, or a job submitted before this migration). The store keeps
-- payloads of up to 256 bytes here (INLINE_PAYLOAD_MAX in store_sqlite.c): a submit saves the
-- second table's row and b-tree entry, about 0.6 KB of WAL per job, while the row copied by
-- each state change grows little. At 500 bytes claims and finishes already cost more than
-- submits saved (PERFORMANCE.md, "2026-12-08: small payloads in the jobs row").
ALTER TABLE jobs ADD COLUMN payload BLOB;
