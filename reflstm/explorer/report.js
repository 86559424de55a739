/* reflstm report: draws one report inside its root element (no globals, no network).
   The page's Python side (reflstm/explorer/document.py) inlines this file inside a function and
   calls render(root) with the report's own root, so several reports can share one page. */
"use strict";

function render(root) {
  const data = JSON.parse(root.querySelector("script.reflstm-data").textContent);
  const drawn = [];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "html") node.innerHTML = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function bytesOf(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }

  function decode(enc) {
    if (!enc) return null;
    const types = { f8: Float64Array, f4: Float32Array, u1: Uint8Array };
    const array = new types[enc.dtype](bytesOf(enc.b64).buffer);
    array.shape = enc.shape;
    return array;
  }

  // Numbers as Python's format spec writes them: f"{x:.{prec}f}", right-aligned in `width`.
  function fixed(x, prec, width) {
    let s;
    if (Number.isNaN(x)) s = "nan";
    else if (!Number.isFinite(x)) s = x > 0 ? "inf" : "-inf";
    else s = (Object.is(x, -0) ? "-" : "") + x.toFixed(prec);
    return width ? s.padStart(width) : s;
  }

  function colour(stops, where) {
    where = Math.min(1, Math.max(0, where));
    for (let k = 1; k < stops.length; k++) {
      const [p1, c1] = stops[k], [p0, c0] = stops[k - 1];
      if (where <= p1) {
        const a = (where - p0) / (p1 - p0);
        return "rgb(" + c0.map((v, j) => Math.round(v + a * (c1[j] - v))).join(",") + ")";
      }
    }
    return "rgb(" + stops[stops.length - 1][1].join(",") + ")";
  }

  function drawPng(canvas, b64) {
    const blob = new Blob([bytesOf(b64)], { type: "image/png" });
    drawn.push(createImageBitmap(blob).then((bitmap) => {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      canvas.getContext("2d").drawImage(bitmap, 0, 0);
    }));
  }

  // Header: title, what was checked, what was left out, the model summary.
  root.append(el("h2", { text: data.title }));
  if (data.saved_by) root.append(el("div", { class: "muted", text: "Saved by " + data.saved_by + "; sample " + data.sample + "." }));
  for (const note of data.notes) root.append(el("div", { class: "note checked", html: note }));
  if (data.left_out.length) {
    root.append(el("div", { class: "left-out" }, el("b", { text: "Left out of this file: " }),
      el("ul", {}, ...data.left_out.map((t) => el("li", { text: t })))));
  }
  if (data.summary) {
    const rows = data.summary.map(([name, kind, shape, count, runs]) => el("tr", {},
      el("td", { text: name + " (" + kind + ")" + (runs ? "" : " [not run]") }), el("td", { text: shape }),
      el("td", { class: "num", text: Number(count).toLocaleString("en-US") })));
    root.append(el("details", { class: "model-summary" }, el("summary", { text: "Model summary (as Keras's model.summary() lists it)" }),
      el("table", { class: "summary" }, el("tr", {}, el("th", { text: "Layer (type)" }), el("th", { text: "Output shape" }),
        el("th", { text: "Param #" })), ...rows)));
  }

  const width = Math.max(600, Math.min(root.clientWidth || 1080, 1120) - 40);
  for (const layer of data.layers) {
    root.append(el("h3", { text: (layer.kind ? layer.kind + " " : "") + JSON.stringify(layer.name) }));
    const row = el("div", { class: "directions" });
    root.append(row);
    for (const p of layer.panels) row.append(renderPanel(p, Math.floor((width - 18 * (layer.panels.length - 1)) / layer.panels.length)));
  }

  Promise.all(drawn).then(() => { root.dataset.ready = "1"; },
    (error) => { root.dataset.ready = "error"; console.error("reflstm report: " + error); });

  function renderPanel(p, panelWidth) {
    const T = p.timesteps, U = p.units, [start, stop] = p.window;
    const gates = {}, states = {};
    for (const [g, cols] of Object.entries(p.gates)) {
      gates[g] = {};
      for (const [c, enc] of Object.entries(cols)) gates[g][c] = decode(enc);
    }
    for (const [s, enc] of Object.entries(p.states)) states[s] = decode(enc);
    const mask = decode(p.mask), attribution = decode(p.attribution), halfLife = decode(p.half_life);
    const quantities = p.heatmaps.map((h) => ({ ...h, values: h.source[0] === "gate" ? gates[h.source[1]].value : states[h.source[1]] }));
    const input = p.input, inputValues = input && input.values ? decode(input.values) : null;
    const heatWidth = Math.max(160, panelWidth - 52 - 116 - 12);
    const cellH = Math.max(1, Math.min(10, Math.floor(110 / U)));
    const heatHeight = Math.max(24, Math.min(U * cellH, 110));
    const state = { step: start, unit: 0 };

    const panel = el("div", { class: "panel", "data-title": p.title });
    const direction = p.go_backwards ? "go_backwards: step t reads input step " + (T - 1) + " - t" : p.go_backwards === false ? "input order" : "processing order";
    panel.append(el("h4", { text: p.title + " \u2014 " + p.kind + ", " + T + " steps \u00d7 " + U + " units, steps in processing order (" + direction + ")" }));
    panel.append(el("div", { class: "muted equations" }, el("code", { text: p.equations })));
    const readout = el("div", { class: "readout", text: "Point at a heatmap for the exact value; click to pick that step and unit." });

    function exact(values, t, u, columns) {
      if (t < start || t >= stop) return null;
      return values[(t - start) * columns + u];
    }
    function inputStep(t) { return p.go_backwards ? T - 1 - t : t; }
    function stepWords(t) {
      let words = "step " + t + (p.go_backwards ? " (input step " + inputStep(t) + ")" : "");
      if (input && input.tokens) words += ", token " + JSON.stringify(input.tokens[t]);
      if (mask && !mask[t]) words += " [masked: Keras discarded this step; the state is carried]";
      return words;
    }
    function cellAt(canvas, event, rows) {
      const box = canvas.getBoundingClientRect();
      const t = Math.min(T - 1, Math.max(0, Math.floor((event.clientX - box.left) / box.width * T)));
      const r = Math.min(rows - 1, Math.max(0, Math.floor((event.clientY - box.top) / box.height * rows)));
      return [t, r];
    }
    function showValue(label, v, where) {
      readout.textContent = "";
      readout.append(label + " at " + where + ": ",
        v === null ? el("span", { class: "value missing", text: "exact value not shipped (outside steps " + start + ".." + (stop - 1) + ")" })
          : el("span", { class: "value", text: String(v) }));
    }
    function range(scale) { return fixed(scale[1], 2) + " \u2026 " + fixed(scale[2], 2); }
    function rowOf(label, canvas, note) {
      return el("div", { class: "row" }, el("div", { class: "label", text: label }), canvas, el("div", { class: "range", text: note }));
    }

    for (const q of quantities) {
      const canvas = el("canvas", { class: "heat", "data-quantity": q.label, "data-panel": p.title,
        style: "width:" + heatWidth + "px;height:" + heatHeight + "px" });
      drawPng(canvas, q.png);
      canvas.addEventListener("mousemove", (event) => {
        const [t, u] = cellAt(canvas, event, U);
        showValue(q.label, exact(q.values, t, u, U), stepWords(t) + ", unit " + u);
      });
      canvas.addEventListener("click", (event) => { const [t, u] = cellAt(canvas, event, U); pick(t, u); });
      panel.append(rowOf(q.label, canvas, range(q.scale) + (q.gate ? "" : " (0 white)") + (q.clipped ? "; beyond: end colours" : "")));
    }

    function strip(label, height, draw, onmove, note) {
      const canvas = el("canvas", { class: "strip", "data-quantity": label, "data-panel": p.title,
        style: "width:" + heatWidth + "px;height:" + height + "px" });
      canvas.width = heatWidth;  // drawn at the size shown, so text stays sharp
      canvas.height = height;
      draw(canvas.getContext("2d"), canvas.width / T, height);
      canvas.addEventListener("mousemove", (event) => onmove(cellAt(canvas, event, 1)[0], event, canvas));
      canvas.addEventListener("click", (event) => pick(cellAt(canvas, event, 1)[0], state.unit));
      panel.append(rowOf(label, canvas, note || ""));
    }

    if (mask) {
      strip("mask", 8, (ctx, w, h) => {
        ctx.fillStyle = "#cfe8cf"; ctx.fillRect(0, 0, T * w, h);
        ctx.fillStyle = "#333";
        for (let t = 0; t < T; t++) if (!mask[t]) ctx.fillRect(t * w, 0, Math.max(w, 1), h);
      }, (t) => { readout.textContent = stepWords(t) + (mask[t] ? ": unmasked" : ""); }, "dark: masked");
    }
    if (input && input.png) {
      const canvas = el("canvas", { class: "heat", "data-quantity": "input", "data-panel": p.title,
        style: "width:" + heatWidth + "px;height:" + Math.max(8, Math.min(input.features * 6, 60)) + "px" });
      drawPng(canvas, input.png);
      canvas.addEventListener("mousemove", (event) => {
        const [t, k] = cellAt(canvas, event, input.features);
        showValue("input feature " + k, inputValues ? exact(inputValues, t, k, input.features) : null, stepWords(t));
      });
      panel.append(rowOf("x_t", canvas, range(input.scale)));
    } else if (input && input.tokens) {
      strip("tokens", 16, (ctx, w, h) => {
        ctx.fillStyle = "#f4f1ea"; ctx.fillRect(0, 0, T * w, h);
        if (w >= 14) {
          ctx.fillStyle = "#222"; ctx.font = "10px sans-serif";
          input.tokens.forEach((tok, t) => ctx.fillText(tok.slice(0, Math.floor(w / 6)), t * w + 1, 12));
        }
      }, (t) => { readout.textContent = stepWords(t); }, "hover for the token");
    }
    if (attribution) {
      let top = 0;
      for (const v of attribution) top = Math.max(top, Math.abs(v));
      top = top || 1;
      strip("attr", 36, (ctx, w, h) => {
        ctx.fillStyle = "#fafafa"; ctx.fillRect(0, 0, T * w, h);
        attribution.forEach((v, t) => {
          ctx.fillStyle = v >= 0 ? "#c0392b" : "#2e6db4";
          const bar = Math.abs(v) / top * (h / 2 - 1);
          ctx.fillRect(t * w, v >= 0 ? h / 2 - bar : h / 2, Math.max(w - (w > 3 ? 1 : 0), 1), bar);
        });
      }, (t) => { showValue("attribution", attribution[t], stepWords(t)); }, "\u00b1" + fixed(top, 3));
      panel.append(el("div", { class: "muted", text: "attr: " + data.attribution_what + "; red pushes the output up, blue down." }));
    } else if (p.attribution_note) {
      panel.append(el("div", { class: "muted", text: p.attribution_note }));
    }
    strip("step", 14, (ctx, w, h) => {
      ctx.fillStyle = "#555"; ctx.font = "10px sans-serif";
      const every = Math.max(1, Math.ceil(T / Math.max(1, Math.floor(heatWidth / 60))));
      for (let t = 0; t < T; t += every) {
        ctx.fillRect(t * w, 0, 1, 4);
        ctx.fillText(String(t) + (p.go_backwards ? "\u2190" + inputStep(t) : ""), t * w + 2, 12);
      }
    }, (t) => { readout.textContent = stepWords(t); }, p.go_backwards ? "step\u2190input step" : "step");
    panel.append(readout);

    // The step and unit selectors: that step's arithmetic, the unit's lines over time.
    const stepInput = el("input", { type: "number", class: "step", min: 0, max: T - 1, value: start });
    const unitInput = el("input", { type: "number", class: "unit", min: 0, max: U - 1, value: 0 });
    const arith = el("pre", { class: "arith" });
    const lines = el("canvas", { class: "lines", "data-panel": p.title, style: "width:" + (heatWidth + 58) + "px;height:150px" });
    lines.width = heatWidth + 58; lines.height = 150;
    const legend = el("div", { class: "legend" });
    const palette = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#222222"];
    quantities.forEach((q, k) => legend.append(el("span", {}, el("i", { style: "background:" + palette[k % palette.length] }), q.label)));
    stepInput.addEventListener("input", () => pick(Number(stepInput.value), state.unit));
    unitInput.addEventListener("input", () => pick(state.step, Number(unitInput.value)));
    panel.append(el("div", { class: "controls" }, el("b", { text: "Step" }), stepInput, el("b", { text: "unit" }), unitInput,
      el("span", { class: "muted", text: "the step's arithmetic for the unit: the numbers reflstm explain prints" })));
    panel.append(arith, el("div", { class: "muted", text: "The unit over steps " + start + ".." + (stop - 1) + " (the steps whose exact numbers are shipped):" }), legend, lines);

    function rowsOf(t, u) {
      const at = (a) => (a.shape.length === 1 ? a[u] : a[(t - start) * U + u]);
      const n = {};
      for (const [g, cols] of Object.entries(gates)) {
        n[g] = {};
        for (const [c, a] of Object.entries(cols)) n[g][c] = at(a);
      }
      const s = {};
      for (const [name, a] of Object.entries(states)) s[name] = at(a);
      const unit = String(u).padStart(4), blank = "    ";
      let header, out = [];
      if (p.kind === "LSTM") {
        header = "unit".padStart(4) + "  " + "gate".padEnd(4) + " " + ["x_t W", "h_t-1 U", "b", "z"].map((c) => c.padStart(10)).join(" ") + "   value";
        for (const [g, v] of Object.entries(n)) {
          out.push(unit + "  " + g.padEnd(4) + " " + ["x_t W", "h_t-1 U", "b", "z"].map((c) => fixed(v[c], 5, 10)).join(" ") + "   " + fixed(v.value, 6));
        }
        out.push(blank + "  C_t = f*C_t-1 + i*c~ = " + fixed(n.f.value, 5) + "*" + fixed(s["C_t-1"], 5) + " + " + fixed(n.i.value, 5) + "*" +
          fixed(n["c~"].value, 5) + " = " + fixed(s.C_t, 6));
        out.push(blank + "  h_t = o*g(C_t) = " + fixed(n.o.value, 5) + "*g(" + fixed(s.C_t, 5) + ") = " + fixed(s.h_t, 6));
        out = [header, "-".repeat(header.length), ...out];
      } else if (p.kind === "GRU") {
        header = "unit".padStart(4) + "  " + "gate".padEnd(4) + " " + ["x_t W", "b", "h_t-1 U", "b_prime", "r", "pre"].map((c) => c.padStart(10)).join(" ") + "   value";
        for (const [g, v] of Object.entries(n)) {
          out.push(unit + "  " + g.padEnd(4) + " " + ["x_t W", "b", "h_t-1 U", "b_prime"].map((c) => fixed(v[c], 5, 10)).join(" ") + " " +
            ("r" in v ? fixed(v.r, 5) : "").padStart(10) + " " + fixed(v.pre, 5, 10) + "   " + fixed(v.value, 6));
        }
        out.push(blank + "  h_t = z*h_t-1 + (1-z)*h~ = " + fixed(n.z.value, 5) + "*" + fixed(s["h_t-1"], 5) + " + (1-" + fixed(n.z.value, 5) + ")*" +
          fixed(n["h~"].value, 5) + " = " + fixed(s.h_t, 6));
        out = [p.table_note, header, "-".repeat(header.length), ...out];
      } else {
        header = "unit".padStart(4) + "  " + ["x_t W", "h_t-1 U", "b", "pre"].map((c) => c.padStart(10)).join(" ") + "   h_t = g(pre)";
        const v = n.h;
        out = [header, "-".repeat(header.length), unit + "  " + ["x_t W", "h_t-1 U", "b", "pre"].map((c) => fixed(v[c], 5, 10)).join(" ") + "   " + fixed(v.value, 6)];
      }
      if (mask && !mask[t]) out.push(p.masked_note);
      return out.join("\n");
    }

    function drawLines() {
      const ctx = lines.getContext("2d"), W = lines.width, H = lines.height, left = 40, n = stop - start;
      ctx.clearRect(0, 0, W, H);
      let top = 1;
      for (const q of quantities) for (let t = start; t < stop; t++) top = Math.max(top, Math.abs(exact(q.values, t, state.unit, U)));
      const x = (t) => left + (t - start + 0.5) / n * (W - left - 4), y = (v) => H / 2 - v / top * (H / 2 - 6);
      ctx.fillStyle = "#666"; ctx.font = "10px sans-serif";
      ctx.fillText(fixed(top, 2), 2, 10); ctx.fillText("0", 2, H / 2 + 3); ctx.fillText(fixed(-top, 2), 2, H - 2);
      ctx.fillStyle = "#ddd"; ctx.fillRect(left, H / 2, W - left, 1);
      if (state.step >= start && state.step < stop) { ctx.fillStyle = "#f0c040"; ctx.fillRect(x(state.step) - 1, 0, 2, H); }
      quantities.forEach((q, k) => {
        ctx.strokeStyle = palette[k % palette.length]; ctx.lineWidth = 1.3; ctx.beginPath();
        for (let t = start; t < stop; t++) {
          const v = exact(q.values, t, state.unit, U);
          if (t === start) ctx.moveTo(x(t), y(v)); else ctx.lineTo(x(t), y(v));
        }
        ctx.stroke();
      });
      lines.dataset.unit = state.unit;
    }

    function pick(t, u) {
      t = Math.min(T - 1, Math.max(0, Math.round(t) || 0));
      u = Math.min(U - 1, Math.max(0, Math.round(u) || 0));
      state.step = t; state.unit = u;
      stepInput.value = t; unitInput.value = u;
      arith.textContent = t >= start && t < stop ? rowsOf(t, u)
        : "Exact numbers for step " + t + " are not in this file (shipped: steps " + start + ".." + (stop - 1) + "; see exact_steps).";
      arith.dataset.step = t; arith.dataset.unit = u;
      drawLines();
    }

    // Most active units over a span of steps (LSTMVis's selection): ranked by mean |h_t| or by
    // how many steps |h_t| exceeds a threshold.
    const h = quantities[quantities.length - 1].values;
    const from = el("input", { type: "number", class: "from", min: start, max: stop - 1, value: start });
    const to = el("input", { type: "number", class: "to", min: start, max: stop - 1, value: stop - 1 });
    const by = el("select", { class: "rank-by" }, el("option", { value: "mean", text: "mean |h_t| over the span" }),
      el("option", { value: "count", text: "steps with |h_t| > threshold" }));
    const threshold = el("input", { type: "number", class: "threshold", step: "0.05", value: "0.5" });
    const ranked = el("div", { class: "ranked" });
    function rank() {
      const a = Math.max(start, Math.min(Number(from.value), Number(to.value))), b = Math.min(stop - 1, Math.max(Number(from.value), Number(to.value)));
      const theta = Number(threshold.value), scores = [];
      for (let u = 0; u < U; u++) {
        let s = 0;
        for (let t = a; t <= b; t++) {
          const v = Math.abs(h[(t - start) * U + u]);
          s += by.value === "mean" ? v : v > theta ? 1 : 0;
        }
        scores.push([by.value === "mean" ? s / (b - a + 1) : s, u]);
      }
      scores.sort((p1, p2) => p2[0] - p1[0] || p1[1] - p2[1]);
      ranked.textContent = "";
      ranked.append(el("span", { class: "muted", text: "Top units, steps " + a + ".." + b + " by " + by.selectedOptions[0].text + ": " }));
      for (const [s, u] of scores.slice(0, 12)) {
        ranked.append(el("button", { type: "button", "data-unit": u, text: "unit " + u + " (" + (by.value === "mean" ? fixed(s, 3) : s) + ")",
          onclick: () => pick(state.step, u) }));
      }
    }
    for (const input_ of [from, to, by, threshold]) input_.addEventListener("change", rank);
    panel.append(el("div", { class: "controls" }, el("b", { text: "Most active units" }), "steps", from, "to", to, "by", by, "threshold", threshold), ranked);
    rank();

    if (halfLife) {
      const gate = p.kind === "GRU" ? "update-gate (z)" : "forget-gate (f)";
      const canvas = el("canvas", { class: "strip", "data-quantity": "half-life", "data-panel": p.title,
        style: "width:" + heatWidth + "px;height:40px" });
      canvas.width = heatWidth; canvas.height = 40;
      let top = 1, mean = 0;
      for (const v of halfLife) { top = Math.max(top, v); mean += v / U; }
      const ctx = canvas.getContext("2d"), w = canvas.width / U;
      ctx.fillStyle = "#fafafa"; ctx.fillRect(0, 0, canvas.width, 40); ctx.fillStyle = "#7a5195";
      halfLife.forEach((v, u) => ctx.fillRect(u * w, 40 - v / top * 38, Math.max(w - (w > 3 ? 1 : 0), 1), v / top * 38));
      canvas.addEventListener("mousemove", (event) => {
        const box = canvas.getBoundingClientRect(), u = Math.min(U - 1, Math.floor((event.clientX - box.left) / box.width * U));
        showValue(gate + " half-life", halfLife[u], "unit " + u + " (steps)");
      });
      panel.append(el("div", { class: "muted", text: gate + " half-life per unit: steps back until half of the state no longer survives to the last step; mean " + fixed(mean, 1) + ", longest " + fixed(top, 1) + " steps." }),
        rowOf("t\u00bd", canvas, "units \u2192"));
    } else if (p.half_life_note) {
      panel.append(el("div", { class: "muted", text: "No half-life: " + p.half_life_note + "." }));
    }
    pick(start, 0);
    return panel;
  }
}
