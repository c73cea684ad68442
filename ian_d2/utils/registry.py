"""Name lookup in Detectron2 registries with aliases, case-insensitive fallback and an error that
lists what is registered."""

from typing import Any, Dict, Optional

from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
from detectron2.utils.registry import Registry

__all__ = ["lookup"]


def lookup(
    registry: Registry,
    name: str,
    key: str,
    where: str,
    aliases: Optional[Dict[str, str]] = None,
) -> Any:
    """
    The object registered in ``registry`` under ``name``: an exact match first, then an alias,
    then the one registered name (or alias) equal to ``name`` up to case.

    Args:
        registry (Registry): where to look.
        name (str): the config value.
        key (str): the config key (for the error message), e.g. "MODEL.REID.LOSS_TYPE".
        where (str): the registry's import path (for the error message), e.g.
            "ian_d2.modeling.losses.REID_LOSS_REGISTRY".
        aliases (dict[str, str] or None): short name -> registered name.

    Returns:
        the registered object.

    Raises:
        ValueError: ``name`` is not registered (the message lists the registered names and
            aliases), or it matches several of them up to case.
    """
    aliases = dict(aliases or {})
    if name in registry:
        return registry.get(name)
    if name in aliases:
        return registry.get(aliases[name])
    candidates = {n: n for n, _ in registry}
    candidates.update(aliases)
    matches = {target for n, target in candidates.items() if n.lower() == str(name).lower()}
    if len(matches) == 1:
        return registry.get(matches.pop())
    if matches:
        raise ValueError(
            f"{key}={name!r} matches several names of {where} up to case: {sorted(matches)}. "
            "Use the exact name."
        )
    registered = ", ".join(repr(n) for n in sorted(n for n, _ in registry))
    short = "".join(f", {a!r} (= {t!r})" for a, t in sorted(aliases.items()))
    raise ValueError(
        f"Unknown {key}={name!r}. Registered in {where}: {registered}{short} "
        f"(case-insensitive). Register your own with @{where.rsplit('.', 1)[-1]}.register() "
        "before the model is built."
    )
