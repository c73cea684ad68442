"""CUHK-SYSU person search dataset, read from its ORIGINAL annotation files.

Expected tree (see datasets/README.md and docs/protocols.md)::

    ROOT/Image/SSM/s1.jpg ...
    ROOT/annotation/Images.mat                        Img: all boxes [x y w h] per image
    ROOT/annotation/pool.mat                          pool: test image names
    ROOT/annotation/test/train_test/Train.mat         Train: the 5,532 train identities
    ROOT/annotation/test/train_test/TestG{N}.mat      TestG{N}: queries and their N-image galleries
    ROOT/annotation/test/subset/{Occlusion,Resolution}.mat   query subsets (optional)

Records follow Detectron2's standard dict format; every annotation also has ``person_id``
(train: 0..num_train_pids-1, or -1 for an unlabeled person; gallery/query: the numeric part of
the identity name, e.g. 10581 for 'p10581', or -1). Boxes are converted once, here, from uint16
[x, y, w, h] to float64 XYXY_ABS.
"""

import functools
import logging
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._common import (
    XYXY_ABS,
    DatasetFormatError,
    cached_parse,
    check_boxes,
    clip_and_filter,
    load_mat_var,
    mat_cell_strings,
    mat_string,
    resolve_image_sizes,
    require_dir,
    require_file,
    xywh_to_xyxy,
)

__all__ = [
    "CuhkSysuProtocol",
    "cuhk_sysu_paths",
    "find_cuhk_sysu_protocols",
    "find_cuhk_sysu_subsets",
    "load_cuhk_sysu_protocol",
    "load_cuhk_sysu_subset_indices",
    "load_cuhk_sysu_images",
    "cuhk_sysu_num_train_pids",
    "load_cuhk_sysu_train",
    "load_cuhk_sysu_gallery",
    "load_cuhk_sysu_query",
    "default_gallery_size",
]

logger = logging.getLogger(__name__)

_TESTG_RE = re.compile(r"^TestG(\d+)\.mat$")
SUBSET_FILES = {"occlusion": "Occlusion.mat", "resolution": "Resolution.mat"}


def cuhk_sysu_paths(root: str) -> Dict[str, str]:
    """The standard file locations under a CUHK-SYSU root."""
    ann = os.path.join(root, "annotation")
    return {
        "image_root": os.path.join(root, "Image", "SSM"),
        "images_mat": os.path.join(ann, "Images.mat"),
        "pool_mat": os.path.join(ann, "pool.mat"),
        "train_mat": os.path.join(ann, "test", "train_test", "Train.mat"),
        "protocol_dir": os.path.join(ann, "test", "train_test"),
        "subset_dir": os.path.join(ann, "test", "subset"),
    }


# ---------------------------------------------------------------------------------------------
# Protocol files (TestG{N}.mat and the query subsets)
# ---------------------------------------------------------------------------------------------
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


def find_cuhk_sysu_protocols(root: str) -> Dict[int, str]:
    """All TestG{N}.mat files present under ``root``: {N: path}, sorted by N."""
    pdir = cuhk_sysu_paths(root)["protocol_dir"]
    if not os.path.isdir(pdir):
        return {}
    found = {}
    for name in os.listdir(pdir):
        m = _TESTG_RE.match(name)
        if m:
            found[int(m.group(1))] = os.path.join(pdir, name)
    return dict(sorted(found.items()))


def find_cuhk_sysu_subsets(root: str) -> Dict[str, str]:
    """The query-subset files present under ``root``: {'occlusion'|'resolution': path}."""
    sdir = cuhk_sysu_paths(root)["subset_dir"]
    return {
        k: os.path.join(sdir, f)
        for k, f in SUBSET_FILES.items()
        if os.path.isfile(os.path.join(sdir, f))
    }


