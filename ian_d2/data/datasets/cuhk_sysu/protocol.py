"""CUHK-SYSU protocol files (TestG{N}.mat and the query subsets): their parsed form
(:class:`CuhkSysuProtocol`), the parser, and its caches (per process and on disk)."""

import functools
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._common import DatasetFormatError, cached_parse, load_mat_var, mat_box_or_nan, mat_string
from .paths import (
    SUBSET_FILES,
    TESTG_RE,
    cuhk_sysu_paths,
    default_gallery_size,
    find_cuhk_sysu_protocols,
)

__all__ = ["CuhkSysuProtocol", "load_cuhk_sysu_protocol", "load_cuhk_sysu_subset_indices"]

logger = logging.getLogger(__name__)


@dataclass
class CuhkSysuProtocol:
    """Queries and per-query galleries of one CUHK-SYSU protocol file.

    Q: number of queries, N: gallery entries per query, M: distinct gallery images, P: positive
    entries. The galleries are stored compactly (TestG4000 has 11.6 million entries): image
    codes into ``image_names`` and the query person's boxes as a sparse list; the dense views
    ``gallery_imnames`` and ``gallery_boxes`` are built on access.

    Attributes:
        gallery_size: N.
        source: the .mat file it was read from.
        query_imnames: Q image names.
        query_boxes: float64 [Q, 4] XYXY_ABS.
        query_pids: Q identity names, e.g. 'p10581'.
        query_ishard: bool [Q].
        image_names: the M distinct gallery image names.
        gallery_codes: int32 [Q, N] index into ``image_names`` of every entry; entries that
            contain the person come first.
        pos_query, pos_col: int64 [P] entry (query, column) of every positive entry, sorted.
        pos_boxes: float64 [P, 4] XYXY_ABS box of the query person in that entry.
    """

    gallery_size: int
    source: str
    query_imnames: List[str]
    query_boxes: np.ndarray
    query_pids: List[str]
    query_ishard: np.ndarray
    image_names: List[str]
    gallery_codes: np.ndarray
    pos_query: np.ndarray
    pos_col: np.ndarray
    pos_boxes: np.ndarray

    @property
    def num_queries(self) -> int:
        return len(self.query_imnames)

    @property
    def gallery_imnames(self) -> np.ndarray:
        """str [Q, N] image name of every gallery entry."""
        return np.asarray(self.image_names, dtype=str)[self.gallery_codes]

    @property
    def gallery_boxes(self) -> np.ndarray:
        """float64 [Q, N, 4] box of the query person in every entry, NaN rows where absent."""
        out = np.full(self.gallery_codes.shape + (4,), np.nan)
        out[self.pos_query, self.pos_col] = self.pos_boxes
        return out

    @property
    def positives(self) -> np.ndarray:
        """bool [Q, N]: whether the gallery entry contains the query person."""
        out = np.zeros(self.gallery_codes.shape, dtype=bool)
        out[self.pos_query, self.pos_col] = True
        return out

    def count_gt(self) -> np.ndarray:
        """int [Q]: number of gallery entries that contain the query person."""
        return np.bincount(self.pos_query, minlength=self.num_queries)

    def duplicate_gallery_entries(self) -> Dict[int, List[str]]:
        """Queries whose gallery lists an image more than once: {query index: [image names]}.

        A known quirk of the real files (4 queries of TestG100); see ``docs/protocols.md`` for
        how the reference evaluation treats them.
        """
        out = {}
        for q in range(self.num_queries):
            codes, counts = np.unique(self.gallery_codes[q], return_counts=True)
            if (counts > 1).any():
                out[q] = sorted(self.image_names[c] for c in codes[counts > 1])
        return out

    def queries_in_own_gallery(self) -> Dict[int, bool]:
        """Queries whose own image is listed in their gallery: {query index: same box?}.

        The value says whether that gallery entry carries exactly the query box (a quirk of the
        real TestG100: 2 queries, one with the identical box).
        """
        code = {n: c for c, n in enumerate(self.image_names)}
        out = {}
        for q in range(self.num_queries):
            c = code.get(self.query_imnames[q])
            if c is None:
                continue
            hit = np.flatnonzero(self.gallery_codes[q] == c)
            if hit.size:
                sel = (self.pos_query == q) & np.isin(self.pos_col, hit)
                boxes = self.pos_boxes[sel]
                out[q] = bool(np.any(np.all(boxes == self.query_boxes[q], axis=1)))
        return out

    def subset(self, indices: Sequence[int]) -> "CuhkSysuProtocol":
        """A protocol restricted to the given query indices (same galleries)."""
        idx = np.asarray(indices, dtype=np.int64)
        remap = np.full(self.num_queries, -1, dtype=np.int64)
        remap[idx] = np.arange(idx.size)
        keep = np.isin(self.pos_query, idx)
        pq, pc, pb = remap[self.pos_query[keep]], self.pos_col[keep], self.pos_boxes[keep]
        order = np.lexsort((pc, pq))
        return CuhkSysuProtocol(
            gallery_size=self.gallery_size,
            source=self.source,
            query_imnames=[self.query_imnames[i] for i in idx],
            query_boxes=self.query_boxes[idx],
            query_pids=[self.query_pids[i] for i in idx],
            query_ishard=self.query_ishard[idx],
            image_names=self.image_names,
            gallery_codes=self.gallery_codes[idx],
            pos_query=pq[order],
            pos_col=pc[order],
            pos_boxes=pb[order],
        )


