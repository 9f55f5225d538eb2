"""The reference card: a one-page diagram of one cell step, drawn from the code.

Box labels are the names of the functions in :mod:`nplstm.gates`, equations
come from their docstrings and weight rows from :func:`nplstm.gates.gate_rows`,
so the card cannot drift from the code. Given a trace and a step, it shows
the values that step computed.

>>> fig = nplstm.card.draw("lstm")                            # doctest: +SKIP
>>> fig.savefig("card.pdf")                                   # doctest: +SKIP
>>> fig = nplstm.card.draw(trace=lstm.trace(x), step=3)       # doctest: +SKIP
"""

from __future__ import annotations

import re

import numpy as np

from . import __version__, gates
from .module import article
from .style import GATE_TITLES, color, light
from .trace import projection_units

# The page is A4 landscape and everything is placed in millimetres.
PAGE = (297.0, 210.0)
MM = 1 / 25.4  # inches per mm
MONO = "DejaVu Sans Mono"
GREY = "#666666"
NODE_R = 3.6  # radius of the ⊙ and + nodes
BOX_CHARS = 19  # characters of values that fit in the narrowest gate box
ACTIVATION = {"i": "σ", "f": "σ", "o": "σ", "r": "σ", "z": "σ", "g": "tanh", "n": "tanh"}


def draw(cell=None, trace=None, step=None, *, batch=0, layer=0, direction=0, units=None,
         precision=2, nonlinearity=None):
    """Draw the card of ``cell`` (``"lstm"``, ``"gru"`` or ``"rnn"``) as a Figure.

    With ``trace`` (of that cell family; ``cell`` may then be omitted) the card
    shows, for ``step`` (default 0) of sequence ``batch`` in ``layer`` and
    ``direction``, the values of every gate and state at ``units`` (an int N
    for the first N, or a sequence of unit indices; default and at most
    :func:`room`, as many as fit in a gate's box at ``precision`` decimals:
    fewer when values are wide), and concrete sizes and weight rows. A
    projected LSTM's ``h`` shows the selected units below P, else its first
    ones. ``nonlinearity`` (``"tanh"`` or ``"relu"``, RNN only; default the
    trace's, else tanh) picks the RNN's equation. Save with
    ``fig.savefig("card.pdf")``. A trace of a layer with options beyond
    PyTorch's (``trace.options``: peepholes, clip, other activations, ...)
    is refused with a ValueError naming them: the card draws PyTorch's math.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("nplstm.card needs matplotlib: pip install 'nplstm[plot]'") from None
    cell, nonlinearity = _check(cell, trace, nonlinearity)
    values = None
    units, explicit = _units(units, precision)
    if trace is not None:
        step = 0 if step is None else step
        values = trace.step(step, layer, direction, batch)
        units = _fit(values, units, explicit, precision, trace.proj_size)
    elif step is not None:
        raise ValueError("step= needs a trace=: the values come from a traced run")
    card = _Card(cell, trace, values, units, precision, nonlinearity)
    fig = Figure(figsize=(PAGE[0] * MM, PAGE[1] * MM))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, PAGE[0])
    ax.set_ylim(0, PAGE[1])
    ax.set_axis_off()
    card.ax = ax
    card.header(step, batch, layer, direction)
    getattr(card, f"diagram_{cell}")()
    card.table()
    return fig


def _check(cell, trace, nonlinearity):
    """``(cell, nonlinearity)``, checked against each other and the trace's."""
    if cell is None:
        cell = "lstm" if trace is None else trace.mode
    if cell not in gates.GATE_ORDER:
        raise ValueError(f"cell must be one of {', '.join(gates.GATE_ORDER)}, got {cell!r}")
    if trace is not None and trace.mode != cell:
        raise ValueError(f"the trace is of {article(trace.mode.upper())}, not "
                         f"{article(cell.upper())}: pass cell={trace.mode!r} (or leave cell out)")
    if trace is not None and getattr(trace, "options", None):
        given = ", ".join(f"{k}={v!r}" for k, v in trace.options.items())
        raise ValueError(f"the card draws PyTorch's {cell.upper()} (σ and tanh gates); this "
                         f"trace is of a layer with options beyond it ({given}), which the "
                         f"card cannot show: nplstm.plot draws such traces")
    if nonlinearity is None:
        return cell, "tanh" if trace is None else trace.nonlinearity
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    if cell != "rnn":
        raise ValueError(f"nonlinearity= is an RNN option; {article(cell.upper())} has "
                         f"sigmoid and tanh gates, got nonlinearity={nonlinearity!r}")
    if trace is not None and trace.nonlinearity != nonlinearity:
        raise ValueError(f"nonlinearity={nonlinearity!r}, but the trace is of an RNN with "
                         f"nonlinearity={trace.nonlinearity!r} (or leave nonlinearity out)")
    return cell, nonlinearity


