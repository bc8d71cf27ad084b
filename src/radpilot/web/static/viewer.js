"use strict";
// The image viewer: a stack of frames drawn on one canvas, windowed in the browser.
//
// Frames arrive from /api/viewer/instances/{id}/frames/{n} as float32 values after the
// Modality LUT (or PNG for colour); the window (PS3.3 C.11.2.1.2, linear) and the
// MONOCHROME1 inversion are applied here, so dragging the window is instant. Zoom and pan
// are a canvas transform; overlays (heatmap, boxes, contours) are drawn in the image's own
// pixel coordinates, so they stay registered at every zoom.

class Viewer {
  static PRESETS = {
    lung: [-600, 1500],
    bone: [400, 1800],
    soft: [40, 400],
    brain: [40, 80],
  };

  constructor(canvas, { onChange } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onChange = onChange || (() => {});
    this.stack = []; // {instanceId, frame, sopInstanceUid}
    this.index = 0;
    this.cache = new Map(); // "id:frame" -> Promise<frame>
    this.window = null; // [center, width] chosen by the user; null: the image's own
    this.zoom = 1;
    this.pan = [0, 0];
    this.overlays = { heatmaps: [], boxes: [], masks: [] };
    this.show = { heatmap: true, boxes: true, contours: true };
    this.opacity = 0.45;
    this.current = null; // the frame on screen
    this.base = document.createElement("canvas"); // the windowed frame at native size
    this._bindInput();
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  setStack(stack, index = 0) {
    this.stack = stack;
    this.window = null;
    this.resetView();
    return this.go(index);
  }

  frameKey(entry) { return `${entry.instanceId}:${entry.frame}`; }

  load(entry) {
    const key = this.frameKey(entry);
    if (!this.cache.has(key)) {
      const promise = this._fetch(entry).catch((error) => { this.cache.delete(key); throw error; });
      this.cache.set(key, promise);
      if (this.cache.size > 400) this.cache.delete(this.cache.keys().next().value);
    }
    return this.cache.get(key);
  }

  async _fetch(entry) {
    const response = await radpilot.api(`/api/viewer/instances/${entry.instanceId}/frames/${entry.frame}`);
    if ((response.headers.get("Content-Type") || "").startsWith("image/")) {
      const bitmap = await createImageBitmap(await response.blob());
      return { colour: true, bitmap, rows: bitmap.height, columns: bitmap.width };
    }
    const values = new Float32Array(await response.arrayBuffer());
    const [center, width] = response.headers.get("X-Window").split(",").map(Number);
    return {
      colour: false,
      values,
      rows: Number(response.headers.get("X-Rows")),
      columns: Number(response.headers.get("X-Columns")),
      window: [center, width],
      monochrome1: response.headers.get("X-Monochrome1") === "1",
    };
  }

  async go(index) {
    if (!this.stack.length) return;
    this.index = Math.max(0, Math.min(this.stack.length - 1, index));
    const wanted = this.index;
    const frame = await this.load(this.stack[wanted]);
    if (wanted !== this.index) return; // the reader scrolled on meanwhile
    this.current = frame;
    this.renderBase();
    this.draw();
    for (let step = 1; step <= 3; step += 1) {
      const next = this.stack[wanted + step];
      if (next) this.load(next).catch(() => {});
    }
  }

  scroll(step) { return this.go(this.index + step); }

  activeWindow() {
    return this.window || (this.current && this.current.window) || [127.5, 256];
  }

  setPreset(name) {
    this.window = name === "default" ? null : [...Viewer.PRESETS[name]];
    this.renderBase();
    this.draw();
  }

  renderBase() {
    const f = this.current;
    if (!f) return;
    this.base.width = f.columns;
    this.base.height = f.rows;
    const ctx = this.base.getContext("2d");
    if (f.colour) { ctx.drawImage(f.bitmap, 0, 0); return; }
    const [center, width] = this.activeWindow();
    const low = center - 0.5 - (width - 1) / 2;
    const scale = 255 / Math.max(width - 1, 1);
    const image = ctx.createImageData(f.columns, f.rows);
    const out = image.data;
    const values = f.values;
    for (let i = 0, j = 0; i < values.length; i += 1, j += 4) {
      let v = (values[i] - low) * scale;
      v = v < 0 ? 0 : v > 255 ? 255 : v;
      if (f.monochrome1) v = 255 - v;
      out[j] = out[j + 1] = out[j + 2] = v;
      out[j + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
  }

  resetView() { this.zoom = 1; this.pan = [0, 0]; this.draw(); }

  zoomBy(factor) { this.zoom = Math.max(0.1, Math.min(20, this.zoom * factor)); this.draw(); }

  transform() {
    const f = this.current;
    const w = this.canvas.width, h = this.canvas.height;
    const fit = Math.min(w / f.columns, h / f.rows);
    const s = fit * this.zoom;
    return { s, x: (w - f.columns * s) / 2 + this.pan[0], y: (h - f.rows * s) / 2 + this.pan[1] };
  }

  draw() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(this.canvas.clientWidth * dpr), h = Math.round(this.canvas.clientHeight * dpr);
    if (this.canvas.width !== w || this.canvas.height !== h) { this.canvas.width = w; this.canvas.height = h; }
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, w, h);
    if (!this.current) return;
    const t = this.transform();
    ctx.setTransform(t.s, 0, 0, t.s, t.x, t.y);
    ctx.imageSmoothingEnabled = t.s < 1;
    ctx.drawImage(this.base, 0, 0);
    this._drawOverlays(ctx, t.s);
    this.onChange(this.state());
  }

  _here(item) {
    const entry = this.stack[this.index];
    return entry && item.sopInstanceUid === entry.sopInstanceUid && (item.frame || 1) === entry.frame;
  }

  _drawOverlays(ctx, scale) {
    const f = this.current;
    if (this.show.heatmap) {
      for (const heat of this.overlays.heatmaps.filter((h) => this._here(h))) {
        ctx.save();
        ctx.globalAlpha = this.opacity;
        ctx.imageSmoothingEnabled = true;
        ctx.drawImage(heat.canvas, 0, 0, f.columns, f.rows);
        ctx.restore();
      }
    }
    if (this.show.contours) {
      for (const mask of this.overlays.masks.filter((m) => this._here(m))) {
        ctx.drawImage(mask.canvas, 0, 0, f.columns, f.rows);
      }
    }
    if (this.show.boxes) {
      ctx.save();
      ctx.lineWidth = 2 / scale;
      ctx.strokeStyle = "#ffd400";
      ctx.fillStyle = "#ffd400";
      ctx.font = `${14 / scale}px sans-serif`;
      for (const box of this.overlays.boxes.filter((b) => this._here(b))) {
        ctx.strokeRect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
        ctx.fillText(`${box.label} ${box.score.toFixed(2)}`, box.x0, box.y0 - 4 / scale);
      }
      ctx.restore();
    }
  }

  state() {
    const [center, width] = this.activeWindow();
    return {
      index: this.index,
      count: this.stack.length,
      center,
      width,
      zoom: this.zoom,
      colour: Boolean(this.current && this.current.colour),
      overlaysHere: {
        heatmap: this.overlays.heatmaps.some((h) => this._here(h)),
        boxes: this.overlays.boxes.filter((b) => this._here(b)).length,
        contours: this.overlays.masks.filter((m) => this._here(m)).length,
      },
    };
  }

  // A heatmap (grey PNG, 0-1 scaled to 0-255) coloured blue→red, transparent where cold.
  static async colourHeatmap(url) {
    const response = await radpilot.api(url);
    const bitmap = await createImageBitmap(await response.blob());
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const d = image.data;
    for (let i = 0; i < d.length; i += 4) {
      const v = d[i] / 255;
      d[i] = Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 3))));
      d[i + 1] = Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 2))));
      d[i + 2] = Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 1))));
      d[i + 3] = Math.round(255 * Math.min(1, Math.max(0, (v - 0.15) / 0.55))); // cold: clear
    }
    ctx.putImageData(image, 0, 0);
    return canvas;
  }

  // A mask (PNG data URL) as its outline: mask pixels with a 4-neighbour outside it.
  static async outline(dataUrl, colour = [0, 230, 255]) {
    const img = new Image();
    img.src = dataUrl;
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const image = ctx.getImageData(0, 0, img.width, img.height);
    const d = image.data, w = img.width, h = img.height;
    const inside = (x, y) => x >= 0 && y >= 0 && x < w && y < h && d[(y * w + x) * 4] > 127;
    const edge = new Uint8Array(w * h);
    for (let y = 0; y < h; y += 1) for (let x = 0; x < w; x += 1) {
      if (inside(x, y) && !(inside(x - 1, y) && inside(x + 1, y) && inside(x, y - 1) && inside(x, y + 1))) edge[y * w + x] = 1;
    }
    for (let i = 0; i < w * h; i += 1) {
      d[i * 4] = colour[0]; d[i * 4 + 1] = colour[1]; d[i * 4 + 2] = colour[2];
      d[i * 4 + 3] = edge[i] ? 255 : 0;
    }
    ctx.putImageData(image, 0, 0);
    return canvas;
  }

  _bindInput() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener("pointerdown", (e) => {
      c.setPointerCapture(e.pointerId);
      c.focus();
      const mode = e.shiftKey || e.button === 1 ? "pan" : e.button === 2 || e.ctrlKey ? "zoom" : "window";
      drag = { mode, x: e.clientX, y: e.clientY, window: [...this.activeWindow()], pan: [...this.pan], zoom: this.zoom };
    });
    c.addEventListener("pointermove", (e) => {
      if (!drag || !this.current) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (drag.mode === "window" && !this.current.colour) {
        const step = Math.max(drag.window[1], 1) / 256;
        this.window = [drag.window[0] + dy * step, Math.max(1, drag.window[1] + dx * step * 2)];
        this.renderBase();
      } else if (drag.mode === "pan") {
        const dpr = window.devicePixelRatio || 1;
        this.pan = [drag.pan[0] + dx * dpr, drag.pan[1] + dy * dpr];
      } else if (drag.mode === "zoom") {
        this.zoom = Math.max(0.1, Math.min(20, drag.zoom * Math.exp(-dy / 200)));
      }
      this.draw();
    });
    const end = () => { drag = null; };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      if (e.ctrlKey) this.zoomBy(e.deltaY < 0 ? 1.15 : 1 / 1.15);
      else this.scroll(e.deltaY > 0 ? 1 : -1);
    }, { passive: false });
  }
}

window.Viewer = Viewer;
