"""Detectron2 ``DatasetEvaluator`` for person search (CUHK-SYSU, PRW).

One inference pass over a ``{prefix}_test`` split gives, per gallery record, the detections
(``pred_boxes``, ``scores``, ``pred_embeds``) and, per query record (``query_index``), the
embedding of the given query box. :class:`PersonSearchEvaluator` collects them, checks that every
gallery image and query was predicted, saves them (:mod:`.predictions`) and scores them with
:func:`~.scoring.evaluate_person_search`, the driver shared with the rescore CLI.
"""

import copy
import itertools
import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from .options import EvalOptions
from .predictions import PREDICTIONS_FILE, PersonSearchPredictions, save_predictions
from .protocols import build_gallery_table, query_rows, split_test_records
from .scoring import FAMILIES, evaluate_person_search

__all__ = ["PersonSearchEvaluator", "RESULTS_FILE"]

logger = logging.getLogger(__name__)

RESULTS_FILE = "person_search_results.json"


def _as_rows(x: np.ndarray, n: int) -> np.ndarray:
    """[n, E] copy of per-instance values (an empty output may come as [0] or [0, E])."""
    if x.ndim == 2 and x.shape[0] == n:
        return x.copy()
    return x.reshape(n, -1).copy() if n else np.zeros((0, x.shape[-1] if x.ndim == 2 else 0))


