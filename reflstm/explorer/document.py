"""`reflstm.report`: one self-contained HTML file (or notebook output) exploring a model's traces.

Everything is inlined: the data (heatmaps as PNG, exact numbers as base64 little-endian binary,
never JSON number lists), the script (report.js) and the style (report.css). Nothing is fetched:
the page works from file:// and inside a notebook output cell, and each report scopes its script
to its own root element, so several reports can share one page.
"""

import base64
import html
import importlib.resources
import json
import uuid

import numpy as np

from reflstm.analysis.explain import GRU_NOTE, equations, masked_note
from reflstm.cells.recurrent import Recurrent
from reflstm.errors import refuse
from reflstm.explorer.heatmap import DIVERGING, MAX_IMAGE_NOTE, SEQUENTIAL, heatmap_png, image_of, scale_for
from reflstm.explorer.panels import MAX_VALUES, panel

__all__ = ["report", "Report"]

CHECKED = ("Every number on this page is reflstm's own NumPy computation{source}, without TensorFlow "
           "or Keras. reflstm's layers are tested equal to Keras's (Keras 3 and tf_keras); "
           "<code>reflstm verify FILE --input X</code> compares this model's layers with Keras on your input.")


def report(target, x, *, sample=0, layer=None, attribute=False, vocabulary=None, mask=None,
           max_values=MAX_VALUES, exact_steps=None, title=None):
    """A `Report` exploring the recurrent layers of `target` on input `x`, for one sample.

    Args:
        target: a `reflstm.Model` (such as `reflstm.load` returns), or a single `reflstm.LSTM`,
            `GRU` or `SimpleRNN`.
        x: the model's input; for a layer, (batch, timesteps, input_dim).
        sample: the batch index shown.
        layer: for a Model, the name of the one recurrent layer to show (default: all of them).
        attribute: also show the attribution of the output to each step (integrated gradients; a
            model reading token ids: occlusion) and the forget/update-gate half-lives. The output
            is the model's first output, unit 0, at the last step; for a layer, its final h_t, unit 0.
        vocabulary: for a model reading token ids, the token of each id (a sequence of strings).
        mask: (batch, timesteps), for a layer only.
        max_values: the most exact numbers shipped per panel (one direction of one layer).
        exact_steps: (start, stop), the steps whose exact numbers are shipped (default: from 0).
        title: the page's title.
    """
    if isinstance(target, Recurrent):
        if layer is not None:
            raise refuse("layer", "None for a single layer (layer names a layer of a Model)", repr(layer))
        x = np.asarray(x)
        trace = target.trace(x, mask=mask)
        kind = type(target).__name__
        layers = [(kind, kind, [(kind, trace, target.go_backwards)])]
        source = ""
        header = {"title": title or f"reflstm {kind}", "saved_by": None, "summary": None}
        inputs = x
    elif hasattr(target, "recurrent_layers") and hasattr(target, "trace"):
        if mask is not None:
            raise refuse("mask", "None with a Model (it makes its own masks)", "a mask")
        recurrent = target.recurrent_layers
        if not recurrent:
            raise refuse("target", "a Model with a recurrent layer", "a Model without one")
        if layer is not None and layer not in recurrent:
            raise refuse("layer", f"one of the model's recurrent layers ({', '.join(map(repr, recurrent))})",
                         repr(layer))
        traces = target.trace(x)
        layers = []
        for name, model_layer in recurrent.items():
            if layer is not None and name != layer:
                continue
            tr = traces[name]
            if hasattr(tr, "forward") and hasattr(tr, "backward"):
                directions = [(f"{name} (forward)", tr.forward, model_layer.forward.go_backwards),
                              (f"{name} (backward)", tr.backward, model_layer.backward.go_backwards)]
                layers.append((name, f"Bidirectional({type(model_layer.forward).__name__})", directions))
            else:
                layers.append((name, model_layer.kind, [(name, tr, model_layer.cell.go_backwards)]))
        saved_by = getattr(target, "saved_by", None)
        source = f" from the file written by {saved_by}" if saved_by else ""
        header = {"title": title or f"reflstm report: model {target.name!r}", "saved_by": saved_by,
                  "summary": [[str(v) for v in row[:4]] + [bool(row[4])] for row in target.summary_rows()]}
        inputs = x[0] if isinstance(x, (list, tuple)) and len(target.graph.inputs) > 1 else x
        inputs = np.asarray(inputs)
    else:
        raise refuse("target", "a reflstm.Model, LSTM, GRU or SimpleRNN", type(target).__name__)
    header["notes"] = [CHECKED.format(source=html.escape(source))]
    header["sample"] = int(sample)
    built = [(name, kind, [panel(tr, sample, title_, go_backwards, max_values, exact_steps)
                           for title_, tr, go_backwards in directions], [tr for _, tr, _ in directions])
             for name, kind, directions in layers]
    extras = _attribution(target, inputs, sample, built) if attribute else {}
    tokens = _tokens(inputs, sample, vocabulary)
    return Report(header, built, inputs[sample] if inputs.ndim >= 2 else None, tokens, extras)


