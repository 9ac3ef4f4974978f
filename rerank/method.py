"""The identity of a method in every table and artifact: a base model, optionally a GAT ablation variant, a rerank
strategy, or the `max_users` sample of a base model.

Stored frames keep plain strings (`gat`, `gat/no-cosine`, `gat+bst`, `gat@sample`); `str(Method)` writes them and
`Method.parse` reads them back, so no other module splits names on `/`, `+` or `@`. It lives on the rerank floor,
the lowest one that names methods (`<base>+<strategy>`); evaluation, tasks and flows read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

VARIANT_SEP = "/"
STRATEGY_SEP = "+"
SAMPLE_SUFFIX = "@sample"
"""`<base>@sample`: the rerank base model evaluated on the `rerank.max_users` sample only."""


@dataclass(frozen=True, order=True)
class Method:
    """`base[/variant][+strategy][@sample]`, e.g. `gat/no-cosine` (an ablation of `gat`), `gat+bst` (`gat`'s lists
    reranked by the `bst` strategy) or `gat@sample` (`gat` on the reranked user sample)."""

    base: str
    variant: str | None = None
    strategy: str | None = None
    sample: bool = False

    def __post_init__(self) -> None:
        for part in (self.base, self.variant, self.strategy):
            if part is not None and (not part or any(s in part for s in (VARIANT_SEP, STRATEGY_SEP, "@"))):
                raise ValueError(f"method part {part!r} is empty or holds a separator (/, + or @)")

    def __str__(self) -> str:
        name = self.base
        if self.variant is not None:
            name += VARIANT_SEP + self.variant
        if self.strategy is not None:
            name += STRATEGY_SEP + self.strategy
        return name + (SAMPLE_SUFFIX if self.sample else "")

    @classmethod
    def parse(cls, name: str) -> Method:
        """The method a stored name denotes (the inverse of `str`)."""
        sample = name.endswith(SAMPLE_SUFFIX)
        rest = name.removesuffix(SAMPLE_SUFFIX) if sample else name
        rest, plus, strategy = rest.partition(STRATEGY_SEP)
        base, slash, variant = rest.partition(VARIANT_SEP)
        return cls(base, variant if slash else None, strategy if plus else None, sample)

    @classmethod
    def ablation(cls, name: str, base: str = "gat") -> Method:
        """A GAT variant of `[[ablations]]`, reported as `gat/<name>`."""
        return cls(base, variant=name)

    @classmethod
    def reranked(cls, base: str | Method, strategy: str) -> Method:
        """`base`'s lists reranked by `strategy`."""
        b = base if isinstance(base, Method) else cls.parse(base)
        return cls(b.base, b.variant, strategy)

    @property
    def is_reranked(self) -> bool:
        return self.strategy is not None

    @property
    def is_ablation(self) -> bool:
        return self.variant is not None and self.strategy is None

    @property
    def rerank_base(self) -> Method:
        """The method whose lists were reranked (itself when not reranked)."""
        return Method(self.base, self.variant)

    def sampled(self) -> Method:
        """This method on the `rerank.max_users` sample."""
        return Method(self.base, self.variant, self.strategy, sample=True)