def default_gallery_size(root: str) -> Optional[int]:
    """The gallery size used by default: 100 when TestG100.mat exists, else the smallest found."""
    sizes = list(find_cuhk_sysu_protocols(root))
    if not sizes:
        return None
    return 100 if 100 in sizes else sizes[0]


def _box_or_nan(idlocate, where: str) -> np.ndarray:
    """[x y w h] (uint16 1x4, or empty 1x0 when absent) -> float64 XYXY, NaN when absent."""
    arr = np.asarray(idlocate)
    if arr.size == 0:
        return np.full(4, np.nan)
    if arr.size != 4:
        raise DatasetFormatError(f"{where}: expected an [x y w h] box of 4 values, got {arr}")
    return xywh_to_xyxy(arr.reshape(4))


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
        q_boxes[i] = _box_or_nan(q["idlocate"], where + " Query.idlocate")
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
                pos_b.append(_box_or_nan(loc, f"{where} Gallery[{j}].idlocate"))
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
    m = _TESTG_RE.match(os.path.basename(path))
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


# ---------------------------------------------------------------------------------------------
# Scene images and their boxes
# ---------------------------------------------------------------------------------------------
def _pid_from_idname(idname: str, where: str) -> int:
    m = re.search(r"(\d+)$", idname)
    if m is None:
        raise DatasetFormatError(f"{where}: identity name '{idname}' has no numeric part")
    return int(m.group(1))


def load_cuhk_sysu_images(root: str) -> Dict[str, np.ndarray]:
    """Read annotation/Images.mat: {image name: float64 [K, 4] XYXY boxes of all persons}.

    Boxes are kept as listed (zero-size ones included); the split loaders drop those.
    """
    path = cuhk_sysu_paths(root)["images_mat"]
    require_file(path, "CUHK-SYSU image annotations")
    return cached_parse("cuhk_sysu_images", [path], lambda: _parse_images_mat(path))


def _parse_images_mat(path: str) -> Dict[str, np.ndarray]:
    _, img = load_mat_var(path, ("Img",), "CUHK-SYSU image annotations")
    if img.dtype.names is None or not {"imname", "box"} <= set(img.dtype.names):
        raise DatasetFormatError(
            f"'{path}': variable 'Img' must be a struct array with fields 'imname' and 'box', "
            f"found fields {img.dtype.names}"
        )
    out = {}
    for i, e in enumerate(img.reshape(-1)):
        name = mat_string(e["imname"])
        boxes = np.asarray(e["box"]).reshape(-1)
        if boxes.size and (boxes.dtype.names is None or "idlocate" not in boxes.dtype.names):
            raise DatasetFormatError(
                f"'{path}': Img({i + 1}).box of '{name}' must be a struct with field 'idlocate'"
            )
        raw = []
        for k, b in enumerate(boxes):
            loc = np.asarray(b["idlocate"])
            if loc.size != 4:
                raise DatasetFormatError(
                    f"'{path}': malformed box {k} of image '{name}': expected [x y w h], got {loc}"
                )
            raw.append(loc.reshape(4))
        xyxy = xywh_to_xyxy(np.asarray(raw).reshape(-1, 4))
        check_boxes(xyxy, name, path)
        if name in out:
            raise DatasetFormatError(f"'{path}': image '{name}' is listed twice")
        out[name] = xyxy
    return out


def _load_pool(root: str) -> List[str]:
    path = cuhk_sysu_paths(root)["pool_mat"]
    require_file(path, "CUHK-SYSU test image list")

    def parse():
        _, pool = load_mat_var(path, ("pool",), "CUHK-SYSU test image list")
        return mat_cell_strings(pool)

    return cached_parse("cuhk_sysu_pool", [path], parse)


def _load_train_identities(root: str) -> np.ndarray:
    path = cuhk_sysu_paths(root)["train_mat"]
    _, train = load_mat_var(path, ("Train",), "CUHK-SYSU train identities")
    return np.asarray(train, dtype=object).reshape(-1)