def _tokens(inputs, sample, vocabulary):
    """The tokens of the sample's ids, when the input is ids (integers, (batch, timesteps))."""
    is_ids = inputs.ndim == 2 and np.issubdtype(inputs.dtype, np.integer)
    if vocabulary is None:
        return [str(int(i)) for i in inputs[sample]] if is_ids else None
    if not is_ids:
        raise refuse("vocabulary", "only for a model reading token ids (an integer (batch, timesteps) input)",
                     f"an input of dtype {inputs.dtype}, shape {inputs.shape}")
    vocabulary = [str(v) for v in vocabulary]
    ids = inputs[sample]
    if ids.size and (ids.min() < 0 or ids.max() >= len(vocabulary)):
        raise refuse("vocabulary", f"a token for every id in the input (ids up to {int(ids.max())})",
                     f"{len(vocabulary)} tokens")
    return [vocabulary[int(i)] for i in ids]


def _attribution(target, inputs, sample, built):
    """{panel title: (attribution per processing step, half-lives)} and what the output is."""
    from reflstm.analysis.attribution import NO_KEEPING_GATE, attribute, memory_horizon

    xs = inputs[sample : sample + 1]
    ids = np.issubdtype(xs.dtype, np.integer)
    method = "occlusion" if ids else "integrated_gradients"
    found = attribute(target, xs, method=method)
    per_step = found.values[0].reshape(found.values.shape[1], -1).sum(axis=1)  # (timesteps,) input order
    what = ("the layer's final h_t, unit 0" if isinstance(target, Recurrent)
            else "the model's first output, unit 0 (at the last step)")
    extras = {"what": f"{method.replace('_', ' ')} of {what}, summed over input features",
              "horizon": {}, "attribution": {}}
    for name, _, panels, traces in built:
        for direction, (p, tr) in enumerate(zip(panels, traces)):
            if len(per_step) == p.timesteps:
                extras["attribution"][p.title] = per_step[::-1] if p.go_backwards else per_step
            if p.kind == "SimpleRNN":
                extras["horizon"][p.title] = NO_KEEPING_GATE
            elif isinstance(target, Recurrent):
                extras["horizon"][p.title] = memory_horizon(target, xs).half_life()
            else:
                where = {"direction": ("forward", "backward")[direction]} if len(panels) == 2 else {}
                extras["horizon"][p.title] = memory_horizon(target, xs, layer=name, **where).half_life()
    return extras


