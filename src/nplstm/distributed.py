"""Score many sequences on a Dask cluster: one layer, a big batch split into blocks.

>>> from nplstm.distributed import score                       # doctest: +SKIP
>>> output, h_n = score(gru, "sequences.zarr", return_state=True)  # lazy dask arrays
>>> h_n[-1].to_zarr("embeddings.zarr")                          # runs on the cluster

A recurrent layer reads each sequence on its own: sequence n's output depends
on sequence n's input alone. So a batch ``(N, L, H_in)`` (or ``(L, N, H_in)``)
split along N into blocks can be scored block by block on any number of
processes and machines and put back together -- as long as no block is split
along time (the recurrence runs over a whole sequence) or along features.
:func:`score` does exactly that with Dask (https://docs.dask.org/en/stable/array.html):
the layer is shipped to the workers once (``Client.scatter(..., broadcast=True)``,
or one ``dask.delayed`` key every task refers to), each task calls the layer on
its block, and the results come back as dask arrays chunked along the batch,
laid out as the layer's own call returns them. Nothing is computed until you
ask (``.compute()``, ``.to_zarr()``, ``dask.compute``).

Identical numbers: a block's result is the layer's own call on that block,
bit for bit, on a worker or in this process. Against one call on the *whole*
batch the last bit may differ where the BLAS picks another kernel for a
different batch size (OpenBLAS uses a "small matrix" kernel for products with
few columns; measured: at most 1.5e-7 in float32, 8e-16 in float64). Blocks
made here are of even size, so no block is a small leftover.

Needs ``pip install nplstm[dask]`` (dask[distributed] and zarr); ``import
nplstm`` never imports Dask.
"""

from __future__ import annotations

import copy
import operator
import os

import numpy as np

from . import loop
from .layers import _RNNBase
from .module import check_bool, check_size, to_numpy

#: Sequences per block when the input does not say (a NumPy array, or a Zarr
#: store whose batch chunks are smaller): big enough that a task's overhead
#: (~1 ms) is nothing beside its work, small enough to spread over workers.
BATCH_SIZE = 1024


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError as e:  # pragma: no cover - the test extra installs dask
        raise ImportError("nplstm.distributed needs Dask: pip install nplstm[dask]") from e
    return dask, da


