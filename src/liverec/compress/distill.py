"""Knowledge distillation into a smaller SASRec (fewer layers / smaller dimension).

Legend: M supervised positions in a batch, D dimension, N items (without padding).

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))   over the full catalogue
     + (1 - alpha) * CE(student, true next item)                        at every position

The student trains through the shared loop (``liverec.train.loop.fit``) on ``train.device``,
with the teacher moved beside it for the duration.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liverec.config import ModelConfig, TrainConfig, apply_overrides, from_dict, to_dict
from liverec.data.prepare import Prepared
from liverec.model import build_model
from liverec.model.items import MixedDimItemEmbedder, PQItemEmbedder
from liverec.model.sasrec import SASRec
from liverec.train.loop import fit, fit_device

log = logging.getLogger(__name__)


def student_config(teacher: ModelConfig, overrides: Sequence[str] | Mapping) -> ModelConfig:
    """The teacher's config with ``key=value`` overrides (``d_model=16``, ``model.n_layers=1``).

    Also accepts a mapping (e.g. read from a JSON file).
    """
    if isinstance(overrides, Mapping):
        return from_dict(ModelConfig, {**to_dict(teacher), **overrides}, where="student")
    from liverec.config import RunConfig

    items = [o if o.startswith("model.") else f"model.{o}" for o in overrides]
    return apply_overrides(RunConfig(model=teacher), items).model


def init_mixed_from_teacher(items: MixedDimItemEmbedder, teacher_table: torch.Tensor,
                            counts: np.ndarray) -> None:
    """Head = the most frequent items with the teacher's rows; tail = the teacher's other rows
    projected on their top ``tail_dim`` principal directions (SVD), so the student starts at
    the teacher's table truncated where it matters least. teacher_table: (N + 1, D)."""
    k, r = items.head.shape[0], items.tail.shape[1]
    order = np.argsort(-counts[1:], kind="stable") + 1  # item indices, most frequent first
    items.set_head(torch.from_numpy(order[:k].copy()))
    t = teacher_table.detach().float()
    with torch.no_grad():
        items.head.copy_(t[torch.from_numpy(order[:k].copy())])
        tail_rows = t[torch.from_numpy(np.sort(order[k:]))]  # (N - K, D): slots in index order
        if tail_rows.shape[0]:
            u, sv, vh = torch.linalg.svd(tail_rows, full_matrices=False)
            d = min(r, vh.shape[0])
            items.tail.zero_()
            items.tail[:, :d] = u[:, :d] * sv[:d]  # (N - K, d)
            items.proj.weight.zero_()
            items.proj.weight[:, :d] = vh[:d].T  # (D, d)


