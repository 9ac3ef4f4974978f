"""`make bench` measures every stage with real work (tiny data here; the figures come from real data)."""

from e2ep.bench import bench_dataset
from e2ep.config import DatasetConfig, ModelsConfig, SplitConfig
from tests.synthetic import write_planted_csv


def test_bench_measures_each_stage(tmp_path, capsys):
    ratings = write_planted_csv(tmp_path)
    models = ModelsConfig.model_validate({"training": {"max_epochs": 10}, "lightgcn": {"num_layers": [1, 2]}})
    rows = []
    bench_dataset("tiny", DatasetConfig(name="csv", ratings_path=str(ratings)), SplitConfig(official=False),
                  models, rows, gat_backends=["dgl", "pyg"])
    stages = [r.stage for r in rows]
    assert stages[:2] == ["load", "split (5 folds)"]
    assert {"fit+recommend lightgcn", "evaluate lightgcn", "fit+recommend bpr-mf"} <= set(stages)
    assert all(r.seconds > 0 and r.peak_mib > 10 for r in rows)
    lightgcn = next(r for r in rows if r.stage == "fit+recommend lightgcn")
    assert "grid of 2" in lightgcn.note and "val NDCG@10" in lightgcn.note
    assert "fit+recommend lightgcn" in capsys.readouterr().out
    for backend in ("dgl", "pyg"):
        gat = next(r for r in rows if r.stage == f"fit+recommend gat[{backend}]")
        assert "s/epoch" in gat.note and "random 384-d features" in gat.note
    assert "evaluate gat[pyg]" in stages
