"""What DVC does not run: the ingest door for new photos, registry promotion and rollback."""