def cuhk_sysu_num_train_pids(root: str) -> int:
    """Number of train identities (entries of Train.mat; 5,532 in the real dataset)."""
    return len(_load_train_identities(root))


def _train_pid_lookup(root: str) -> Dict[Tuple, int]:
    """{(image name, x1, y1, x2, y2): train identity index} from Train.mat."""
    path = cuhk_sysu_paths(root)["train_mat"]
    lookup = {}
    for pid, cell in enumerate(_load_train_identities(root)):
        s = np.asarray(cell).reshape(-1)
        if s.size != 1 or s.dtype.names is None or "scene" not in s.dtype.names:
            raise DatasetFormatError(
                f"'{path}': Train{{{pid + 1}}} must be a 1x1 struct with field 'scene'"
            )
        for k, sc in enumerate(np.asarray(s[0]["scene"]).reshape(-1)):
            name = mat_string(sc["imname"])
            box = _box_or_nan(sc["idlocate"], f"'{path}' Train{{{pid + 1}}} scene {k}")
            lookup[(name,) + tuple(box.tolist())] = pid
    return lookup


def _make_records(
    names: Sequence[str],
    boxes: Dict[str, np.ndarray],
    pids: Dict[str, np.ndarray],
    image_root: str,
    split: str,
    image_sizes=None,
) -> List[dict]:
    sizes = resolve_image_sizes(image_root, names, f"CUHK-SYSU {split} split", "", image_sizes)
    records, dropped, clipped = [], 0, 0
    for name in names:
        h, w = sizes[name]
        b, keep = clip_and_filter(boxes[name], (h, w))
        clipped += int(np.count_nonzero(np.any(b != boxes[name], axis=1) & keep))
        dropped += int(np.count_nonzero(~keep))
        annos = [
            {
                "bbox": b[k].tolist(),
                "bbox_mode": XYXY_ABS,
                "category_id": 0,
                "person_id": int(pids[name][k]),
            }
            for k in np.flatnonzero(keep)
        ]
        records.append(
            {
                "file_name": os.path.join(image_root, name),
                "image_id": name,
                "height": h,
                "width": w,
                "annotations": annos,
            }
        )
    n_boxes = sum(len(r["annotations"]) for r in records)
    logger.info(
        "CUHK-SYSU %s: %d images, %d boxes; dropped %d zero-size boxes, clipped %d to the image",
        split,
        len(records),
        n_boxes,
        dropped,
        clipped,
    )
    return records


def load_cuhk_sysu_train(root: str) -> List[dict]:
    """Train split: all images not in pool.mat; identities from Train.mat by exact box match.

    Returns:
        list of Detectron2 dataset dicts; ``person_id`` is the index in Train.mat (0..5531 in the
        real dataset) or -1 for a person without a train identity.
    """
    require_dir(root, "CUHK-SYSU root")
    paths = cuhk_sysu_paths(root)
    images = load_cuhk_sysu_images(root)
    pool = set(_load_pool(root))
    missing = sorted(pool - set(images))
    if missing:
        raise DatasetFormatError(
            f"'{paths['pool_mat']}' lists {len(missing)} image(s) absent from "
            f"'{paths['images_mat']}', e.g. {missing[:5]}"
        )
    lookup = _train_pid_lookup(root)
    names = [n for n in images if n not in pool]
    pids, matched = {}, 0
    for name in names:
        keys = [(name,) + tuple(b) for b in images[name].tolist()]
        pids[name] = np.asarray([lookup.get(k, -1) for k in keys], dtype=np.int64)
        matched += int(np.count_nonzero(pids[name] >= 0))
    if matched < len(lookup):
        known = {(n,) + tuple(b) for n in names for b in images[n].tolist()}
        lost = [k for k in lookup if k not in known]
        logger.warning(
            "CUHK-SYSU train: %d identity boxes of '%s' match no box of a train image in '%s' "
            "(e.g. %s); they are not used",
            len(lost),
            paths["train_mat"],
            paths["images_mat"],
            lost[:3],
        )
    records = _make_records(names, images, pids, paths["image_root"], "train")
    logger.info("CUHK-SYSU train: %d identity boxes matched", matched)
    return records


