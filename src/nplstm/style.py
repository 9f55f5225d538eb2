"""Gate colours, defined once for the card, the plots and the printed trace.

Colours are the Okabe–Ito palette (distinguishable with colour-blindness).
Each name is a recorded gate or state; the GRU reuses the LSTM colour of the
gate that plays a similar part (z keeps like i/f, n is a candidate like g).
"""

from __future__ import annotations

#: name -> hex colour. x is the input, y a linear head's output.
GATE_COLORS = {
    "i": "#0072B2",  # input gate: blue
    "f": "#D55E00",  # forget gate: vermillion
    "g": "#009E73",  # cell candidate: bluish green
    "o": "#CC79A7",  # output gate: reddish purple
    "c": "#E69F00",  # cell state: orange
    "h": "#56B4E9",  # hidden state: sky blue
    "r": "#D55E00",  # reset gate: vermillion
    "z": "#0072B2",  # update gate: blue
    "n": "#009E73",  # new (candidate) state: bluish green
    "x": "#666666",  # input: grey
    "y": "#000000",  # output of a linear head: black
}

#: Long names, for titles and legends.
GATE_TITLES = {
    "i": "input gate", "f": "forget gate", "g": "cell candidate", "o": "output gate",
    "c": "cell state", "h": "hidden state", "r": "reset gate", "z": "update gate",
    "n": "new gate", "x": "input", "y": "prediction",
}


def color(name: str) -> str:
    """The hex colour of a gate or state name (grey for anything unknown)."""
    return GATE_COLORS.get(name.split("_")[0], GATE_COLORS["x"])


def ansi(name: str, text: str) -> str:
    """``text`` in ``name``'s colour as a 24-bit ANSI escape (for terminals)."""
    if name not in GATE_COLORS or name in ("x", "y"):
        return f"\x1b[1m{text}\x1b[0m"  # bold: black or grey vanish on some terminals
    hx = color(name).lstrip("#")
    r, g, b = (int(hx[k:k + 2], 16) for k in (0, 2, 4))
    return f"\x1b[38;2;{r};{g};{b}m{text}\x1b[0m"


def light(hex_color: str, amount: float = 0.8) -> str:
    """``hex_color`` mixed with white: ``amount`` 0 is the colour, 1 is white."""
    hx = hex_color.lstrip("#")
    rgb = [int(hx[k:k + 2], 16) for k in (0, 2, 4)]
    return "#" + "".join(f"{round(v + (255 - v) * amount):02x}" for v in rgb)
