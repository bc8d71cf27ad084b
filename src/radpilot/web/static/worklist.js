"use strict";
// The worklist: fetched from /api/worklist, refreshed on each server-sent "worklist" event.
// A refresh keeps the reader's place: filters, the selected row and the scroll position.
(() => {
  const { el, json, waited } = radpilot;
  const table = document.getElementById("worklist");
  const body = document.getElementById("worklist-rows");
  const live = document.getElementById("live-status");
  const count = document.getElementById("worklist-count");
  const showNames = table.dataset.patientNames === "true";
  const filters = {
    q: document.getElementById("filter-q"),
    modality: document.getElementById("filter-modality"),
    ai_status: document.getElementById("filter-status"),
    decided: document.getElementById("filter-decided"),
  };
  const STORE = "radpilot.worklist.filters"; // session storage, never the URL
  let selected = null; // study_id
  let known = null; // study ids of the last render (null before the first)
  let loading = null;
  let again = false;

  const saved = JSON.parse(sessionStorage.getItem(STORE) || "{}");
  for (const [name, input] of Object.entries(filters)) if (name in saved) input.value = saved[name];

  function query() {
    const params = new URLSearchParams({ limit: "200" });
    for (const [name, input] of Object.entries(filters)) if (input.value) params.set(name, input.value);
    return params;
  }

  function headline(item) {
    const positive = item.results.find((r) => r.above_operating_point);
    return positive || item.results[0] || null;
  }

  function badge(item) {
    if (item.priority >= 3) return el("span", { class: "badge critical" }, "CRITICAL");
    if (item.priority === 2) return el("span", { class: "badge positive" }, "Positive");
    if (item.priority === 1) return el("span", { class: "badge negative" }, "Negative");
    if (item.ai_status === "failed") return el("span", { class: "badge failed" }, "AI failed");
    return el("span", { class: "badge pending" }, "Waiting");
  }

  function row(item) {
    const result = headline(item);
    const finding = result
      ? `${result.finding || ""}${result.above_operating_point ? "" : " (below threshold)"}`
      : "";
    const decision = item.decision ? `${item.decision.decision} · ${item.decision.reader}` : "";
    const tr = el(
      "tr",
      {
        dataset: { studyId: String(item.study_id), priority: String(item.priority) },
        class: item.study_id === selected ? "selected" : null,
        onclick: () => open(item.study_id),
      },
      el("td", {}, badge(item)),
      el("td", { class: "score" }, item.max_score === null ? "" : item.max_score.toFixed(2)),
      el("td", {}, showNames && item.patient_name ? item.patient_name : item.patient_id),
      el("td", {}, [item.age, item.sex].filter(Boolean).join(" / ")),
      el("td", {}, item.modalities.join(", ")),
      el("td", {}, item.body_parts.join(", ")),
      el("td", {}, item.study_description || ""),
      el("td", { title: radpilot.when(item.received_at) }, waited(item.waiting_seconds) + " ago"),
      el("td", { class: "ai-status" }, item.ai_status),
      el("td", { class: "finding" }, finding),
      el("td", { class: "decision" }, decision),
    );
    if (known !== null && !known.has(item.study_id)) tr.classList.add("new");
    return tr;
  }

  async function refresh() {
    if (loading) { again = true; return loading; }
    loading = (async () => {
      try {
        const response = await radpilot.api("/api/worklist?" + query().toString());
        const items = await response.json();
        const scroll = window.scrollY;
        body.replaceChildren(...(items.length ? items.map(row)
          : [el("tr", {}, el("td", { colspan: "11" }, "No studies match."))]));
        known = new Set(items.map((i) => i.study_id));
        if (selected !== null && !known.has(selected)) selected = null;
        count.textContent = `${response.headers.get("X-Total-Count") || items.length} studies`;
        window.scrollTo(0, scroll);
      } catch (error) {
        count.textContent = `Could not load the worklist: ${error.message}`;
      } finally {
        loading = null;
        if (again) { again = false; refresh(); }
      }
    })();
    return loading;
  }

  function open(studyId) { location.assign(`/studies/${studyId}`); }

  function move(step) {
    const rows = [...body.querySelectorAll("tr[data-study-id]")];
    if (!rows.length) return;
    let index = rows.findIndex((r) => Number(r.dataset.studyId) === selected);
    index = Math.min(rows.length - 1, Math.max(0, index + step));
    rows.forEach((r) => r.classList.remove("selected"));
    rows[index].classList.add("selected");
    rows[index].scrollIntoView({ block: "nearest" });
    selected = Number(rows[index].dataset.studyId);
  }

  for (const input of Object.values(filters)) {
    input.addEventListener(input.tagName === "SELECT" ? "change" : "input", () => {
      const values = Object.fromEntries(Object.entries(filters).map(([k, v]) => [k, v.value]));
      sessionStorage.setItem(STORE, JSON.stringify(values));
      known = null; // a new filter is not "new studies"
      refresh();
    });
  }

  document.addEventListener("keydown", (event) => {
    if (radpilot.typing(event)) return;
    if (event.key === "j" || event.key === "ArrowDown") { move(1); event.preventDefault(); }
    else if (event.key === "k" || event.key === "ArrowUp") { move(-1); event.preventDefault(); }
    else if (event.key === "Enter" && selected !== null) open(selected);
    else if (event.key === "/") { filters.q.focus(); event.preventDefault(); }
  });

  const events = new EventSource("/api/events");
  events.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); });
  events.addEventListener("error", () => { live.textContent = "reconnecting…"; live.classList.remove("on"); });
  events.addEventListener("worklist", () => refresh());
  refresh();
})();