class PersonSearchEvaluator(DatasetEvaluator):
    """Person-search evaluator (search mAP / top-k per protocol, detection AP / recall).

    Run it on a registered ``{prefix}_test`` split (gallery records then query records). For
    every gallery input it keeps the detections, for every query input (``query_index`` in the
    input) the embedding of the given box; ``evaluate`` gathers them on the main process, checks
    completeness, saves ``person_search_predictions.npz`` and ``person_search_results.json`` to
    ``output_dir`` and returns ``OrderedDict({"search": {"mAP", "top-1", "top-5", "top-10"},
    <other protocols>..., "detection": {"AP", "recall"}, "detection_labeled": {...}})`` on a
    0-100 scale (see :func:`~.scoring.evaluate_person_search`).
    """

    def __init__(
        self,
        dataset_name: str,
        cfg=None,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        det_thresh: Optional[float] = None,
        det_eval_thresh: Optional[float] = None,
        gallery_sizes: Optional[Sequence[int]] = None,
        full_pool: Optional[bool] = None,
        multi_view: Optional[bool] = None,
        duplicates: Optional[str] = None,
        det_labeled: Optional[str] = None,
        save_predictions: Optional[bool] = None,
        embed_dim: Optional[int] = None,
    ):
        """
        Args:
            dataset_name: a registered person-search split (normally ``{prefix}_test``).
            cfg: optional config; ``cfg.TEST.PERSON_SEARCH`` gives the defaults below and
                ``cfg.MODEL.REID.EMBED_DIM`` the expected embedding dimension.
            distributed: gather the predictions of all processes (main process scores).
            output_dir: where to save the predictions and results (None: nothing saved).
            det_thresh, det_eval_thresh, gallery_sizes, full_pool, multi_view, duplicates,
            det_labeled, save_predictions, embed_dim: override the config (see
                :class:`~.options.EvalOptions`).
        """
        meta = MetadataCatalog.get(dataset_name)
        family = meta.get("dataset_family", None)
        if family not in FAMILIES:
            raise ValueError(
                f"'{dataset_name}' is not a registered person-search dataset (its metadata has "
                f"dataset_family={family!r}, expected one of {FAMILIES})"
            )
        self._dataset_name = dataset_name
        self._family = family
        # where the protocols are read: the CUHK-SYSU root, or a COCO set's protocol file
        # (written by then for a derived protocol: the split is loaded before evaluation)
        self._root_key = "protocol_file" if family == "coco" else "dataset_root"
        self._distributed = distributed
        self._output_dir = output_dir
        self._options = EvalOptions.from_cfg(
            cfg,
            det_thresh=det_thresh,
            det_eval_thresh=det_eval_thresh,
            gallery_sizes=gallery_sizes,
            full_pool=full_pool,
            multi_view=multi_view,
            duplicates=duplicates,
            det_labeled=det_labeled,
            save_predictions=save_predictions,
            embed_dim=embed_dim,
        )
        # the model outputs no detection below its ROI heads' test threshold
        self._score_floor = None
        if cfg is not None and "ROI_HEADS" in cfg.MODEL:
            self._score_floor = float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)
        # the box the model pooled the gallery embeddings on, recorded in the predictions file
        self._embed_boxes = None
        if cfg is not None and "ROI_HEADS" in cfg.MODEL:
            self._embed_boxes = cfg.MODEL.ROI_HEADS.get("EMBED_BOXES", None)
        self._cpu_device = torch.device("cpu")
        self.settings: Dict[str, Dict[str, object]] = {}
        self.reset()

    @property
    def options(self) -> EvalOptions:
        return self._options

    def reset(self):
        self._gallery: List[dict] = []
        self._queries: List[dict] = []

    def process(self, inputs, outputs):
        """Keep, on the CPU, each gallery image's detections and each query's embedding.

        Args:
            inputs: the model inputs (dataset dicts after the mapper).
            outputs: the model outputs, ``{"instances": Instances}`` with ``pred_boxes`` [R, 4]
                (original image coordinates), ``scores`` [R], ``pred_embeds`` [R, E].
        """
        for inp, out in zip(inputs, outputs):
            inst = out["instances"].to(self._cpu_device)
            for f in ("pred_boxes", "scores", "pred_embeds"):
                if not inst.has(f):
                    raise ValueError(
                        f"model output of image {inp.get('image_id')!r} has no '{f}': the "
                        "person-search evaluator needs boxes, scores and embeddings"
                    )
            boxes = inst.pred_boxes.tensor.float().numpy()
            embeds = inst.pred_embeds.float().numpy()
            h, w = int(inp["height"]), int(inp["width"])
            if "query_index" in inp:
                if len(inst) != 1:
                    raise ValueError(
                        f"query {inp['query_index']} ({inp.get('image_id')!r}): the model "
                        f"returned {len(inst)} instances, expected 1 (the given query box)"
                    )
                self._queries.append(
                    {
                        "query_index": int(inp["query_index"]),
                        "image_id": str(inp["image_id"]),
                        "height": h,
                        "width": w,
                        "box": boxes.reshape(4).copy(),
                        "embed": embeds.reshape(-1).copy(),
                    }
                )
            else:
                self._gallery.append(
                    {
                        "image_id": str(inp["image_id"]),
                        "height": h,
                        "width": w,
                        "boxes": boxes.reshape(-1, 4).copy(),
                        "scores": inst.scores.float().numpy().reshape(-1).copy(),
                        "embeds": _as_rows(embeds, len(inst)),
                    }
                )

    def _gather(self) -> Optional[Tuple[List[dict], List[dict]]]:
        if not self._distributed:
            return self._gallery, self._queries
        comm.synchronize()
        gathered = comm.gather((self._gallery, self._queries), dst=0)
        if not comm.is_main_process():
            return None
        gallery = list(itertools.chain(*[g for g, _ in gathered]))
        queries = list(itertools.chain(*[q for _, q in gathered]))
        return gallery, queries

    def evaluate(self):
        """Gather, check, save and score the predictions (main process; others return {}).

        Returns:
            OrderedDict {key: {metric: float}}; see the class docstring.

        Raises:
            ValueError: a gallery image or query without prediction, embeddings of the wrong
                dimension, NaN scores or embeddings, boxes outside their image (naming them).
        """
        got = self._gather()
        if got is None:
            return {}
        gallery, queries = got
        records = DatasetCatalog.get(self._dataset_name)
        gallery_records, query_records = split_test_records(records)
        if not gallery_records:
            raise ValueError(
                f"'{self._dataset_name}' has no gallery record: person search is evaluated on "
                "the '*_test' split (gallery and queries)"
            )
        preds = PersonSearchPredictions.from_entries(
            gallery,
            queries,
            self._family,
            self._dataset_name,
            self._options.embed_dim,
            score_floor=self._score_floor,
            embed_boxes=self._embed_boxes,
        )
        preds.validate(self._options.embed_dim)
        # Completeness first (clear errors), before anything is written.
        build_gallery_table(preds, gallery_records)
        if query_records:
            query_rows(preds, query_records)
        if self._output_dir and self._options.save_predictions:
            PathManager.mkdirs(self._output_dir)
            save_predictions(preds, os.path.join(self._output_dir, PREDICTIONS_FILE))
        root = MetadataCatalog.get(self._dataset_name).get(self._root_key, None)
        results, settings = evaluate_person_search(
            preds, gallery_records, query_records, self._family, root, self._options
        )
        self.settings = settings
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            with PathManager.open(os.path.join(self._output_dir, RESULTS_FILE), "w") as f:
                json.dump(
                    {"dataset": self._dataset_name, "results": results, "settings": settings},
                    f,
                    indent=2,
                )
        return copy.deepcopy(results)
