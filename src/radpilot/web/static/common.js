"use strict";
// Shared by every page: API calls with the CSRF token, safe DOM building, time formats.
// No page ever writes server data with innerHTML: text goes in as text.

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

const radpilot = {
  csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },

  async api(path, options = {}) {
    const opts = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
    if (opts.body !== undefined && typeof opts.body !== "string") {
      opts.body = JSON.stringify(opts.body);
      opts.headers["Content-Type"] = "application/json";
    }
    if (opts.method && opts.method !== "GET") opts.headers["X-CSRF-Token"] = radpilot.csrf();
    const response = await fetch(path, opts);
    if (response.status === 401) {
      location.assign("/signin?expired=1&next=" + encodeURIComponent(location.pathname));
      throw new ApiError(401, "signed out");
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = typeof body.detail === "string" ? body.detail : body.detail.map((d) => d.msg).join("; ");
      } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, detail);
    }
    return response;
  },

  async json(path, options) { return (await radpilot.api(path, options)).json(); },

  el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  },

  waited(seconds) {
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
    return `${Math.round(seconds / 86400)} d`;
  },

  when(iso) { return iso ? new Date(iso).toLocaleString() : ""; },

  typing(event) {
    const t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  },
};