def _parse_query_gallery(arr: np.ndarray, path: str, gallery_size: Optional[int]):
    """Parse a 1xQ struct array with fields Query and Gallery (TestG files and subset files)."""
    names = arr.dtype.names or ()
    if "Query" not in names or "Gallery" not in names:
        raise DatasetFormatError(
            f"'{path}': expected a struct array with fields 'Query' and 'Gallery', "
            f"found fields {list(names)}"
        )
    entries = arr.reshape(-1)
    n_q = len(entries)
    if n_q == 0:
        raise DatasetFormatError(f"'{path}': the protocol lists no query")
    q_names, q_boxes, q_pids, q_hard = [], np.empty((n_q, 4)), [], np.zeros(n_q, dtype=bool)
    code: Dict[str, int] = {}
    codes, pos_q, pos_c, pos_b = None, [], [], []
    for i, e in enumerate(entries):
        where = f"'{path}' query {i}"
        q = np.asarray(e["Query"]).reshape(-1)
        if q.size != 1:
            raise DatasetFormatError(f"{where}: expected one Query struct, found {q.size}")
        q = q[0]
        q_names.append(mat_string(q["imname"]))
        q_boxes[i] = mat_box_or_nan(q["idlocate"], where + " Query.idlocate")
        if np.isnan(q_boxes[i]).any():
            raise DatasetFormatError(f"{where}: the query box (Query.idlocate) is empty")
        q_pids.append(mat_string(q["idname"]) if "idname" in q.dtype.names else "")
        hard = np.asarray(q["ishard"]).reshape(-1)
        q_hard[i] = bool(hard[0]) if hard.size else False

        g = np.asarray(e["Gallery"]).reshape(-1)
        if codes is None:
            n_g = len(g)
            if gallery_size is not None and n_g != gallery_size:
                raise DatasetFormatError(
                    f"{where}: expected {gallery_size} gallery entries (from the file name), "
                    f"found {n_g}"
                )
            codes = np.empty((n_q, n_g), dtype=np.int32)
        elif len(g) != codes.shape[1]:
            raise DatasetFormatError(
                f"{where}: {len(g)} gallery entries, but query 0 has {codes.shape[1]}"
            )
        codes[i] = [code.setdefault(mat_string(x), len(code)) for x in g["imname"]]
        for j, loc in enumerate(g["idlocate"]):
            if np.asarray(loc).size:
                pos_q.append(i)
                pos_c.append(j)
                pos_b.append(mat_box_or_nan(loc, f"{where} Gallery[{j}].idlocate"))
    return CuhkSysuProtocol(
        gallery_size=codes.shape[1],
        source=path,
        query_imnames=q_names,
        query_boxes=q_boxes,
        query_pids=q_pids,
        query_ishard=q_hard,
        image_names=list(code),
        gallery_codes=codes,
        pos_query=np.asarray(pos_q, dtype=np.int64),
        pos_col=np.asarray(pos_c, dtype=np.int64),
        pos_boxes=np.asarray(pos_b, dtype=np.float64).reshape(-1, 4),
    )


