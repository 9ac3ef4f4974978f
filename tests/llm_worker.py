"""A separate process running the LLM item-profile stage, for the shared-cache concurrency test.

    python -m tests.llm_worker OUT_DIR N_ITEMS

Reads the LLM settings from the environment (as a run does), writes `OUT_DIR/ready`, waits for `OUT_DIR/../go`
so that several workers start their calls at the same moment, then writes `profiles.parquet` and `usage.json`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from e2ep.llm import LLMConfig, LLMGateway
from semantic.profiles import ProfilesConfig, item_profiles
from tests.profiles_fakes import items_frame


def main(out: Path, n_items: int) -> None:
    gateway = LLMGateway.from_config(LLMConfig(concurrency=4), required=True)
    gateway.preflight()
    items = items_frame(n_items)
    (out / "ready").touch()
    deadline = time.monotonic() + 60
    while not (out.parent / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.01)
    result = item_profiles(items, ProfilesConfig(backend="llm"), gateway=gateway)
    result.frame.write_parquet(out / "profiles.parquet")
    (out / "usage.json").write_text(json.dumps(gateway.usage_summary()["stages"]["item_profiles"]))
    gateway.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