def init_pq_from_teacher(items: PQItemEmbedder, teacher_table: torch.Tensor,
                         seed: int = 0, niter: int = 25) -> None:
    """Product-quantize the teacher's rows: k-means (FAISS) in each of the M sub-spaces gives
    the codebooks and every item's code, so the student starts at the teacher's table with each
    sub-vector replaced by its nearest centroid. teacher_table: (N + 1, D).

    A sub-space with at most K distinct sub-vectors is coded exactly (its distinct values are
    the centroids, padded by repeating the first): k-means from a random start can leave such
    a case inexact (on a table made of 4 centroids, FAISS recovered 1 seed in 20)."""
    try:
        import faiss
    except ImportError:
        raise ImportError("a product-quantized student needs FAISS: pip install 'liverec[ann]'"
                          ) from None
    m, k, ds = items.codebooks.shape
    x = teacher_table.detach().float()[1:].numpy()  # (N, D), padding excluded
    if x.shape[0] < k:
        raise ValueError(f"pq_bits={k.bit_length() - 1} means {k} centroids per sub-space but "
                         f"the catalogue has {x.shape[0]} items; lower pq_bits")
    codes = np.empty((x.shape[0], m), dtype=np.int64)
    books = np.empty((m, k, ds), dtype=np.float32)
    for j in range(m):
        sub = np.ascontiguousarray(x[:, j * ds : (j + 1) * ds])  # (N, D / M)
        distinct, inverse = np.unique(sub, axis=0, return_inverse=True)
        if len(distinct) <= k:  # exact: the distinct sub-vectors are the centroids
            slots = np.arange(k)
            books[j] = distinct[np.where(slots < len(distinct), slots, 0)]
            codes[:, j] = inverse.reshape(-1)
            continue
        km = faiss.Kmeans(ds, k, niter=niter, seed=seed + j, verbose=False,
                          max_points_per_centroid=max(256, x.shape[0] // k + 1))
        km.train(sub)
        _, assign = km.index.search(sub, 1)  # nearest centroid
        codes[:, j], books[j] = assign[:, 0], km.centroids
    items.set_codes(torch.from_numpy(codes), torch.from_numpy(books))


def copy_matching(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy teacher tensors whose name and shape the student shares (positions, the first
    blocks, final LayerNorm), item tables excluded. Returns the copied names."""
    own = student.state_dict()
    fit = {k: v for k, v in teacher.state_dict().items()
           if not k.startswith("items.") and k in own and own[k].shape == v.shape}
    student.load_state_dict(fit, strict=False)
    return sorted(fit)


def init_from_teacher(student: SASRec, teacher: SASRec, counts: np.ndarray | None = None) -> bool:
    """Start the student's item table from the teacher's.

    A mixed-dimension table (``item_repr="mixed"``) takes the teacher's rows for the most
    frequent items (``counts``) and a truncated SVD for the rest; a product-quantized one
    (``item_repr="pq"``) k-means codes of the teacher's rows; a plain id table of a
    smaller dimension takes the teacher's top principal directions. Returns whether it was done.
    """
    if isinstance(student.items, MixedDimItemEmbedder):
        if counts is None:
            raise ValueError("a mixed-dimension student needs item counts to pick its head")
        init_mixed_from_teacher(student.items, teacher.item_table(), counts)
        return True
    if isinstance(student.items, PQItemEmbedder):
        if student.cfg.d_model != teacher.cfg.d_model:
            raise ValueError("a product-quantized student keeps the teacher's d_model "
                             f"({teacher.cfg.d_model}), got {student.cfg.d_model}")
        init_pq_from_teacher(student.items, teacher.item_table())
        return True
    table = student.item_table()
    if not isinstance(table, nn.Parameter):
        return False
    with torch.no_grad():
        t = teacher.item_table().detach().float()  # (N + 1, D_t)
        _, _, vh = torch.linalg.svd(t[1:], full_matrices=False)  # vh: (D_t, D_t)
        d = min(table.shape[1], vh.shape[0])
        proj = t @ vh[:d].T  # (N + 1, d)
        proj *= (teacher.cfg.d_model / student.cfg.d_model) ** 0.25  # input scale sqrt(D)
        table.zero_()
        table[:, :d] = proj
        table[0] = 0
    return True


def distill_loss(student: SASRec, teacher: SASRec, batch: dict[str, torch.Tensor],
                 temperature: float, alpha: float) -> torch.Tensor:
    """KL to the teacher's full-catalogue softmax plus CE on the true next item."""
    sel = batch["target"] != 0  # (B, T)
    target = batch["target"][sel] - 1  # (M,) class c = item c + 1
    with torch.no_grad():
        t_logits = teacher.encode(batch["input"])[sel] @ teacher.item_table()[1:].T  # (M, N)
    s_logits = student.encode(batch["input"])[sel] @ student.item_table()[1:].T  # (M, N)
    ce = F.cross_entropy(s_logits, target)
    if alpha <= 0:
        return ce
    kl = F.kl_div(F.log_softmax(s_logits / temperature, -1),
                  F.log_softmax(t_logits.float() / temperature, -1),
                  log_target=True, reduction="batchmean")
    return alpha * temperature**2 * kl + (1 - alpha) * ce


def distill(teacher: SASRec, prepared: Prepared, student_cfg: ModelConfig, tc: TrainConfig,
            epochs: int, temperature: float = 2.0, alpha: float = 0.5,
            copy_weights: bool = False) -> tuple[SASRec, dict]:
    """Train a student of ``student_cfg`` on the teacher's distribution and the true items.

    Args:
        teacher: the trained model (kept frozen, eval mode).
        prepared: training data in the teacher's vocabulary, with a validation split.
        student_cfg: the student's ModelConfig (``n_items`` is taken from the teacher; a
            product-quantized one with ``pq_subspaces=0`` gets d_model / 2 sub-spaces and at
            most as many centroids as the catalogue has items).
        tc: optimiser settings.
        epochs: training epochs (best validation epoch kept).
        temperature: softmax temperature T for the KL term.
        alpha: weight of the KL term (1 - alpha on the cross-entropy).
        copy_weights: start the student's transformer tensors that match the teacher's in
            name and shape (e.g. its first block when only the layer count differs) there.

    Returns:
        (student in eval mode, fine-tune log).
    """
    student_cfg = dataclasses.replace(student_cfg, n_items=teacher.cfg.n_items)
    if student_cfg.item_repr == "pq" and student_cfg.pq_subspaces == 0:  # automatic code size
        student_cfg = dataclasses.replace(
            student_cfg, pq_subspaces=max(1, student_cfg.d_model // 2),
            pq_bits=min(student_cfg.pq_bits, max(1, int(np.log2(student_cfg.n_items)))))
    torch.manual_seed(tc.seed)
    student = build_model(student_cfg)
    svd = init_from_teacher(student, teacher, prepared.train_item_counts())
    copied = copy_matching(student, teacher) if copy_weights else []
    teacher.eval()  # its logits are computed under no_grad; its weights stay untouched
    home = next(teacher.parameters()).device
    teacher.to(fit_device(tc))  # beside the student, on train.device, for the fit only
    try:
        result = fit(student, prepared, tc, epochs,
                     loss_fn=lambda m, b: distill_loss(m, teacher, b, temperature, alpha))
    finally:
        teacher.to(home)
    result["svd_init"] = svd
    result["copied_from_teacher"] = copied
    return student, result
