"""`e2ep bench --datasets rerank`: wall time and cost of each strategy on ML-100K fold 1 (BPR-MF's lists, template
profiles): the offline semantic judge for every user, then the LLM judge through the real gateway against the local
stand-in server (200 ms per answer, concurrency 16; tokens counted as words) for the first users, cold and rerun."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from data.config import DatasetConfig, SplitConfig
from models.config import ModelsConfig

STRATEGIES = ("prompt", "bst", "batch", "relevancy")


def stand_in_reply(messages: list[dict[str, Any]]) -> str:
    """Valid answers to every judge request, in an order fixed by a digest of the request (not by quality)."""
    task = messages[-1]["content"]
    ids = [int(i) for i in re.findall(r"\bM(\d+)\b", task.rsplit("\n\n", 1)[-1])]
    context = messages[1]["content"][:300] if len(messages) > 1 else ""

    def key(i: int) -> str:
        return hashlib.sha256(f"{i}|{context}".encode()).hexdigest()

    if "Now explain" in task:
        return json.dumps({f"M{i}": "Shares the tone and themes of the movies this viewer rated highly." for i in ids})
    if "Which of the two" in task:
        return f"M{min(ids[:2], key=key)}"
    if "Rate how well" in task:
        return "\n".join(f"M{i}: {int(key(i)[:4], 16) % 101}" for i in dict.fromkeys(ids))
    return " > ".join(f"M{i}" for i in sorted(set(ids), key=key))


def bench_rerank(label: str, dataset_cfg: DatasetConfig, rows: list[Any], tmp: Path, llm_users: int = 32) -> None:
    from app.measure import measure
    from data import load_dataset, make_folds
    from e2ep.llm import LLMConfig
    from e2ep.testing.llm_standin import StubLLM
    from models.base import fold_data, recommendations_frame
    from models.registry import build_model
    from rerank.config import RerankConfig
    from rerank.inputs import build_inputs
    from rerank.run import make_judge, rerank_recommendations
    from semantic.embed import embed_frame
    from semantic.profiles import EmbeddingConfig, ProfilesConfig, item_profiles, user_profiles

    ds = load_dataset(dataset_cfg)
    fold = make_folds(ds, SplitConfig())[0]
    data = fold_data(fold.train, ds.n_users, ds.n_items)
    recs = recommendations_frame(build_model("bpr-mf", ModelsConfig()).fit(data), data, 50)
    with measure(label, "rerank inputs", rows) as m:
        profiles = ProfilesConfig(backend="template")
        items = item_profiles(ds.items, profiles).frame
        users = user_profiles(fold, ds.items, profiles, n_users=ds.n_users).frame
        embedding = EmbeddingConfig()
        inputs = build_inputs(
            items,
            users,
            embed_frame(items, "item_idx", ds.n_items, embedding).numpy(),
            embed_frame(users, "user_idx", ds.n_users, embedding).numpy(),
            fold.train,
            4.0,
            embedding,
        )
        m.note = "template profiles, embeddings (cached by text), Dislikes embeddings"
    for strategy in STRATEGIES:
        cfg = RerankConfig(base_model="bpr-mf", judge="semantic", strategies=[strategy])
        with measure(label, f"rerank {strategy} semantic", rows) as m:
            cost = rerank_recommendations(recs, strategy, make_judge(cfg, inputs, None, strategy), inputs, cfg).cost
            m.note = f"{cost['users']} users, {cost['requests'] / cost['users']:.1f} judge requests/user"
    with StubLLM(latency_s=0.2, reply=stand_in_reply) as server:
        llm = LLMConfig(
            model="openai/stand-in", api_base=server.api_base, concurrency=16, cache_dir=str(tmp / "llm-cache")
        )
        for strategy in STRATEGIES:
            cfg = RerankConfig(base_model="bpr-mf", judge="llm", strategies=[strategy], max_users=llm_users)
            for attempt in ("cold", "rerun"):
                judge = make_judge(cfg, inputs, llm, f"rerank_{strategy}")
                with measure(label, f"rerank {strategy} LLM {attempt}", rows) as m:
                    cost = rerank_recommendations(recs, strategy, judge, inputs, cfg, workers=llm.concurrency).cost
                    n = cost["users"]
                    m.note = (
                        f"{n} users; per user {cost['calls'] / n:.1f} calls, "
                        f"{(cost['prompt_tokens'] + cost['completion_tokens']) / n:.0f} tokens"
                    )
                judge.gateway.close()  # type: ignore[attr-defined]
