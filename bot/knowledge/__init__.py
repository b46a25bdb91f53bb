"""The guild knowledge base: documents, chunks, embeddings and search (issue 19)."""
