"""The item table in the compact forms a browser downloads, and how each one scores.

Legend: B users, N model items (row i - 1 = item index i; the padding row 0 is not stored),
D model dimension, M sub-spaces, K centroids per sub-space, S = D / M sub-vector dimension.

Three forms, each a few little-endian binary files:

- ``pq``: the product-quantized table of a ``item_repr="pq"`` model, exactly as the model holds
  it: codes (N, M) uint8 and codebooks (M, K, S) float32 (Jegou et al. 2011). Scores by
  asymmetric distance computation: per user a lookup table L[m, k] = u_m . c_{m,k} (M * K
  multiply-adds of S), then score_i = sum_m L[m, codes[i, m]] (N * M additions).
- ``int8``: one int8 row per item and one float32 scale per row (symmetric, per row, as
  :func:`liverec.compress.modules.quantize_rows`): score_i = scale_i * (u . q_i).
- ``fp32``: the float32 rows, for an exact reference bundle.

:meth:`CompactTable.scores` is the fast path the JavaScript client mirrors;
:meth:`CompactTable.rows` decodes the table to float32 (the reference path); a test compares
``scores(u)`` with ``u @ rows().T``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from liverec.compress.modules import quantize_rows
from liverec.errors import ArtifactError

TABLE_KINDS = ("pq", "int8", "fp32")
# file name -> (numpy dtype); every file is a C-order little-endian array
FILES = {
    "pq": {"codes": ("items.codes.u8", np.uint8), "codebooks": ("items.codebooks.f32", "<f4")},
    "int8": {"rows": ("items.rows.i8", np.int8), "scales": ("items.scales.f32", "<f4")},
    "fp32": {"rows": ("items.rows.f32", "<f4")},
}


@dataclass
class CompactTable:
    """An item table in one compact form.

    Attributes:
        kind: "pq", "int8" or "fp32".
        arrays: name -> array (pq: codes (N, M) uint8, codebooks (M, K, S) float32; int8:
            rows (N, D) int8, scales (N,) float32; fp32: rows (N, D) float32).
    """

    kind: str
    arrays: dict[str, np.ndarray]

    @property
    def n_items(self) -> int:
        return int(self.arrays["codes" if self.kind == "pq" else "rows"].shape[0])

    @property
    def dim(self) -> int:
        if self.kind == "pq":
            m, _, s = self.arrays["codebooks"].shape
            return int(m * s)
        return int(self.arrays["rows"].shape[1])

    def spec(self) -> dict:
        """The manifest's description of the table (shapes, files)."""
        out = {"kind": self.kind, "n_items": self.n_items, "dim": self.dim,
               "files": {k: f for k, (f, _) in FILES[self.kind].items()}}
        if self.kind == "pq":
            m, k, s = self.arrays["codebooks"].shape
            out |= {"subspaces": int(m), "centroids": int(k), "subdim": int(s)}
        return out

    def rows(self) -> np.ndarray:
        """The decoded table (N + 1, D) float32, padding row 0 zero: the reference path."""
        if self.kind == "pq":
            codes, books = self.arrays["codes"], self.arrays["codebooks"]
            m = books.shape[0]
            body = books[np.arange(m), codes.astype(np.int64)]  # (N, M, S)
            body = body.reshape(codes.shape[0], -1)  # (N, D)
        elif self.kind == "int8":
            body = self.arrays["rows"].astype(np.float32) * self.arrays["scales"][:, None]
        else:
            body = self.arrays["rows"]
        return np.concatenate([np.zeros((1, body.shape[1]), np.float32),
                               body.astype(np.float32)])  # (N + 1, D)

    def scores(self, u: np.ndarray) -> np.ndarray:
        """Scores of every row, the padding column 0 included (0). u: (B, D) -> (B, N + 1)."""
        u = np.asarray(u, dtype=np.float32)
        if self.kind == "pq":
            codes, books = self.arrays["codes"], self.arrays["codebooks"]
            m, k, s = books.shape
            lut = np.einsum("bms,mks->bmk", u.reshape(len(u), m, s), books)  # (B, M, K)
            flat = lut.reshape(len(u), m * k)  # (B, M * K)
            cells = codes.astype(np.int64) + np.arange(m) * k  # (N, M) into M * K
            body = flat[:, cells].sum(-1)  # (B, N)
        elif self.kind == "int8":
            body = (u @ self.arrays["rows"].astype(np.float32).T) * self.arrays["scales"]
        else:
            body = u @ self.arrays["rows"].T  # (B, N)
        return np.concatenate([np.zeros((len(u), 1), np.float32), body], 1).astype(np.float32)

    def write(self, out_dir: Path) -> list[str]:
        """Write the table's files under ``out_dir``; returns their names."""
        names = []
        for key, (name, dtype) in FILES[self.kind].items():
            np.ascontiguousarray(self.arrays[key], dtype=dtype).tofile(Path(out_dir) / name)
            names.append(name)
        return names

    @classmethod
    def read(cls, bundle_dir: Path, spec: dict) -> CompactTable:
        """Read the table a manifest's ``table`` entry describes (ArtifactError on a mismatch)."""
        kind, n, d = spec["kind"], spec["n_items"], spec["dim"]
        shapes = {"codes": (n, spec.get("subspaces", 0)),
                  "codebooks": (spec.get("subspaces", 0), spec.get("centroids", 0),
                                spec.get("subdim", 0)),
                  "rows": (n, d), "scales": (n,)}
        arrays = {}
        for key, (name, dtype) in FILES[kind].items():
            a = np.fromfile(Path(bundle_dir) / name, dtype=dtype)
            if a.size != int(np.prod(shapes[key])):
                raise ArtifactError(f"{bundle_dir / name}: {a.size} values, expected "
                                    f"{shapes[key]}")
            arrays[key] = a.reshape(shapes[key])
        return cls(kind, arrays)


def compact_table(items: torch.nn.Module, table: torch.Tensor, kind: str) -> CompactTable:
    """The model's item table in compact form ``kind``.

    Args:
        items: the model's item embedder (``pq`` needs a
            :class:`~liverec.model.items.PQItemEmbedder`: its codes and codebooks are copied,
            so the table is the model's own, bit for bit).
        table: the model's materialised table (N + 1, D) (int8 and fp32 forms).
        kind: "pq", "int8" or "fp32".

    Raises:
        ArtifactError: ``pq`` for a model whose items are not product-quantized.
    """
    if kind == "pq":
        if not (hasattr(items, "codes") and hasattr(items, "codebooks")):
            raise ArtifactError(f"table 'pq' needs a product-quantized item table "
                                f"(item_repr='pq'); this model's is {type(items).__name__}: "
                                "use --table int8 or fp32")
        return CompactTable("pq", {
            "codes": items.codes.detach().cpu().numpy().astype(np.uint8),
            "codebooks": items.codebooks.detach().float().cpu().numpy()})
    body = table.detach().float().cpu()[1:]  # (N, D), padding row not stored
    if kind == "int8":
        q, s = quantize_rows(body)
        return CompactTable("int8", {"rows": q.numpy(), "scales": s.numpy().astype(np.float32)})
    if kind == "fp32":
        return CompactTable("fp32", {"rows": body.numpy().astype(np.float32)})
    raise ValueError(f"unknown table kind {kind!r}; known: {TABLE_KINDS}")
