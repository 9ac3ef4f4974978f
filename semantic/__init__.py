"""The semantic stage: item metadata (TMDB or a local file), LLM or template profiles, and their MiniLM
embeddings, the node features of the GAT."""