def _parse_protocol_file(path: str, var_names: Tuple[str, ...], size) -> "CuhkSysuProtocol":
    _, arr = load_mat_var(path, var_names, "CUHK-SYSU protocol file")
    return _parse_query_gallery(arr, path, size)


@functools.lru_cache(maxsize=8)
def _load_protocol_cached(path: str, mtime: float, var_names: Tuple[str, ...], size):
    kind = f"cuhk_sysu_protocol-{'-'.join(var_names)}-{size}"
    proto = cached_parse(kind, [path], lambda: _parse_protocol_file(path, var_names, size))
    logger.info(
        "Loaded CUHK-SYSU protocol %s: %d queries x %d gallery entries",
        path,
        proto.num_queries,
        proto.gallery_size,
    )
    return proto


def load_cuhk_sysu_protocol(path_or_root: str, gallery_size: Optional[int] = None):
    """Read a TestG{N}.mat protocol file.

    Args:
        path_or_root: a TestG{N}.mat file, or a CUHK-SYSU root (then ``gallery_size`` picks the
            file; default 100, or the smallest present).
        gallery_size: N, when ``path_or_root`` is a root.

    Returns:
        CuhkSysuProtocol (cached per file: the large files take a while to parse).
    """
    if os.path.isdir(path_or_root):
        available = find_cuhk_sysu_protocols(path_or_root)
        size = gallery_size if gallery_size is not None else default_gallery_size(path_or_root)
        if size not in available:
            raise FileNotFoundError(
                f"CUHK-SYSU: no protocol file TestG{size}.mat under "
                f"'{cuhk_sysu_paths(path_or_root)['protocol_dir']}' "
                f"(gallery sizes present: {sorted(available)})"
            )
        path = available[size]
    else:
        path = path_or_root
    m = TESTG_RE.match(os.path.basename(path))
    if m is None:
        raise ValueError(f"'{path}': a CUHK-SYSU protocol file is named TestG<N>.mat")
    n = int(m.group(1))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CUHK-SYSU protocol file '{path}' does not exist")
    return _load_protocol_cached(path, os.path.getmtime(path), (f"TestG{n}",), n)


def load_cuhk_sysu_subset_indices(root: str, subset: str, reference=None) -> np.ndarray:
    """Indices, into the main query list, of the queries of a subset file (occlusion/resolution).

    The subset files hold a struct array with the same Query / Gallery fields as TestG{N}; its
    variable name is not relied upon (the single variable in the file is taken). Queries are
    matched to the main list by image name and exact box.

    Args:
        root: CUHK-SYSU root.
        subset: 'occlusion' or 'resolution'.
        reference: the CuhkSysuProtocol whose query list the indices refer to (default: the
            default gallery size's protocol).

    Returns:
        int64 array of query indices, in the subset file's order.
    """
    if subset not in SUBSET_FILES:
        raise ValueError(
            f"unknown CUHK-SYSU query subset '{subset}'; expected one of " f"{sorted(SUBSET_FILES)}"
        )
    path = os.path.join(cuhk_sysu_paths(root)["subset_dir"], SUBSET_FILES[subset])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CUHK-SYSU {subset} subset: file '{path}' does not exist")
    import scipy.io

    names = tuple(name for name, _, _ in scipy.io.whosmat(path))
    if len(names) != 1:
        raise DatasetFormatError(f"'{path}': expected one variable, found {list(names)}")
    sub = _load_protocol_cached(path, os.path.getmtime(path), names, None)
    ref = reference if reference is not None else load_cuhk_sysu_protocol(root)
    index = {
        (n, tuple(b.tolist())): i
        for i, (n, b) in enumerate(zip(ref.query_imnames, ref.query_boxes))
    }
    out = []
    for k, (n, b) in enumerate(zip(sub.query_imnames, sub.query_boxes)):
        key = (n, tuple(b.tolist()))
        if key not in index:
            raise DatasetFormatError(
                f"'{path}': subset query {k} ({n}, box {b.tolist()}) is not a query of "
                f"'{ref.source}'"
            )
        out.append(index[key])
    return np.asarray(out, dtype=np.int64)
