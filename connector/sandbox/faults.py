"""Fault injection: the fault kinds, checked fault configurations and scripts, and which fault a request gets."""

from __future__ import annotations

import random
from typing import Any

from connector.sandbox.validation import is_int

FAULT_KINDS = ("429", "500", "503", "drop", "latency", "apply_then_500")
FAULT_SETTINGS = ("rate", "kinds", "retry_after_seconds", "latency_ms", "spike_ms", "seed")
SCRIPTED_KEYS = ("method", "fault", "retry_after", "spike_ms")


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def default_faults(retry_after_seconds: int = 1, seed: int | None = None) -> dict[str, Any]:
    """No random faults: every kind weighted 1 should a rate be set, no added latency."""
    return {"rate": 0.0, "kinds": {k: 1.0 for k in FAULT_KINDS}, "retry_after_seconds": retry_after_seconds, "latency_ms": 0, "spike_ms": 300, "seed": seed}


def copy_faults(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a fault configuration that shares nothing mutable with it."""
    return {**config, "kinds": dict(config["kinds"])}


def check_faults(config: dict[str, Any]) -> dict[str, Any]:
    """Validated, normalised copy of a fault configuration; ValueError names the bad key."""
    out = dict(config)
    unknown = set(out) - set(FAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown fault settings {sorted(unknown)}")
    rate = out["rate"]
    if not _is_number(rate) or not 0 <= rate <= 1:
        raise ValueError("rate must be a number within 0..1")
    out["rate"] = float(rate)
    kinds = out["kinds"]
    if not isinstance(kinds, dict):
        raise ValueError("kinds must be an object {kind: weight}")
    bad = set(kinds) - set(FAULT_KINDS)
    if bad:
        raise ValueError(f"unknown fault kinds {sorted(bad)}; known: {list(FAULT_KINDS)}")
    for kind, weight in kinds.items():
        if not _is_number(weight) or weight < 0:
            raise ValueError(f"weight of {kind} must be a number >= 0")
    out["kinds"] = {k: float(w) for k, w in kinds.items()}
    for key in ("retry_after_seconds", "latency_ms", "spike_ms"):
        if not _is_number(out[key]) or out[key] < 0:
            raise ValueError(f"{key} must be a number >= 0")
    if not is_int(out["retry_after_seconds"]):
        raise ValueError("retry_after_seconds must be an integer (Retry-After is in whole seconds)")
    if out["seed"] is not None and not is_int(out["seed"]):
        raise ValueError("seed must be an integer or null")
    return out


def check_scripted(fault: Any) -> dict[str, Any]:
    """Validated, normalised copy of one scripted fault (method upper-cased, None for any)."""
    if not isinstance(fault, dict):
        raise ValueError("each scripted fault is an object {method?, fault, retry_after?, spike_ms?}")
    unknown = set(fault) - set(SCRIPTED_KEYS)
    if unknown:
        raise ValueError(f"unknown scripted fault keys {sorted(unknown)}")
    if fault.get("fault") not in FAULT_KINDS:
        raise ValueError(f"unknown fault {fault.get('fault')!r}; known: {list(FAULT_KINDS)}")
    method = fault.get("method")
    if method is not None and (not isinstance(method, str) or not method.isalpha()):
        raise ValueError(f"method must be an HTTP method name, not {method!r}")
    out = {"method": method.upper() if method else None, "fault": fault["fault"]}
    if "retry_after" in fault:
        if not is_int(fault["retry_after"]) or fault["retry_after"] < 0:
            raise ValueError("retry_after must be an integer >= 0")
        out["retry_after"] = fault["retry_after"]
    if "spike_ms" in fault:
        value = fault["spike_ms"]
        if not _is_number(value) or value < 0:
            raise ValueError("spike_ms must be a number >= 0")
        out["spike_ms"] = value
    return out


def choose_fault(method: str, script: list[dict[str, Any]], config: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    """The first scripted fault for this method (taken off `script`) if one is queued, else maybe a random one."""
    for index, scripted in enumerate(script):
        if scripted["method"] in (None, method):
            return script.pop(index)
    if config["rate"] <= 0 or rng.random() >= config["rate"]:
        return None
    kinds = [k for k, w in config["kinds"].items() if w > 0]
    if not kinds:
        return None
    return {"fault": rng.choices(kinds, weights=[config["kinds"][k] for k in kinds])[0]}