def number(v, precision=2):
    """``v`` rounded to ``precision`` decimals, or in e-notation where that is shorter.

    >>> number(-0.5), number(1081.98), number(123456.78)
    ('−0.50', '1081.98', '1.23e+05')
    """
    s, e = f"{v:.{precision}f}", f"{v:.{precision}e}"
    return (e if len(e) < len(s) else s).replace("-", "−")


def max_units(precision=2, widest=0):
    """How many values fit in a gate's box: rounded to ``precision`` decimals, each as
    wide as ``"−0.50"`` (what values in (−10, 10) take) or ``widest`` characters if wider."""
    width = max(len(f"{-0.5:.{precision}f}"), widest) + 1  # "−0.50 "
    return max(1, (BOX_CHARS - 1) // width)  # and " …" at the end


def shown_values(values, units, P=None):
    """The values the card shows of a step's ``values`` at ``units``: name -> array.

    ``x`` (features, not units) shows its first ``len(units)``; a projected
    ``h`` (P entries) shows :func:`projection_units`; units past a vector's end
    are left out.
    """
    out = {}
    for name, v in values.items():
        v = np.asarray(v)
        if name == "x":
            idx = np.arange(min(units.size, v.size))
        elif P and name[0] == "h":
            idx = projection_units(units, P)
        else:
            idx = units[units < v.size]
        out[name] = v[idx]
    return out


def room(values, units, precision=2, P=None):
    """``(n, widest)``: how many values fit in a box (:func:`max_units`) when the card
    shows ``units`` of a step's ``values``, and the widest of them as printed."""
    shown = [number(v, precision) for a in shown_values(values, units, P).values() for v in a]
    widest = max(shown, key=len, default="")
    return max_units(precision, len(widest)), widest


def _fit(values, units, explicit, precision, P):
    """The first of ``units`` whose values fit in a box; all of them, if ``explicit``."""
    n, widest = room(values, units, precision, P)
    if explicit and n < units.size:
        raise ValueError(f"units: a gate's box has room for {n} values as wide as {widest} "
                         f"at precision={precision}, got {units.size}")
    while n < units.size:  # fewer may be narrower
        units = units[:-1]
        n = room(values, units, precision, P)[0]
    return units


def _units(units, precision):
    """``(units, explicit)``: unit indices (an int N is the first N), and whether given."""
    most = max_units(precision)
    if units is None:
        return np.arange(most), False
    if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        idx = np.arange(units)
    else:
        idx = np.asarray(units)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu" or np.any(idx < 0):
        raise ValueError(f"units must be an int >= 1 or a non-empty sequence of unit "
                         f"indices >= 0, got {units!r}")
    if idx.size > most:
        raise ValueError(f"units: a gate's box has room for {most} values at "
                         f"precision={precision}, got {idx.size}")
    return idx, True


def _doc_line(func, start):
    """The line of ``func``'s docstring that starts with ``start``."""
    for line in func.__doc__.splitlines():
        if line.strip().startswith(start):
            return line.strip()
    raise ValueError(f"{func.__name__}'s docstring has no line starting {start!r}")


def equation(cell, name, nonlinearity="tanh", projected=False):
    """The equation of gate or state ``name``, read from its function's docstring.

    A ReLU RNN gets the docstring's ``(or relu)`` form of the equation, and a
    projected LSTM's ``h`` the docstring's ``W_hr`` line.

    >>> equation("rnn", "h", "relu")
    'h = relu(W_ih x + b_ih + W_hh h_prev + b_hh)'
    """
    func = gates.GATE_FUNCTIONS[cell][name]
    eq = gates.equation(func)
    if projected and (cell, name) == ("lstm", "h"):
        return _doc_line(func, "h = W_hr").split("  ")[0]
    if cell == "rnn" and nonlinearity != "tanh":
        if f"(or {nonlinearity})" not in _doc_line(func, eq):
            raise ValueError(f"{func.__name__}'s docstring has no {nonlinearity} form")
        return eq.replace("tanh(", f"{nonlinearity}(", 1)
    return eq


def rows(cell, name, hidden_size=None):
    """``"2H:3H"`` (or ``"10:15"`` with a hidden size): the weight rows of a gate, or None."""
    if name not in gates.GATE_ORDER[cell]:
        return None
    if hidden_size is not None:
        s = gates.gate_rows(cell, name, hidden_size)
        return f"{s.start}:{s.stop}"
    s = gates.gate_rows(cell, name, 1)
    return ":".join("0" if k == 0 else "H" if k == 1 else f"{k}H" for k in (s.start, s.stop))


def shape(func, sizes=None, eq=None):
    """The ``shape (N, H)`` noted beside a gate function's equation, sizes filled in.

    ``eq`` picks the docstring line (default: the equation, :func:`nplstm.gates.equation`).
    """
    eq = gates.equation(func) if eq is None else eq
    for line in func.__doc__.splitlines():
        if line.strip().startswith(eq):
            m = re.search(r"shape (\([^)]*\))", line)
            if m:
                out = m.group(1)
                for sym, value in (sizes or {}).items():
                    out = out.replace(sym, value) if sym == "N, " else re.sub(
                        rf"\b{sym}\b", str(value), out)
                return re.sub(r"^\((\w+)\)$", r"(\1,)", out)  # "(5)" -> "(5,)"
    return ""


class _Card:
    """The drawing primitives and the three diagrams, in page millimetres."""

    def __init__(self, cell, trace, values, units, precision, nonlinearity):
        self.cell, self.trace, self.values = cell, trace, values
        self.units, self.precision = units, precision
        self.funcs = gates.GATE_FUNCTIONS[cell]
        self.H = None if trace is None else trace.hidden_size
        self.P = 0 if trace is None else trace.proj_size
        self.row_values = None if values is None else shown_values(values, units, self.P)
        self.nonlinearity = nonlinearity
        self.ax = None

    # ------------------------------------------------------------ primitives --

    def text(self, x, y, s, size=8, **kw):
        kw.setdefault("ha", "left")
        kw.setdefault("va", "center")
        return self.ax.text(x, y, s, fontsize=size, **kw)

    def path(self, pts, c, arrow=True, lw=1.6, gap=0.0):
        """A polyline; the last segment ends in an arrow ``gap`` mm before its end."""
        pts = np.asarray(pts, dtype=float)
        if gap:
            d = pts[-1] - pts[-2]
            pts[-1] = pts[-1] - d / np.hypot(*d) * gap
        self.ax.plot(pts[:-1, 0] if arrow else pts[:, 0], pts[:-1, 1] if arrow else pts[:, 1],
                     color=c, lw=lw, solid_capstyle="butt", solid_joinstyle="miter",
                     zorder=1)
        if arrow:
            self.ax.annotate("", xy=pts[-1], xytext=pts[-2], zorder=1,
                             arrowprops={"arrowstyle": "-|>,head_length=0.5,head_width=0.25",
                                             "color": c, "lw": lw, "shrinkA": 0, "shrinkB": 0})

    def node(self, x, y, sym, c):
        from matplotlib.patches import Circle

        self.ax.add_patch(Circle((x, y), NODE_R, facecolor="white", edgecolor=c, lw=1.6,
                                 zorder=3))
        self.text(x, y, sym, 11, ha="center", color=c, zorder=4, fontweight="bold")

    def dot(self, x, y, c):
        from matplotlib.patches import Circle

        self.ax.add_patch(Circle((x, y), 1.0, color=c, zorder=3))

    def rect(self, x0, y0, w, h, fc, ec, lw=1.6, pad=1.5, zorder=2):
        from matplotlib.patches import FancyBboxPatch

        self.ax.add_patch(FancyBboxPatch((x0 + pad, y0 + pad), w - 2 * pad, h - 2 * pad,
                                         boxstyle=f"round,pad={pad}", facecolor=fc,
                                         edgecolor=ec, lw=lw, zorder=zorder))

    def fmt(self, name):
        """The values of ``name`` the card shows, rounded: ``"0.51 −0.23 0.88 …"`` (… if
        more exist); see :func:`shown_values`."""
        shown = self.row_values[name]
        s = " ".join(number(x, self.precision) for x in shown)
        return s + (" …" if np.size(self.values[name]) > shown.size else "")

    def gate_box(self, name, cx, cy, w=31.0, h=27.0):
        """A gate: its symbol and activation, its function's name, rows, values."""
        c = color(name)
        self.rect(cx - w / 2, cy - h / 2, w, h, light(c, 0.85), c)
        act = ACTIVATION.get(name, self.nonlinearity)
        top = cy + h / 2
        self.text(cx, top - 5.5, f"${name}$  {act}", 12, ha="center", color=c, zorder=4,
                  fontweight="bold")
        self.text(cx, top - 11.5, self.funcs[name].__name__, 7.5, ha="center",
                  family=MONO, zorder=4)
        r = rows(self.cell, name, self.H)
        if r is not None:
            self.text(cx, top - 16.5, f"rows {r}", 7, ha="center", color=GREY,
                      family=MONO, zorder=4)
        if self.values is not None:
            self.text(cx, top - 22, self.fmt(name), 7, ha="center",
                      family=MONO, zorder=4, color=c)

    def state_label(self, x, y, math, key, ha):
        """``c_{t−1}``-style label, with this step's values under it."""
        name = key[0]
        self.text(x, y + 3, f"${math}$", 13, ha=ha, color=color(name))
        if self.values is not None and key in self.values:
            self.text(x, y - 3.5, self.fmt(key), 7, ha=ha, family=MONO,
                      color=color(name))

    def x_input(self, x, bus_y):
        """x_t entering from the bottom into the bus."""
        self.path([(x, 76), (x, bus_y)], color("x"), arrow=False)
        self.dot(x, bus_y, GREY)
        s = "$x_t$" + ("" if self.values is None else f"  {self.fmt('x')}")
        self.text(x + 2, 74.5, s, 10, color=GREY)

    def bus(self, x0, x1, y, stubs, top):
        """The concatenated [h_{t−1}, x_t] running under the gates, a stub up into each."""
        self.path([(x0, y), (x1, y)], GREY, arrow=False)
        for x in stubs:
            self.path([(x, y), (x, top)], GREY)

    def cell_box(self, x0, x1):
        self.rect(x0, 80, x1 - x0, 99, "#f6f6f6", "#bbbbbb", lw=1.0, pad=3, zorder=0)

    # -------------------------------------------------------------- diagrams --

    def diagram_lstm(self):
        cy, bus_y, line_c, xs = 118.0, 97.0, 165.0, {"f": 82, "i": 116, "g": 150, "o": 184}
        box_top, out_x = cy + 13.5, 215.0
        self.cell_box(48, 226)
        cc, hc = color("c"), color("h")
        # cell state: c_{t-1} -> ⊙ f -> + (i ⊙ g) -> c_t
        self.path([(38, line_c), (232, line_c)], cc, lw=2.2)
        self.state_label(36, line_c, r"c_{t-1}", "c_prev", "right")
        self.state_label(238, line_c, r"c_t", "c", "left")
        self.node(xs["f"], line_c, "×", color("f"))
        self.path([(xs["f"], box_top), (xs["f"], line_c)], color("f"), gap=NODE_R)
        ig_x, ig_y = (xs["i"] + xs["g"]) / 2, 147.0
        self.node(ig_x, ig_y, "×", color("g"))
        self.path([(xs["i"], box_top), (xs["i"], ig_y), (ig_x, ig_y)], color("i"), gap=NODE_R)
        self.path([(xs["g"], box_top), (xs["g"], ig_y), (ig_x, ig_y)], color("g"), gap=NODE_R)
        self.path([(ig_x, ig_y), (ig_x, line_c)], cc, gap=NODE_R)
        self.node(ig_x, line_c, "+", cc)
        self.text(ig_x, line_c + 7, self.funcs["c"].__name__, 7.5, ha="center", family=MONO,
                  color=cc)
        # h_t = o ⊙ tanh(c_t)
        self.ax.add_patch(_ellipse(out_x, 144, cc))
        self.text(out_x, 144, "tanh", 8, ha="center", zorder=4)
        self.path([(out_x, line_c), (out_x, 148)], cc)
        self.node(out_x, cy, "×", color("o"))
        self.path([(out_x, 140), (out_x, cy)], cc, gap=NODE_R)
        self.path([(xs["o"] + 15.5, cy), (out_x, cy)], color("o"), gap=NODE_R)
        self.path([(out_x, cy - NODE_R), (out_x, 90), (232, 90)], hc, lw=2.2)
        self.text(out_x - 2.5, 99, self.funcs["h"].__name__, 7.5, ha="right", family=MONO,
                  color=hc)
        if self.P:
            self.text(out_x - 2.5, 94.5, f"projected by W_hr ({self.P}, {self.H})", 7,
                      ha="right", family=MONO, color=hc)
        self.state_label(238, 90, r"h_t", "h", "left")
        # inputs: h_{t-1} and x_t into the bus under the gates
        self.path([(38, bus_y), (62, bus_y)], hc, arrow=False, lw=2.2)
        self.state_label(36, bus_y, r"h_{t-1}", "h_prev", "right")
        self.bus(62, xs["o"], bus_y, xs.values(), cy - 13.5)
        self.x_input(62, bus_y)
        for name, x in xs.items():
            self.gate_box(name, x, cy)

    def diagram_gru(self):
        cy, bus_y, line_h, xs = 118.0, 97.0, 165.0, {"z": 96, "r": 140, "n": 190}
        box_top, hc = cy + 13.5, color("h")
        self.cell_box(48, 226)
        # h_{t-1} along the top: ⊙ z, then + (1 − z) ⊙ n -> h_t
        self.path([(38, line_h), (232, line_h)], hc, lw=2.2)
        self.state_label(36, line_h, r"h_{t-1}", "h_prev", "right")
        self.state_label(238, line_h, r"h_t", "h", "left")
        self.node(xs["z"], line_h, "×", color("z"))
        one_y = 147.0
        self.path([(xs["z"], box_top), (xs["z"], line_h)], color("z"), gap=NODE_R)
        self.dot(xs["z"], one_y, color("z"))
        self.node((xs["z"] + xs["r"]) / 2 + 10, one_y, "1−", color("z"))
        self.path([(xs["z"], one_y), ((xs["z"] + xs["r"]) / 2 + 10, one_y)], color("z"),
                  gap=NODE_R)
        self.node(xs["n"], one_y, "×", color("n"))
        self.path([((xs["z"] + xs["r"]) / 2 + 10 + NODE_R, one_y), (xs["n"], one_y)],
                  color("z"), gap=NODE_R)
        self.path([(xs["n"], box_top), (xs["n"], one_y)], color("n"), gap=NODE_R)
        self.path([(xs["n"], one_y), (xs["n"], line_h)], color("n"), gap=NODE_R)
        self.node(xs["n"], line_h, "+", hc)
        self.text(xs["n"] + 6, line_h + 7, self.funcs["h"].__name__, 7.5, ha="center",
                  family=MONO, color=hc)
        # r feeds the candidate: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        self.path([(xs["r"] + 15.5, cy), (xs["n"] - 15.5, cy)], color("r"))
        self.text((xs["r"] + xs["n"]) / 2, cy + 3, "$r$", 10, ha="center", color=color("r"))
        # inputs: h_{t-1} comes down to the bus, x_t comes up
        self.path([(52, line_h), (52, bus_y)], hc, arrow=False, lw=2.2)
        self.dot(52, line_h, hc)
        self.bus(52, xs["n"], bus_y, xs.values(), cy - 13.5)
        self.x_input(66, bus_y)
        for name, x in xs.items():
            self.gate_box(name, x, cy)

    def diagram_rnn(self):
        cy, bus_y, line_h, x = 118.0, 97.0, 165.0, 140.0
        hc = color("h")
        self.cell_box(48, 226)
        self.path([(38, bus_y), (62, bus_y)], hc, arrow=False, lw=2.2)
        self.state_label(36, bus_y, r"h_{t-1}", "h_prev", "right")
        self.bus(62, x, bus_y, [x], cy - 13.5)
        self.x_input(62, bus_y)
        self.path([(x, cy + 13.5), (x, line_h), (232, line_h)], hc, lw=2.2)
        self.state_label(238, line_h, r"h_t", "h", "left")
        self.gate_box("h", x, cy, w=40)

    # ------------------------------------------------------------- the rest --

    def header(self, step, batch, layer, direction):
        t = self.trace
        self.text(12, 198, f"{self.cell.upper()} reference card", 22, fontweight="bold")
        how = "gate by gate" if self.cell != "rnn" else "one block (an RNN has no gates)"
        self.text(12, 189.5, f"one time step of torch.nn.{_TORCH[self.cell]}, {how}  ·  "
                  f"read from nplstm.gates, nplstm {__version__}", 8.5, color=GREY)
        # a traced layer's own keys: weight_ih_l1_reverse, as in its state_dict
        self.suffix = "" if t is None else f"_l{layer}" + ("_reverse" if direction else "")
        if t is not None:
            where = (f"values: step t={step}" + ("" if t.unbatched else f", sequence {batch}")
                     + f", layer {layer}, {('forward', 'reverse')[direction]}  ·  "
                     f"H={t.hidden_size}" + (f", P={self.P}" if self.P else "")
                     + f", {self.shown()} shown" + self.shown_of_h())
            self.text(12, 183, where, 8.5, fontweight="bold")
        self.weight_strip()

    def shown(self):
        """``"first 3 units"`` or ``"units 1,3,5"``: which values the card shows."""
        shown = self.units[self.units < self.H]
        if np.array_equal(shown, np.arange(shown.size)):
            return "first unit" if shown.size == 1 else f"first {shown.size} units"
        return f"unit{'s' * (shown.size > 1)} " + ",".join(str(u) for u in shown)

    def shown_of_h(self):
        """``" (of h: p0,p1)"``: which of a projected h's P entries the card shows."""
        if not self.P:
            return ""
        p = projection_units(self.units, self.P)
        why = "" if np.isin(p, self.units).all() else f", as no unit shown is below P={self.P}"
        return f" (of h: {','.join(f'p{k}' for k in p)}{why})"

    def weight_strip(self):
        """weight_ih as one bar, split into the gates' row blocks in PyTorch's order."""
        order = gates.GATE_ORDER[self.cell]
        x0, x1, y0, h = 185.0, 287.0, 193.0, 8.0
        w = (x1 - x0) / len(order)
        for k, name in enumerate(order):
            self.rect(x0 + k * w, y0, w, h, light(color(name), 0.75), color(name), lw=1.0,
                      pad=0.6)
            label = f"${name}$  rows {rows(self.cell, name, self.H)}"
            self.text(x0 + (k + 0.5) * w, y0 + h / 2, label, 7.5, ha="center", family=MONO,
                      zorder=4)
        G = len(order)
        gh = "H" if G == 1 else f"{G}H"
        hh = f"({gh}, P), weight_hr (P, H)" if self.P else f"({gh}, H)"
        self.text((x0 + x1) / 2, y0 - 3.5, f"weight_ih ({gh}, H_in), weight_hh {hh}, "
                  f"bias_ih, bias_hh ({gh},)", 7, ha="center", color=GREY)

    def table(self):
        """Every function: equation (its docstring), weight rows, shape, values."""
        cols = {"sym": 12, "func": 22, "eq": 62, "rows": 152, "shape": 213, "val": 236}
        y = 64.0
        head = {"func": "function in nplstm.gates", "eq": "equation (its docstring)",
                    "rows": "weight rows (bias rows alike)", "shape": "shape"}
        if self.values is not None:
            of_h = "" if not self.P else "; h " + ",".join(
                f"p{k}" for k in projection_units(self.units, self.P))
            head["val"] = f"values ({self.shown()}{of_h})"
        for key, s in head.items():
            self.text(cols[key], y, s, 7.5, color=GREY, fontweight="bold")
        self.ax.plot([12, 287], [y - 3.2, y - 3.2], color="#bbbbbb", lw=0.8)
        t = self.trace
        sizes = None if t is None else ({"N, ": "", "H": t.hidden_size} if t.unbatched
                                          else {"N": t.batch_size, "H": t.hidden_size})
        if sizes is not None and self.P:
            sizes["proj_size"] = self.P
        names = [n for n in gates.GATE_ORDER[self.cell]] + [
            n for n in ("c", "h") if n in self.funcs and n not in gates.GATE_ORDER[self.cell]]
        for k, name in enumerate(names):
            yk = y - 9 - 7.2 * k
            c, func = color(name), self.funcs[name]
            self.rect(cols["sym"] - 1, yk - 3, 7, 6, light(c, 0.7), c, lw=1.0, pad=0.8)
            self.text(cols["sym"] + 2.5, yk, f"${name}$", 10, ha="center", color="black",
                      zorder=4)
            self.text(cols["func"], yk, func.__name__, 8, family=MONO, color=c,
                      fontweight="bold")
            projected = bool(self.P) and name == "h"
            eq = equation(self.cell, name, self.nonlinearity, projected)
            self.text(cols["eq"], yk, eq, 8.5)
            r = rows(self.cell, name, self.H)
            extra = "—"
            if (self.cell, name) == ("lstm", "h"):
                extra = f"weight_hr ({self.P}, {self.H})" if projected else (
                    "weight_hr (if proj_size)")
            s = getattr(self, "suffix", "")  # a traced layer's keys, both in one name
            keys = f"weight_{{ih,hh}}{s}[{r}]" if s else f"weight_ih[{r}], weight_hh[{r}]"
            self.text(cols["rows"], yk, extra if r is None else keys, 7.5, family=MONO)
            self.text(cols["shape"], yk, shape(func, sizes, eq if projected else None), 8,
                      family=MONO)
            if self.values is not None:
                self.text(cols["val"], yk, self.fmt(name), 7.5, family=MONO,
                          color=c)
        sizes = "N batch, H hidden_size, " + ("P proj_size, " if self.P else "")
        eqs = " ".join(equation(self.cell, n, self.nonlinearity) for n in self.funcs)
        notes = [f"{GATE_TITLES['x']} x_t (N, H_in)", f"{sizes}H_in input_size"]
        notes += [note for sym, note in (("relu(", gates.relu.__doc__.strip().rstrip(".")),
                                         ("σ(", "σ(x) = 1 / (1 + e^(−x))"),
                                         ("⊙", "⊙ elementwise product")) if sym in eqs]
        relu = ", nonlinearity='relu'" if self.nonlinearity == "relu" else ""
        notes.append(f"drawn by nplstm.card.draw('{self.cell}'{relu})")
        self.text(12, 4, "  ·  ".join(notes), 7, color=GREY)


_TORCH = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _ellipse(x, y, c):
    from matplotlib.patches import Ellipse

    return Ellipse((x, y), 13, 7, facecolor="white", edgecolor=c, lw=1.6, zorder=3)