def load_cuhk_sysu_gallery(
    root: str, gallery_size: Optional[int] = None, image_sizes: Optional[Dict] = None
) -> List[dict]:
    """Test gallery: the images of pool.mat with all their person boxes.

    ``person_id`` of a box is the numeric identity of a protocol query when the box is that
    query's box or one of its gallery boxes in the protocol file (``gallery_size``, default 100),
    else -1. Search evaluation reads the galleries from the protocol files, not from these ids.

    ``image_sizes`` ({image name: (height, width)}) replaces reading the images (see
    :func:`resolve_image_sizes`): the records are then built from the annotation files alone.
    """
    require_dir(root, "CUHK-SYSU root")
    paths = cuhk_sysu_paths(root)
    images = load_cuhk_sysu_images(root)
    names = _load_pool(root)
    missing = [n for n in names if n not in images]
    if missing:
        raise DatasetFormatError(
            f"'{paths['pool_mat']}' lists {len(missing)} image(s) absent from "
            f"'{paths['images_mat']}', e.g. {missing[:5]}"
        )
    ids: Dict[Tuple, int] = {}
    if find_cuhk_sysu_protocols(root):
        proto = load_cuhk_sysu_protocol(root, gallery_size)
        pids_of = []
        for q in range(proto.num_queries):
            pid = _pid_from_idname(proto.query_pids[q], f"'{proto.source}' query {q}")
            ids[(proto.query_imnames[q],) + tuple(proto.query_boxes[q].tolist())] = pid
            pids_of.append(pid)
        names_of = proto.image_names
        for q, c, box in zip(
            proto.pos_query.tolist(), proto.pos_col.tolist(), proto.pos_boxes.tolist()
        ):
            ids[(names_of[proto.gallery_codes[q, c]],) + tuple(box)] = pids_of[q]
    pids = {
        n: np.asarray([ids.get((n,) + tuple(b), -1) for b in images[n].tolist()], dtype=np.int64)
        for n in names
    }
    return _make_records(names, images, pids, paths["image_root"], "gallery", image_sizes)


def load_cuhk_sysu_query(
    root: str, gallery_size: Optional[int] = None, image_sizes: Optional[Dict] = None
) -> List[dict]:
    """Query records of a protocol file (default TestG100): one record per query.

    Each record is a Detectron2 dict of the query image with exactly one annotation, the GIVEN
    query box (never dropped or clipped), plus ``query_index`` (its row in the protocol file).
    ``image_sizes`` as in :func:`load_cuhk_sysu_gallery`.
    """
    require_dir(root, "CUHK-SYSU root")
    paths = cuhk_sysu_paths(root)
    if not find_cuhk_sysu_protocols(root):
        raise FileNotFoundError(
            f"CUHK-SYSU queries: no TestG<N>.mat protocol file in '{paths['protocol_dir']}'"
        )
    proto = load_cuhk_sysu_protocol(root, gallery_size)
    sizes = resolve_image_sizes(
        paths["image_root"], sorted(set(proto.query_imnames)), "CUHK-SYSU queries", "", image_sizes
    )
    records = []
    for q, name in enumerate(proto.query_imnames):
        h, w = sizes[name]
        records.append(
            {
                "file_name": os.path.join(paths["image_root"], name),
                "image_id": name,
                "height": h,
                "width": w,
                "query_index": q,
                "annotations": [
                    {
                        "bbox": proto.query_boxes[q].tolist(),
                        "bbox_mode": XYXY_ABS,
                        "category_id": 0,
                        "person_id": _pid_from_idname(
                            proto.query_pids[q], f"'{proto.source}' query {q}"
                        ),
                    }
                ],
            }
        )
    return records
