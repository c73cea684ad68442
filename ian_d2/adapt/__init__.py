"""Adapting a trained model to a user's unlabeled footage (issue 28).

The fine-tuning needs identities where there are no labels: pseudo identities from the index's
tracks (one track = one person: must-link), from clustering across tracks and cameras (DBSCAN
over k-reciprocal Jaccard distances, as SpCL and DAPS do) and from the rule that two detections
of one frame are two people (cannot-link).

Modules (numpy, scipy and faiss only; no model code):

* :mod:`.jaccard`: exact k-NN (faiss), the k-reciprocal Jaccard distance (Zhong et al. 2017)
  in sparse form and a deterministic DBSCAN over it;
* :mod:`.pseudo_labels`: :func:`~.pseudo_labels.assign_pseudo_identities` in the modes
  ``tracks``, ``clusters`` and ``both``, with the cannot-link split, and its result
  :class:`~.pseudo_labels.PseudoLabels` (a JSON ``summary()`` for a manifest).

This package imports nothing at import time: ``import ian_d2.adapt.pseudo_labels`` loads numpy,
scipy and faiss.
"""
