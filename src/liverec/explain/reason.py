"""The one-line, templated reason shown beside a recommendation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liverec.explain.explainer import Explanation

POPULAR_REASON = "Popular with other users (no history to go on yet)"


def _join(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def reason_text(drivers: Sequence[str], shared: str | None = None) -> str:
    """``Because you viewed A and B; same category C`` (parts left out when absent).

    Args:
        drivers: labels of the history items that raised the score most (at most 2 are named).
        shared: the label of the most telling shared attribute, if any.
    """
    if drivers:
        text = f"Because you viewed {_join(list(drivers[:2]))}"
        return f"{text}; same {shared}" if shared else text
    if shared:
        return f"Same {shared} as items you viewed"
    return "Based on your recent history as a whole"


def explanation_text(e: Explanation) -> str:
    """A readable multi-line rendering (what ``liverec explain`` prints)."""
    name = f"{e.item_id} ({e.title})" if e.title else e.item_id
    lines = [f"{name}: score {e.score:.4f}", f"  {e.reason}", "",
             "  history (oldest first)        drop when removed   similarity"
             + ("   int. grad." if "integrated_gradients" in e.methods else "")
             + ("   attention" if "attention" in e.methods else "")]
    for h in e.history:
        label = f"{h.item_id} {h.title}".strip()
        label = label if len(label) <= 30 else label[:29] + "…"
        row = f"  {label:<30} {h.drop:>+17.4f} {h.similarity:>12.3f}"
        if h.integrated_gradient is not None:
            row += f" {h.integrated_gradient:>+13.4f}"
        if h.attention is not None:
            row += f" {h.attention:>11.3f}"
        lines.append(row)
    if e.shared_attributes:
        lines.append("")
        lines += [f"  shares {s.label} with {', '.join(s.items[:5])} "
                  f"({s.catalogue_share:.1%} of the catalogue)" for s in e.shared_attributes]
    return "\n".join(lines)