def score(model, x, *, batch_first=None, lengths=None, return_state=False, batch_size=None,
          client=None):
    """Run ``model`` over a large batch of sequences on Dask, block by block.

    Args:
        model: an nplstm ``LSTM``, ``GRU`` or ``RNN``; or any module whose call maps
            an array with the batch on one axis to an array with the batch on the
            same axis (``nplstm.Linear``: ``(N, *, in) -> (N, *, out)``). It is copied
            when ``score`` is called: later changes to it do not reach the workers.
        x: the batch: a dask array, a NumPy array (or a list or tensor), a
            ``zarr.Array``, or the path of a Zarr array store. For a recurrent
            layer, 3-D: ``(N, L, H_in)`` if ``batch_first`` else ``(L, N, H_in)``.
            A dask array must be chunked along the batch axis only. A NumPy array
            with a ``client`` has its blocks scattered to the workers; without one
            it is embedded in the graph (for data bigger than memory, a store).
        batch_first: which axis of ``x`` is the batch (0 if True, 1 if False).
            Defaults to the layer's own ``batch_first``; a recurrent layer reads the
            layout it was built for, so a different value is an error, not a
            transpose. Other modules: default True.
        lengths: ``(N,)`` integers in ``[1, L]`` (NumPy or dask), as the layer's
            ``lengths=``: sequence n is ``x[n, :lengths[n]]``, padding after it.
            Checked here when NumPy; a dask array's values are checked by the
            layer on the workers, and a bad one fails the compute.
        return_state: also return the final states, as the layer does.
        batch_size: sequences per block (task). Default: a dask array's own
            chunks; a Zarr array's batch chunks, grouped up to :data:`BATCH_SIZE`;
            a NumPy array's, :data:`BATCH_SIZE`. Blocks are made of even size.
        client: a ``distributed.Client``: the layer is scattered to every worker
            once (``broadcast=True``) and the arrays must be computed on that
            client. None: the layer is one ``dask.delayed`` key in the graph that
            every task refers to; any scheduler computes it (a distributed one
            copies it to each worker once).

    Returns:
        Lazy dask arrays chunked along the batch, with the layer's dtype, shaped and
        nested as the layer's call returns them: ``output`` ``(L, N, D*H_out)`` (or
        ``(N, L, D*H_out)`` with batch_first); with ``return_state``, ``(output,
        h_n)`` for GRU/RNN, ``(output, (h_n, c_n))`` for LSTM, states
        ``(D*num_layers, N, H)``. Other modules: their output, the batch on the same
        axis.

    Raises:
        ValueError: ``x`` of the wrong number of dimensions, of the wrong size on its
            last axis, chunked along time or features, or holding no sequence;
            ``batch_first`` against the layer's; ``lengths`` of the wrong shape or
            out of range. TypeError: ``lengths`` not integers, ``model`` not
            callable, flags not bool, a Zarr path to a group. FileNotFoundError: no
            store at the path. ImportError:
            Dask (or Zarr, for a store) missing.
    """
    dask, da = _import_dask()
    if not callable(model):
        raise TypeError(f"model must be an nplstm layer or module, got "
                        f"{type(model).__name__}")
    recurrent = isinstance(model, _RNNBase)
    batch_first = _check_batch_first(model, batch_first, recurrent)
    check_bool("return_state", return_state)
    if batch_size is not None:
        batch_size = check_size("batch_size", batch_size)
    if not recurrent:
        for name, value in (("lengths", lengths), ("return_state", return_state)):
            if value is not None and value is not False:
                raise ValueError(f"{name}= is for recurrent layers (LSTM, GRU, RNN); "
                                 f"{type(model).__name__} takes none")
    axis = 0 if batch_first else 1
    x, local = _as_dask(da, x, axis, batch_size)
    _check_blocks(x, axis)
    if recurrent:  # every check before anything is shipped
        _check_layer_input(model, x)
        if lengths is not None:
            lengths = _lengths(da, lengths, x.shape[axis], x.shape[1 - axis], x.chunks[axis])
    else:
        probe = _probe(model, x, axis)
    model = copy.deepcopy(model)  # the layer as it is now, whatever happens to it later
    if client is None:
        ref = dask.delayed(model, pure=True, traverse=False)
    else:
        ref = client.scatter(model, broadcast=True)
        if local is not None:
            x = _scatter_blocks(da, client, local, x.chunks[axis], axis)
    if recurrent:
        return _score_layer(da, model, ref, x, axis, lengths, return_state)
    return _score_module(da, ref, x, axis, probe, f"{type(model).__name__.lower()}-score")


def _check_batch_first(model, batch_first, recurrent):
    if batch_first is None:
        return model.batch_first if recurrent else True
    check_bool("batch_first", batch_first)
    if recurrent and batch_first != model.batch_first:
        layout = "(N, L, H_in)" if model.batch_first else "(L, N, H_in)"
        raise ValueError(f"batch_first={batch_first} contradicts the layer's batch_first="
                         f"{model.batch_first}: the layer reads x as {layout}; give x in "
                         f"that layout, or build the layer with batch_first={batch_first}")
    return bool(batch_first)


def _as_dask(da, x, axis, batch_size):
    """``(x as a dask array chunked along axis only, the NumPy array or None)``; a
    dask array as given, rechunked along the batch if ``batch_size`` is given."""
    if isinstance(x, (str, os.PathLike)):
        x = _open_zarr(x)
    if isinstance(x, da.Array):
        if batch_size is not None and x.ndim > axis:
            x = x.rechunk({axis: _even_chunks(x.shape[axis], batch_size)})
        return x, None
    is_zarr = type(x).__module__.split(".")[0] == "zarr"
    arr = x if is_zarr else to_numpy(x, "x")
    local = None if is_zarr else arr
    if arr.ndim <= axis:
        return (da.from_zarr(arr) if is_zarr else da.from_array(arr)), local
    N, align = arr.shape[axis], arr.chunks[axis] if is_zarr else 1
    size = batch_size or max(BATCH_SIZE - BATCH_SIZE % align, align)
    chunks = tuple(_even_chunks(N, size, align) if k == axis else -1 for k in range(arr.ndim))
    return (da.from_zarr(arr, chunks=chunks) if is_zarr else
            da.from_array(arr, chunks=chunks)), local


