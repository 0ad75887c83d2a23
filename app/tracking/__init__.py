"""The tracking path: tokens, client classification, event queue, fast ASGI path, ingestion."""
