"""Events out (issue #14, docs/webhooks.md): the outbox written by the ingest, its commit order (`seq`),
event payloads, the feed cursor, signing, SSRF checks and the dispatcher."""