def _scatter_blocks(da, client, arr, sizes, axis):
    """A NumPy array in memory here, its blocks sent straight to the workers rather
    than through the scheduler inside the graph (Dask warns above 10 MiB)."""
    starts = np.cumsum((0,) + sizes)
    blocks = [arr[a:b] if axis == 0 else arr[:, a:b] for a, b in zip(starts, starts[1:])]
    return da.concatenate([da.from_delayed(f, b.shape, dtype=b.dtype, meta=b[:0])
                           for f, b in zip(client.scatter(blocks), blocks)], axis=axis)


def _open_zarr(path):
    try:
        import zarr
    except ImportError as e:  # pragma: no cover - the test extra installs zarr
        raise ImportError("reading a Zarr store needs zarr: pip install nplstm[dask]") from e
    if "://" not in os.fspath(path) and not os.path.exists(path):  # URLs: zarr/fsspec say
        raise FileNotFoundError(f"x: no Zarr store at {os.fspath(path)!r}")
    store = zarr.open(path, mode="r")
    if not isinstance(store, zarr.Array):
        raise TypeError(f"x: the Zarr store at {os.fspath(path)!r} is a group, not an array;"
                         f" pass one of its arrays, e.g. zarr.open(path)[name] (it holds "
                         f"{sorted(store.array_keys())})")
    return store


