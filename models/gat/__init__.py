"""The paper's graph attention recommender, split by role:

* `graph.py`: the signed user–item graph (positive and negative relations), the authors' rating graph, and their
  torch / DGL / PyG forms,
* `attention.py`: degree-normalised attention in torch index ops (the `gat` / `gat-id` layer),
* `layers.py`: one library attention convolution per backend behind one signature, and the signed residual layer
  (the authors' form, `gat-paper`),
* `network.py`: input features (text embeddings or learned IDs) → stacked layers → user and item vectors,
* `loss.py`: sampled softmax, BPR plus cosine alignment, and hard negatives from explicit dislikes,
* `train.py`: the training loop (AdamW, plateau schedule, early stopping on validation NDCG@10),
* `recommender.py`: `GATRecommender` (`gat`), `GATIDRecommender` (`gat-id`) and `GATPaperRecommender`
  (`gat-paper`) behind `models.base.Recommender`.
"""

from models.gat.recommender import GATIDRecommender, GATPaperRecommender, GATRecommender

__all__ = ["GATIDRecommender", "GATPaperRecommender", "GATRecommender"]
