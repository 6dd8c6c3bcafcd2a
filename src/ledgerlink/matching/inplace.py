"""xgboost's in-place prediction of a small dense matrix, without its fixed cost per call.

``Booster.inplace_predict`` makes a new proxy DMatrix for every call, and each new xgboost context reads the cgroup
CPU quota from ``/sys/fs/cgroup`` (two stats, two opens, two reads and a std::regex, measured with strace): about
90 us of the ~190 us that a prediction of one /match request's 20 pairs costs on this machine, three or four
times a request. ``DensePredictor`` passes xgboost's C call (``XGBoosterPredictFromDense``, what
``inplace_predict`` calls for a numpy matrix) one proxy per thread, made once, with the arguments
``inplace_predict`` sends by default (all trees, NaN missing, probabilities). The trees and the values are xgboost's:
the answers are ``inplace_predict``'s bit for bit (tested on matrices with missing values). The names it uses are
xgboost 3.2's (pinned); without them it calls ``inplace_predict``.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from .runtime import xgboost

xgb = xgboost()  # after the thread settings (runtime)

try:  # xgboost's own helpers for this call, as inplace_predict uses them
    from xgboost._data_utils import array_interface
    from xgboost.core import _LIB, _check_call, _prediction_output, _ProxyDMatrix, c_bst_ulong, make_jcargs

    _ARGS = make_jcargs(
        type=0, training=False, iteration_begin=0, iteration_end=0, missing=np.nan, strict_shape=False, cache_id=0
    )
except ImportError:  # another xgboost: its public call
    _ARGS = None


class DensePredictor:
    """``booster.inplace_predict(X)`` for float32 matrices ``X`` with the booster's features in its order."""

    def __init__(self, booster) -> None:
        self.booster = booster
        self.n_features = booster.num_features()
        self._local = threading.local()  # a proxy holds the matrix of its call: one per thread

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        if _ARGS is None or X.ndim != 2 or X.shape[1] != self.n_features:
            return self.booster.inplace_predict(X)  # its own checks and errors
        proxy = getattr(self._local, "proxy", None)
        if proxy is None:
            proxy = self._local.proxy = _ProxyDMatrix()
        preds = ctypes.POINTER(ctypes.c_float)()
        shape = ctypes.POINTER(c_bst_ulong)()
        dims = c_bst_ulong()
        _check_call(
            _LIB.XGBoosterPredictFromDense(
                self.booster.handle,
                array_interface(X),
                _ARGS,
                proxy.handle,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(preds),
            )
        )
        return _prediction_output(shape, dims, preds, False)
