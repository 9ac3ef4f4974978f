"""LLM reranking of a recommender's top candidates (the pipeline's post-processing stage)."""
