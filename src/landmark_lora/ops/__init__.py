"""Operations DVC does not run: ingest, promote and rollback."""
