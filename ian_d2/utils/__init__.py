"""Utilities: collectives of the identity memories under torch.distributed (:mod:`.comm`),
atomic files (:mod:`.io`, no torch), file and JSON digests (:mod:`.hashing`, no torch), box IoU
(:mod:`.boxes`, no torch), the fingerprint and embedding variant of a model (:mod:`.fingerprint`)
and the media file types (:mod:`.media`), both shared by the search index and the export, and
the CPU's reduced-precision capabilities (:mod:`.cpu`, no torch). Names load their module on
first use."""

from .._lazy import lazy_names

_MODULE_OF = {
    "all_gather_rows": ".comm",
    "broadcast_from_main": ".comm",
    "destroy_process_groups": ".comm",
    "is_distributed": ".comm",
    "launch": ".comm",
    "atomic_write": ".io",
    "box_iou": ".boxes",
    "canonical_json": ".hashing",
    "cpu_info": ".cpu",
    "sha256_file": ".hashing",
    "sha256_text": ".hashing",
}

__all__ = sorted(_MODULE_OF)

__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF)
