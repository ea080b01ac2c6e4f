-- 007_content_type.sql — the Content-Type a submit carried, if any, so that
-- GET /v1/jobs/{id}/payload gives the payload back as it came. NULL: the submit had none.
ALTER TABLE jobs ADD COLUMN content_type TEXT;
