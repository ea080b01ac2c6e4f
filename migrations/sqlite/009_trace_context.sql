-- 009_trace_context.sql — the W3C trace context a submit carried (traceparent, tracestate),
-- passed on to the job's handler and its callbacks so that the job shows inside its trace.
-- NULL: the submit had none (or an invalid traceparent, which W3C says to ignore).
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
ALTER TABLE jobs ADD COLUMN tracestate TEXT;
