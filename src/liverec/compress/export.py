"""ONNX export of the transformer, run by ONNX Runtime (fp32, or int8 by onnxruntime).

Legend: B batch, T sequence length (dynamic), D model dimension, N items (+1 padding row).

The ONNX graph maps (item vectors (B, T, D), seqs (B, T)) -> user vectors (B, D): the item
lookup and the catalogue scoring stay outside the graph, on the run directory's item table
(fp32 or int8 in model.safetensors), so the table is stored once.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from liverec.compress.modules import table_scores
from liverec.config import ModelConfig
from liverec.model.sasrec import SASRec, embed_inputs, last_key_mask

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
OPSET = 17


def export_mask(seqs: torch.Tensor) -> torch.Tensor:
    """:func:`liverec.model.sasrec.attention_mask` from aranges only: ONNX Runtime has no
    boolean EyeLike/Trilu kernels. (B, T) -> (B, 1, T, T); a test checks they agree."""
    t = torch.arange(seqs.shape[1], device=seqs.device)  # (T,)
    keys = (seqs != 0)[:, None, None, :]  # (B, 1, 1, T)
    return ((t[None, :] <= t[:, None]) & keys) | (t[None, :] == t[:, None])  # (B, 1, T, T)


class TransformerBody(nn.Module):
    """SASRec.encode_users after the item lookup (the part that goes into ONNX)."""

    def __init__(self, model: SASRec) -> None:
        super().__init__()
        self.cfg = model.cfg
        self.pos, self.blocks, self.ln_f = model.pos, model.blocks, model.ln_f
        self.emb_ln = getattr(model, "emb_ln", nn.Identity())

    def forward(self, item_vecs: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        x = embed_inputs(self, item_vecs, seqs)  # (B, T, D)
        *first, last = self.blocks
        if first:
            mask = export_mask(seqs)  # (B, 1, T, T)
            for block in first:
                x = block(x, mask)  # (B, T, D)
        if not hasattr(last, "forward_last"):
            return self.ln_f(last(x, export_mask(seqs)))[:, -1]  # (B, D)
        return self.ln_f(last.forward_last(x, last_key_mask(seqs)))[:, 0]  # last position only


def export_onnx(model: SASRec, path: Path, int8: bool = False) -> Path:
    """Write the model's transformer as ONNX (dynamic batch and sequence axes).

    Args:
        model: a trained fp32 SASRec (or a structurally pruned one).
        path: the .onnx file to write.
        int8: quantize with ``onnxruntime.quantization.quantize_dynamic`` (int8 weights,
            per channel; activations quantized at run time).
    """
    body = TransformerBody(model).eval()
    T = min(8, model.cfg.max_len)
    seqs = torch.randint(1, model.cfg.n_items + 1, (2, T))
    item_vecs = model.items(seqs).detach().float()
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx" if int8 else path
        # the TorchScript exporter (dynamo=False): the dynamo one needs onnxscript
        torch.onnx.export(
            body, (item_vecs, seqs), str(fp32), dynamo=False, opset_version=OPSET,
            input_names=["item_vecs", "seqs"], output_names=["user"],
            dynamic_axes={"item_vecs": {0: "B", 1: "T"}, "seqs": {0: "B", 1: "T"},
                          "user": {0: "B"}},
        )
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # the quantizer logs every tensor it skips at INFO
            try:
                quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8,
                                 per_channel=True)
            finally:
                root.setLevel(level)
    return path


def make_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session (threads default: torch's intra-op thread count)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxSASRec(nn.Module):
    """The SASRec inference interface (``cfg``, ``encode_users``, ``item_table``, ``score``)
    on top of an ONNX Runtime session; the item table is a torch module (fp32 or int8)."""

    def __init__(self, cfg: ModelConfig, items: nn.Module, onnx_path: Path) -> None:
        super().__init__()
        self.cfg = cfg
        self.items = items
        self.onnx_path = Path(onnx_path)
        self.session = make_session(self.onnx_path)

    @torch.no_grad()
    def encode_users(self, seqs: torch.Tensor) -> torch.Tensor:
        """User vectors (B, D) for left-padded seqs (B, T)."""
        seqs = seqs[:, -self.cfg.max_len :]
        item_vecs = self.items(seqs).float()  # (B, T, D)
        (user,) = self.session.run(["user"], {"item_vecs": item_vecs.numpy(),
                                              "seqs": seqs.numpy().astype(np.int64)})
        return torch.from_numpy(user)  # (B, D)

    def item_table(self) -> torch.Tensor:
        return self.items.table()  # (N + 1, D)

    def score(self, seqs: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 scores (B, N + 1), or of ``item_ids`` (B, K)."""
        return table_scores(self.items, self.encode_users(seqs), item_ids)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError("an ONNX Runtime model is for inference only")
