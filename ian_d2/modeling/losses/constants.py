"""Sentinel person ids of the identity losses (see the package docstring)."""

__all__ = ["UNLABELED_PID", "BACKGROUND_PID", "IGNORE_PID"]

# A person box without identity label (the datasets' `gt_pids` use -1 for these).
UNLABELED_PID = -1
# A background proposal (`gt_classes == num_classes` after proposal matching).
BACKGROUND_PID = -2
# A proposal that the matcher marked "ignore" (`gt_classes == -1`): no identity loss uses it.
IGNORE_PID = -3