class Report:
    """An HTML report (`reflstm.report` makes one): `html()` the page, `save(path)` writes it, and
    a notebook displays it inline (`_repr_html_`)."""

    def __init__(self, header, layers, inputs, tokens, extras):
        self.header, self.layers, self.inputs, self.tokens, self.extras = header, layers, inputs, tokens, extras

    @property
    def panels(self):
        """Every `Panel`, layer by layer (two for a Bidirectional layer)."""
        return [p for _, _, panels, _ in self.layers for p in panels]

    def data(self):
        """What the page's script reads: a dict of plain values and base64 binary arrays."""
        left_out = []
        layers = []
        for name, kind, panels, traces in self.layers:
            encoded = []
            for p, tr in zip(panels, traces):
                encoded.append(self._panel(p, tr, left_out))
            layers.append({"name": name, "kind": kind, "panels": encoded})
        extras = self.extras
        return {**self.header, "layers": layers, "left_out": left_out,
                "scales": {"sequential": SEQUENTIAL, "diverging": DIVERGING},
                "attribution_what": extras.get("what")}

    def _panel(self, p, trace, left_out):
        start, stop = p.window
        heatmaps = []
        for label, values, gate, source in p.heatmap_values():
            scale = scale_for(values, gate)
            image, block = image_of(values)
            clipped = bool(np.nanmax(np.abs(values), initial=0) > scale[2])
            heatmaps.append({"label": label, "gate": gate, "scale": list(scale), "block": block, "source": source,
                             "clipped": clipped,
                             "png": base64.b64encode(heatmap_png(image, scale)).decode("ascii")})
            if block != [1, 1]:
                left_out.append(f"{p.title} {label}: image averaged over blocks of {block[0]} steps "
                                f"x {block[1]} units ({MAX_IMAGE_NOTE})")
        if (start, stop) != (0, p.timesteps):
            left_out.append(f"{p.title}: exact numbers shipped for steps {start}..{stop - 1} of "
                            f"{p.timesteps} ({p.shipped_values():,} numbers, within max_values); elsewhere "
                            "the heatmaps show colours only (choose the steps with exact_steps)")

        def window(a):
            return _binary(a if a.ndim == 1 else a[start:stop])

        data = {"title": p.title, "kind": p.kind, "reset_after": p.reset_after, "go_backwards": p.go_backwards,
                "timesteps": p.timesteps, "units": p.units, "window": [start, stop],
                "equations": equations(trace), "heatmaps": heatmaps,
                "table_note": GRU_NOTE.get(p.reset_after), "masked_note": masked_note(trace),
                "gates": {g: {c: window(a) for c, a in cols.items()} for g, cols in p.gates.items()},
                "states": {s: window(a) for s, a in p.states.items()},
                "mask": None if p.mask is None else _binary(p.mask.astype(np.uint8))}
        data["input"] = self._input(p)
        attribution = self.extras.get("attribution", {}).get(p.title)
        data["attribution"] = None if attribution is None else _binary(np.asarray(attribution, np.float64))
        horizon = self.extras.get("horizon", {}).get(p.title)
        if isinstance(horizon, str):
            data["half_life"], data["half_life_note"] = None, horizon
        else:
            data["half_life"] = None if horizon is None else _binary(np.asarray(horizon, np.float64))
            data["half_life_note"] = None
        if self.extras and attribution is None:
            data["attribution_note"] = "no attribution track: the model's input steps are not this layer's steps"
        return data

    def _input(self, p):
        """The input on the panel's time axis (processing order), when its steps are the layer's."""
        order = slice(None, None, -1) if p.go_backwards else slice(None)
        if self.tokens is not None and len(self.tokens) == p.timesteps:
            return {"tokens": self.tokens[order]}
        x = self.inputs
        if x is None or x.ndim != 2 or x.shape[0] != p.timesteps or not np.issubdtype(x.dtype, np.floating):
            return None
        x = x[order]  # (timesteps, features)
        scale = scale_for(x, False)
        image, block = image_of(x)
        start, stop = p.window
        return {"png": base64.b64encode(heatmap_png(image, scale)).decode("ascii"), "scale": list(scale),
                "block": block, "features": x.shape[1], "values": _binary(x[start:stop])}

    def fragment(self):
        """The report as one <div> with its style, data and script: for a notebook cell or a page."""
        root = f"reflstm-{uuid.uuid4().hex}"
        payload = json.dumps(self.data(), separators=(",", ":")).replace("</", "<\\/")
        return (f'<div class="reflstm-report" id="{root}">'
                f"<style>{_resource('report.css')}</style>"
                f'<script type="application/json" class="reflstm-data">{payload}</script>'
                '<noscript>This report draws itself with JavaScript, which is off here.</noscript>'
                f"<script>(function(){{{_resource('report.js')}\nrender(document.getElementById('{root}'));}})();"
                "</script></div>")

    def html(self):
        """The whole page: one file that opens from disk with no network and no server."""
        title = html.escape(self.header["title"])
        # The policy forbids every fetch: only the inline script, style and data: images run.
        policy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:"
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
                f"<title>{title}</title></head><body>{self.fragment()}</body></html>\n")

    def save(self, path):
        """Write the page to `path` (UTF-8)."""
        text = self.html()
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)

    def _repr_html_(self):
        return self.fragment()


def _binary(array):
    """{dtype, shape, b64}: the array's bytes, little-endian, base64 (float64, float32 or uint8)."""
    array = np.asarray(array)
    dtype = {"f": f"<f{array.dtype.itemsize}", "u": "|u1", "b": "|u1"}[array.dtype.kind]
    data = np.ascontiguousarray(array, dtype=dtype)
    return {"dtype": data.dtype.str.lstrip("<|"), "shape": list(data.shape),
            "b64": base64.b64encode(data.tobytes()).decode("ascii")}


def _resource(name):
    return importlib.resources.files("reflstm.explorer").joinpath(name).read_text(encoding="utf-8")


def trace_html(trace, title="reflstm trace"):
    """The notebook view of a trace (a `Trace`, `GRUTrace`, `SimpleRNNTrace` or `BidirectionalTrace`):
    sample 0, as `reflstm.report` shows a layer."""
    if hasattr(trace, "forward") and hasattr(trace, "backward"):
        directions = [("forward", trace.forward, None), ("backward", trace.backward, None)]
    else:
        directions = [(title, trace, None)]
    layers = [(title, "", [panel(tr, 0, t, gb) for t, tr, gb in directions], [tr for _, tr, _ in directions])]
    batch = directions[0][1].h.shape[0]
    header = {"title": f"{title}: sample 0 of {batch}", "saved_by": None, "summary": None, "sample": 0,
              "notes": [CHECKED.format(source="") + " Steps are in processing order."]}
    return Report(header, layers, None, None, {}).fragment()
