"""The paper's graph attention recommender, split by role:

* `graph.py`: the signed user–item graph (positive and negative relations) and its DGL / PyG forms,
* `layers.py`: one attention convolution per backend behind one signature, and the signed residual layer,
* `network.py`: input features (text embeddings or learned IDs) → stacked layers → user and item vectors,
* `loss.py`: BPR plus cosine alignment, and hard negatives from explicit dislikes,
* `train.py`: the training loop (AdamW, plateau schedule, early stopping on validation NDCG@10),
* `recommender.py`: `GATRecommender` (`gat`) and `GATIDRecommender` (`gat-id`) behind `models.base.Recommender`.
"""

from models.gat.recommender import GATIDRecommender, GATRecommender

__all__ = ["GATIDRecommender", "GATRecommender"]
