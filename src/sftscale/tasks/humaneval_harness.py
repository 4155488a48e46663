"""HumanEval harness programs: trusted code that runs INSIDE the sandbox child.

``sftscale.tasks.humaneval`` sends this file's source as a sandbox harness (see
``sftscale.tasks.sandbox.Program``), with one line appended that names the entry function:
``main = gt_main`` (ground truth: the canonical solution's outputs and times), ``main =
plus_main`` (a humaneval+ candidate, compared with the expected outputs) or ``main =
check_main`` (a humaneval candidate, run with the problem's ``check``). ``emit`` sends an
event back to the parent; the events are described in ``tasks/humaneval.py``.

Rules for this file, since it runs in a fresh ``python -I -S -B`` before and after the
sandbox guard: standard library only (``numpy`` lazily, for ``_allclose`` on arrays); no
relative imports, no ``from __future__`` and no ``prepare`` function; it must stay importable
in the parent too, so that it can be linted and tested directly.

Not handled: anything beyond what ``tasks/humaneval.py``'s docstring says of the verdicts;
a program that attacks the harness from inside the interpreter (see ``sandbox``).
"""

import _signal
import math
import time


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _msg(e):
    try:
        return (type(e).__name__ + ": " + str(e))[:300]
    except BaseException:
        return type(e).__name__


def _load(code, entry_point):
    g = {"__name__": "__sandbox__"}
    exec(compile(code, "<solution>", "exec"), g)
    fn = g.get(entry_point)
    if not callable(fn):
        raise NameError("entry point " + repr(entry_point) + " is not defined")
    return g, fn


_MARK = "__sftscale_digest__"
_BIG_STR, _BIG_INT_BITS = 4096, 16384


def _sha(b):
    import hashlib
    return hashlib.sha256(b).hexdigest()


def _encode(x):
    t = type(x)
    if t is str and len(x) > _BIG_STR:  # huge values travel as digests (see _eq)
        return {"$h": ["str", _sha(x.encode("utf-8", "surrogatepass"))]}
    if t is int and x.bit_length() > _BIG_INT_BITS:
        return {"$h": ["int", _sha(hex(x).encode())]}
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if -(1 << 53) < x < (1 << 53) else {"$i": hex(x)}
    if t is float:
        return x if math.isfinite(x) else {"$f": repr(x)}
    if t is list:
        return [_encode(v) for v in x]
    if t is tuple:
        return {"$t": [_encode(v) for v in x]}
    if t is dict:
        return {"$d": [[_encode(k), _encode(v)] for k, v in x.items()]}
    if t is set or t is frozenset:
        return {"$s" if t is set else "$fs": [_encode(v) for v in x]}
    if t is complex:
        return {"$c": [x.real, x.imag]}
    if t is bytes:
        return {"$b": x.hex()}
    raise TypeError("cannot encode " + t.__name__)


# --- ground truth ----------------------------------------------------------------------
def gt_main(code, tests, data, emit):
    """Ground truth: run the canonical solution on every input; emit outputs and times."""
    import copy

    g, fn = _load(code, data["entry_point"])
    for name, inputs in data["groups"]:
        outs, times = [], []
        for inp in inputs:
            inp = copy.deepcopy(inp)
            t0 = time.perf_counter()
            out = fn(*inp)
            times.append(time.perf_counter() - t0)
            outs.append(_encode(out))
        emit({"group": name, "outputs": outs, "times": times})


# --- humaneval+ candidate ------------------------------------------------------------
def _is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    if type(x).__name__ == "ndarray":
        return str(x.dtype) in ("float64", "float32")
    return False


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, complex)


def _close1(o, e, atol, rtol):
    if math.isfinite(o) and math.isfinite(e):
        return abs(o - e) <= atol + rtol * abs(e)
    return o == e


def _allclose(out, exp, atol, rtol=1e-07):
    if _num(out) and _num(exp):
        return _close1(out, exp, atol, rtol)
    if (isinstance(out, (list, tuple)) and isinstance(exp, (list, tuple)) and len(out) == len(exp)
            and all(_num(v) for v in out) and all(_num(v) for v in exp)):
        return all(_close1(o, e, atol, rtol) for o, e in zip(out, exp))
    import numpy
    return bool(numpy.allclose(out, exp, rtol=rtol, atol=atol))


def _eq(out, exp):
    """``out == exp`` where exp may hold digests of huge str/int values (exact for those:
    only a str equals a str, and no float equals an int above 2**16384)."""
    if type(exp) is tuple and len(exp) == 3 and exp[0] == _MARK:
        if exp[1] == "str":
            return isinstance(out, str) and _sha(str(out).encode("utf-8", "surrogatepass")) == exp[2]
        return (isinstance(out, int) and not isinstance(out, bool)
                and _sha(hex(int(out)).encode()) == exp[2])
    if type(exp) is list or type(exp) is tuple:
        return (isinstance(out, type(exp)) and len(out) == len(exp)
                and all(_eq(o, e) for o, e in zip(out, exp)))
    if type(exp) is dict:
        return (isinstance(out, dict) and out.keys() == exp.keys()
                and all(_eq(out[k], exp[k]) for k in exp))
    return out == exp


def _poly(xs, x):
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _group(fn, entry_point, inputs, expected, limits, atol, digests):
    for i, inp in enumerate(inputs):
        try:
            _signal.setitimer(_signal.ITIMER_REAL, limits[i])
            try:
                out = fn(*inp)
            finally:
                _signal.setitimer(_signal.ITIMER_REAL, 0)
            exp = expected[i]
            exact = _eq(out, exp) if i in digests else out == exp
            if entry_point == "find_zero":
                if not abs(_poly(*inp, out)) <= atol:
                    return "fail", i, "wrong answer"
                continue
            if atol == 0 and _is_floats(exp):
                atol = 1e-6
            if not exact and atol != 0:
                ok = type(out) is type(exp)
                if ok and isinstance(exp, (list, tuple)):
                    ok = len(out) == len(exp)
                ok = ok and _allclose(out, exp, atol)
            else:
                ok = bool(exact)
            if not ok:
                return "fail", i, "wrong answer"
        except _Timeout:
            return "timeout", i, "time limit %.2fs" % limits[i]
        except BaseException as e:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            return "fail", i, _msg(e)
    return "pass", len(inputs), ""


def plus_main(code, tests, data, emit):
    """humaneval+ candidate: compare outputs with the expected ones, evalplus semantics."""
    _signal.signal(_signal.SIGALRM, _alarm)
    try:
        g, fn = _load(code, data["entry_point"])
    except BaseException as e:
        emit({"load_error": _msg(e)})
        return
    for name, inputs, expected, limits, digests in data["groups"]:
        status, n, info = _group(fn, data["entry_point"], inputs, expected, limits, data["atol"],
                                 set(digests))
        emit({"group": name, "status": status, "done": n, "info": info})
        if status != "pass":
            return


# --- humaneval candidate -------------------------------------------------------------
def check_main(code, tests, data, emit):
    """humaneval candidate: the program, then the problem's test code and check(entry_point)."""
    try:
        g, fn = _load(code, data["entry_point"])
    except BaseException as e:
        emit({"load_error": _msg(e)})
        return
    try:
        exec(compile(tests, "<tests>", "exec"), g)
    except BaseException as e:
        emit({"group": "base", "status": "fail", "done": 0, "info": _msg(e)})
        return
    emit({"group": "base", "status": "pass", "done": 1, "info": ""})
