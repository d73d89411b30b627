"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020), L-inf.

"Square Attack: a query-efficient black-box adversarial attack via random search",
arXiv 1912.00049. A score-based black-box attack: it only reads the model's outputs,
so it is blind to gradient masking. Follows the reference code (fra31/auto-attack,
``autoattack/square.py``; torchattacks ``square.py`` is a copy of it); docs/attacks.md
lists every deviation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from methods.attacks._utils import ball, check_fraction, check_positive, margin
from methods.attacks.base import Attack, ModelMode

__all__ = ["Square"]

# The reference's schedule of the square's area: p_init is divided by 2, 4, ..., 512
# once the query counter (rescaled to a budget of 10,000) passes each bound.
_P_SCHEDULE = (
    (10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
    (8000, 256),
)  # fmt: skip


def square_fraction(p_init: float, query: int, queries: int) -> float:
    """Fraction p of the image's pixels the square covers at ``query`` (0-based) out of
    ``queries``: the reference's ``p_selection`` with ``resc_schedule=True``."""
    it = int(query / queries * 10000)
    divisor = 512
    for bound, div in _P_SCHEDULE:
        if it <= bound:
            divisor = div
            break
    return p_init / divisor


class Square(Attack):
    """Square Attack, L-inf: random search over square-shaped updates at the ball's corners.

    Starts from vertical stripes of +-eps, then at each query proposes moving one
    square window (all channels, one sign per channel) to a corner of the ball and
    keeps the proposal for the examples whose margin z_y - max_{j != y} z_j drops.
    The square's side shrinks with the query count (``p_init`` schedule). Uses only
    forward passes under ``torch.no_grad()``: the model's gradients are never read.
    Only examples the model classifies correctly are attacked; an example stops at the
    first point that breaks it, and each restart re-attacks the ones still standing.

    Args:
        eps: L-inf radius on the [0,1] scale.
        queries: proposals per restart (one forward pass each, on the unbroken examples).
        p_init: initial fraction of the pixels the square covers.
        restarts: runs from fresh random starts on the examples still unbroken.
        mode: the model mode during the attack.
    """

    name = "square"

    def __init__(
        self,
        eps: float,
        *,
        queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        mode: ModelMode = "eval",
    ) -> None:
        super().__init__(eps, mode=mode)
        check_positive("queries", queries)
        check_fraction("p_init", p_init)
        check_positive("restarts", restarts)
        self.queries = queries
        self.p_init = float(p_init)
        self.restarts = restarts

    @torch.no_grad()
    def _perturb(self, model, images, labels, generator):  # type: ignore[override]
        if images.dim() != 4:
            raise ValueError(f"Square needs images (N, C, H, W), got shape {tuple(images.shape)}")
        adversarial = images.clone()
        robust = model(images).argmax(1) == labels
        for _ in range(self.restarts):
            chosen = robust.nonzero().squeeze(1)
            if chosen.numel() == 0:
                break
            found = self._single_run(model, images[chosen], labels[chosen], generator)
            # Judged by the prediction, as the reference does (margin 0 is a tie).
            broken = model(found).argmax(1) != labels[chosen]
            adversarial[chosen[broken]] = found[broken]
            robust[chosen[broken]] = False
        return adversarial

    def _single_run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        n, c, h, w = x.shape
        lower, upper = ball(x, self.eps)
        # All draws of the run at once: the stripes' signs, then per query the square's
        # row, column and channel signs. This is the order in which the reference draws
        # them one query at a time, so the same seed gives the same numbers.
        stripes = torch.rand((n, c, 1, w), generator=generator, device=x.device) > 0.5
        draws = torch.rand((self.queries, 2 + c), generator=generator, device=x.device)
        corners = draws[:, 2:] > 0.5  # True: the upper corner of the ball
        offsets = draws[:, :2].cpu().tolist()  # one transfer; positions index on the host

        x_best = torch.where(stripes, upper, lower)
        best = margin(model(x_best), labels)
        # The rows still standing, their slices and margins, gathered again only when one
        # breaks (a proposal that breaks an example is always taken; ``best`` is brought
        # up to date then): with a handful of rows left, a gather per query costs about
        # as much as the forward pass itself (Square at eps 0.2 on digits, 4 rows a
        # query: 0.60 of its forward-pass bound before, benchmarks/evaluate.py).
        active = torch.empty(0, dtype=torch.long, device=x.device)
        active_best = best[active]
        changed = True
        for query in range(self.queries):
            if changed:
                best[active] = active_best
                active = (best > 0).nonzero().squeeze(1)
                if active.numel() == 0:
                    break
                active_labels, active_upper, active_lower = (
                    labels[active],
                    upper[active],
                    lower[active],
                )
                active_best = best[active]
            p = square_fraction(self.p_init, query, self.queries)
            side = min(max(round(math.sqrt(p * h * w)), 1), h, w)
            row = self._first(offsets[query][0], side, h)
            col = self._first(offsets[query][1], side, w)
            window = (slice(None), slice(None), slice(row, row + side), slice(col, col + side))
            corner = corners[query].view(1, c, 1, 1)

            candidate = x_best[active]
            candidate[window] = torch.where(corner, active_upper[window], active_lower[window])
            score = margin(model(candidate), active_labels)
            # Keep a proposal that lowers the margin; for an example still standing
            # that includes every proposal that breaks it (margin <= 0 < best).
            better = score < active_best
            take = active[better]
            x_best[take] = candidate[better]
            active_best = torch.where(better, score, active_best)
            changed = bool((active_best <= 0).any())
        return x_best

    @staticmethod
    def _first(draw: float, side: int, extent: int) -> int:
        """The square's first row (or column) from a uniform ``draw`` in [0, 1).

        Every start from 0 to ``extent - side`` is possible. The reference's
        ``int(draw * (extent - side))`` never picks the last one, so no square ever
        covers the image's last row or column (unless it spans the image): they keep
        their initial stripes for the whole run. On 8x8 digits that leaves 15 of 64
        pixels unsearched and costs several points of attack strength (docs/attacks.md).
        """
        return min(int(draw * (extent - side + 1)), extent - side)

    def __repr__(self) -> str:
        return (
            f"Square(eps={self.eps:g}, queries={self.queries}, p_init={self.p_init:g}, "
            f"restarts={self.restarts})"
        )