def _even_chunks(N, size, align=1):
    """Block sizes along the batch: about ``size`` each, in multiples of ``align``
    (a store's chunk), spread evenly so that no block is a small leftover."""
    if N == 0:
        return (0,)  # refused by _check_blocks
    units = -(-N // align)  # store chunks along the batch
    per = max(size // align, 1)  # store chunks per block
    n_blocks = -(-units // per)
    counts = [units // n_blocks + (b < units % n_blocks) for b in range(n_blocks)]
    sizes = [c * align for c in counts]
    sizes[-1] -= units * align - N  # the store's last chunk may be short
    return tuple(sizes)


def _check_blocks(x, axis):
    """One block along every axis but the batch; a batch to split."""
    if x.ndim <= axis:
        raise ValueError(f"x must have a batch axis {axis}, got {x.ndim}-D x of shape "
                         f"{x.shape}")
    if x.shape[axis] == 0:
        raise ValueError(f"x holds no sequences: shape {x.shape}, batch axis {axis}")
    names = {0: "batch", 1: "time"} if axis == 0 else {0: "time", 1: "batch"}
    for k, chunks in enumerate(x.chunks):
        if k != axis and len(chunks) > 1:
            what = names.get(k, "features") if x.ndim == 3 else f"axis {k}"
            raise ValueError(f"x is chunked along {what} (axis {k}, chunks {chunks}); "
                             f"split it along the batch (axis {axis}) only: "
                             f"x.rechunk({{{k}: -1}})")


def _check_layer_input(layer, x):
    name = type(layer).__name__
    if x.ndim != 3:
        hint = (" (unbatched input has no batch to split: call the layer itself)"
                if x.ndim == 2 else "")
        raise ValueError(f"{name}: x must be 3-D, a batch of sequences, got {x.ndim}-D "
                         f"shape {x.shape}{hint}")
    if x.shape[-1] != layer.input_size:
        raise ValueError(f"{name}: x.shape[-1] must be equal to input_size. Expected "
                         f"{layer.input_size}, got {x.shape[-1]}")


def _score_layer(da, layer, ref, x, axis, lengths, return_state):
    """A recurrent layer over the blocks: one task per block returns the layer's
    arrays as a tuple; each result is a dask array taking its item per block."""
    name, L = type(layer).__name__, x.shape[1 - axis]
    x_ind = "btf" if axis == 0 else "tbf"
    args = [ref, None, x, x_ind]
    if lengths is not None:
        args += [lengths, "b"]
    token = f"{name.lower()}-score"
    parts = da.blockwise(_run_layer, "b", *args, token=token, concatenate=True,
                         dtype=object, meta=np.empty((0,), object))  # a tuple per block
    D = layer.num_directions
    output = _item(da, parts, 0, x_ind, {"t": L, "f": D * layer.output_size}, layer.dtype,
                   f"{token}-output")
    if not return_state:
        return output
    sizes = {"h": layer.output_size, "c": layer.hidden_size}
    states = tuple(_item(da, parts, k + 1, "kbh", {"k": D * layer.num_layers, "h": sizes[s]},
                         layer.dtype, f"{token}-{s}_n") for k, s in enumerate(layer.family.states))
    return output, (states[0] if len(states) == 1 else states)


def _run_layer(layer, x, lengths=None):
    """On a worker: the layer's own call on one block -> (output, h_n[, c_n])."""
    output, state = layer(x, lengths=lengths)
    return (output,) + (state if isinstance(state, tuple) else (state,))


def _item(da, parts, k, ind, sizes, dtype, token):
    """Item ``k`` of every block's tuple, as an array with index ``ind`` (its batch
    axis "b" chunked as ``parts``, the axes in ``sizes`` one block each)."""
    meta = np.empty((0,) * len(ind), dtype)
    return da.blockwise(operator.getitem, ind, parts, "b", k, None, new_axes=sizes,
                        token=token, dtype=dtype, meta=meta)


def _lengths(da, lengths, N, L, chunks):
    """``lengths`` checked as the layer does (a dask array: its dtype and shape
    only, its values on the workers) and chunked as x's batch."""
    if not isinstance(lengths, da.Array):
        return da.from_array(loop.check_lengths(lengths, L, N), chunks=(chunks,))
    ones = np.broadcast_to(np.ones((), lengths.dtype), lengths.shape)  # no memory
    loop.check_lengths(ones, L, N)  # the dtype and shape errors, no values read
    return lengths.rechunk((chunks,))


def _probe(model, x, axis):
    """Any other module's output on an empty batch: its shape but the batch."""
    empty = np.zeros(x.shape[:axis] + (0,) + x.shape[axis + 1:], x.dtype)
    try:
        probe = model(empty)
    except (ValueError, TypeError) as e:
        raise ValueError(f"x of shape {x.shape} does not fit {model!r}: {e}") from e
    if not isinstance(probe, np.ndarray) or probe.ndim <= axis or probe.shape[axis] != 0:
        raise TypeError(f"{type(model).__name__} must return one array with the batch on "
                        f"axis {axis}, as its input; on an empty batch it returned "
                        f"{getattr(probe, 'shape', type(probe).__name__)}")
    return probe


def _score_module(da, ref, x, axis, probe, token):
    """Any other module (``Linear``): its call on each block, the output shaped as
    ``probe`` (its call on an empty batch) but the batch."""
    letters = "acdeghijklmnopqrsuvwxyz"  # anything but "b", the batch
    x_ind = "".join("b" if k == axis else letters[k] for k in range(x.ndim))
    out_ind = "".join("b" if k == axis else letters[-1 - k] for k in range(probe.ndim))
    sizes = {i: n for i, n in zip(out_ind, probe.shape) if i != "b"}
    return da.blockwise(_run_module, out_ind, ref, None, x, x_ind, axis, None,
                        probe.shape, None, token=token,
                        concatenate=True, new_axes=sizes, dtype=probe.dtype, meta=probe)


def _run_module(model, x, axis, shape):
    """On a worker: the module's call on one block, checked against the plan."""
    y = model(x)
    expected = shape[:axis] + (x.shape[axis],) + shape[axis + 1:]
    if not isinstance(y, np.ndarray) or y.shape != expected:
        raise ValueError(f"{type(model).__name__} returned shape "
                         f"{getattr(y, 'shape', None)} for a block of shape {x.shape}; "
                         f"expected {expected}, as on an empty batch")
    return y
