-- API tokens may carry an end: a token handed to a contractor or a temporary analyst stops
-- working by itself. NULL: no end (revoke it when it is no longer needed). The API refuses an
-- expired token at once and ends its open streams within seconds, as for a revoked one.
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_expires_after_creation
    CHECK (expires_at IS NULL OR expires_at > created_at);
