"use strict";
// The study page: series list, viewer with AI overlays, AI results, and the decision panel.
// A decision is POSTed to /api/studies/{id}/feedback, the same route and audit entry as
// any API client; opened_at is when this page loaded, for the reading-time statistics.
(() => {
  const { el, json } = radpilot;
  const root = document.getElementById("study");
  const studyId = root.dataset.studyId;
  const canDecide = root.dataset.canDecide === "true";
  const openedAt = new Date().toISOString();
  const $ = (id) => document.getElementById(id);
  let series = [];
  let study = null;
  let decision = null;

  const viewer = new Viewer($("image-canvas"), { onChange: status });

  function status(s) {
    const slider = $("image-slider");
    slider.max = String(Math.max(1, s.count));
    slider.value = String(s.index + 1);
    const here = [];
    if (s.overlaysHere.heatmap) here.push("heatmap");
    if (s.overlaysHere.boxes) here.push(`${s.overlaysHere.boxes} box(es)`);
    if (s.overlaysHere.contours) here.push(`${s.overlaysHere.contours} contour(s)`);
    $("overlay-tl").textContent = `Image ${s.index + 1}/${s.count}` + (here.length ? `\nAI: ${here.join(", ")}` : "");
    $("overlay-br").textContent = s.colour ? `Zoom ${s.zoom.toFixed(2)}`
      : `W ${Math.round(s.width)} L ${Math.round(s.center)}\nZoom ${s.zoom.toFixed(2)}`;
    $("image-canvas").dataset.index = String(s.index);
    $("image-canvas").dataset.window = `${s.center.toFixed(1)},${s.width.toFixed(1)}`;
    $("image-canvas").dataset.heatmapShown = String(s.overlaysHere.heatmap && viewer.show.heatmap);
  }

  function stackOf(s) {
    const stack = [];
    for (const image of s.images) {
      for (let f = 1; f <= image.frames; f += 1) {
        stack.push({ instanceId: image.id, frame: f, sopInstanceUid: image.sop_instance_uid });
      }
    }
    return stack;
  }

  function openSeries(index, sop = null, frame = 1) {
    const s = series[index];
    document.querySelectorAll("#series-list li").forEach((li, i) => li.classList.toggle("active", i === index));
    const stack = stackOf(s);
    const start = sop ? Math.max(0, stack.findIndex((e) => e.sopInstanceUid === sop && e.frame === frame)) : 0;
    viewer.setStack(stack, start);
  }

  function renderHeader() {
    const who = study.patient_name || study.patient_id;
    $("study-title").textContent = study.study_description || "Study";
    $("study-meta").textContent = [who, [study.age, study.sex].filter(Boolean).join(" "),
      study.modalities.join(", "), study.body_parts.join(", ")].filter(Boolean).join(" · ");
  }

  function renderSeries() {
    $("series-list").replaceChildren(...series.map((s, i) => el("li", { onclick: () => openSeries(i), dataset: { seriesId: String(s.id) } },
      `${s.series_number ?? "–"} ${s.modality || ""} ${s.series_description || ""}`.trim(),
      el("span", { class: "meta" }, ` (${s.images.length})`))));
  }

  function renderResults() {
    const box = $("results");
    if (!study.results.length) {
      box.replaceChildren(el("p", { class: "notice" }, `No AI result (AI status: ${study.ai_status}).`));
      return;
    }
    box.replaceChildren(...study.results.map((r) => {
      const findings = (r.details.findings || []).map((f) => el("tr", {},
        el("td", {}, f.label),
        el("td", { class: "score" }, f.score.toFixed(3)),
        el("td", {}, f.threshold === null || f.threshold === undefined ? "" : `≥ ${f.threshold.toFixed(3)}${f.operating_point ? ` (${f.operating_point})` : ""}`),
        el("td", {}, f.critical ? el("span", { class: "badge critical" }, "CRITICAL")
          : f.positive ? el("span", { class: "badge positive" }, "positive") : el("span", { class: "badge negative" }, "negative"))));
      const measures = (r.details.measurements || []).map((m) => el("li", {}, `${m.name}: ${m.value.toFixed(2)} ${m.unit}`));
      return el("div", { class: "result", dataset: { resultId: String(r.id) } },
        el("div", { class: "model" }, `${r.model_name} ${r.model_version}`),
        el("table", {}, el("tbody", {}, findings)),
        measures.length ? el("ul", {}, measures) : null,
        el("div", { class: "meta" }, `stored ${radpilot.when(r.stored_at)}`));
    }));
  }

  function renderDecisions() {
    const items = study.feedback.map((f) => el("li", { dataset: { decision: f.decision } },
      `${f.decision}${f.reason_code ? ` (${f.reason_code})` : ""} · ${f.reader} · ${radpilot.when(f.decided_at)}`,
      f.corrected_label ? ` → ${f.corrected_label}` : "",
      f.free_text ? el("div", { class: "meta" }, f.free_text) : null));
    $("decisions").replaceChildren(...(items.length ? items : [el("li", { class: "notice" }, "None yet.")]));
  }

  async function loadOverlays() {
    const heatmaps = [], boxes = [], masks = [];
    for (const r of study.results) {
      const kinds = new Set(r.objects.map((o) => o.kind));
      const key = r.details.key_image;
      if (kinds.has("heatmap") && key) {
        try {
          const canvas = await Viewer.colourHeatmap(`/api/viewer/results/${r.id}/heatmap`);
          heatmaps.push({ canvas, sopInstanceUid: key.sop_instance_uid, frame: key.frame || 1 });
        } catch (error) { console.warn("heatmap", error); }
      }
      for (const b of r.details.boxes || []) {
        boxes.push({ ...b, sopInstanceUid: b.image.sop_instance_uid, frame: b.image.frame || 1 });
      }
      if (kinds.has("seg")) {
        try {
          for (const m of await json(`/api/viewer/results/${r.id}/masks`)) {
            masks.push({ canvas: await Viewer.outline(m.png), sopInstanceUid: m.sop_instance_uid, frame: m.frame, label: m.label });
          }
        } catch (error) { console.warn("masks", error); }
      }
    }
    viewer.overlays = { heatmaps, boxes, masks };
    viewer.draw();
  }

  function startAt() {
    // The headline result's key image, else the first series.
    for (const r of study.results) {
      const key = r.details.key_image;
      if (!key) continue;
      const index = series.findIndex((s) => s.images.some((i) => i.sop_instance_uid === key.sop_instance_uid));
      if (index >= 0) return [index, key.sop_instance_uid, key.frame || 1];
    }
    return [0, null, 1];
  }

  // Decisions ---------------------------------------------------------------------------
  function choose(kind) {
    if (!canDecide) return;
    decision = kind;
    document.querySelectorAll(".decision-buttons button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.decision === kind)));
    document.querySelectorAll("select.reason").forEach((s) => { s.hidden = s.dataset.for !== kind; });
    document.querySelectorAll(".for-modify").forEach((n) => { n.hidden = kind !== "modify"; });
    showMeasurements(kind === "modify");
    $("decision-submit").disabled = false;
  }

  function chosenResult() {
    const id = Number($("decision-result").value);
    return study.results.find((r) => r.id === id) || null;
  }

  // Modify may correct one of the result's measurements (name and unit as the model gave).
  function showMeasurements(modifying) {
    const result = chosenResult();
    const measures = (result && result.details.measurements) || [];
    $("measurement-fields").hidden = !modifying || measures.length === 0;
    $("corrected-measurement-name").replaceChildren(...measures.map((m, i) => el("option", { value: String(i) }, m.name)));
    const update = () => {
      const m = measures[Number($("corrected-measurement-name").value)];
      $("corrected-measurement-unit").textContent = m ? m.unit : "";
      if (m && !$("corrected-measurement-value").value) $("corrected-measurement-value").value = String(m.value);
    };
    $("corrected-measurement-name").onchange = () => { $("corrected-measurement-value").value = ""; update(); };
    update();
  }

  function correctedMeasurement() {
    if ($("measurement-fields").hidden) return undefined;
    const result = chosenResult();
    const m = result && (result.details.measurements || [])[Number($("corrected-measurement-name").value)];
    const value = Number($("corrected-measurement-value").value);
    if (!m || $("corrected-measurement-value").value === "" || !Number.isFinite(value) || value === m.value) return undefined;
    return { name: m.name, value, unit: m.unit };
  }

  async function submit(event) {
    if (event) event.preventDefault();
    if (!decision) return;
    const body = {
      decision,
      result_id: Number($("decision-result").value),
      reason_code: $(`reason-${decision}`).value,
      opened_at: openedAt,
    };
    const text = $("free-text").value.trim();
    if (text) body.free_text = text;
    if (decision === "modify") {
      body.corrected_label = $("corrected-label").value.trim() || undefined;
      body.corrected_measurement = correctedMeasurement();
    }
    $("decision-submit").disabled = true;
    try {
      await radpilot.api(`/api/studies/${studyId}/feedback`, { method: "POST", body });
      $("decision-status").textContent = `Recorded: ${decision} (${body.reason_code}).`;
      $("decision-status").className = "";
      study = await json(`/api/studies/${studyId}`);
      renderDecisions();
    } catch (error) {
      $("decision-status").textContent = `Not recorded: ${error.message}`;
      $("decision-status").className = "error";
      $("decision-submit").disabled = false;
    }
  }

  function bindDecisions() {
    if (!canDecide) return;
    $("decision-result").replaceChildren(...study.results.map((r) => el("option", { value: String(r.id) },
      `${r.model_name} ${r.model_version}: ${r.finding || ""} ${r.score === null ? "" : r.score.toFixed(2)}`)));
    $("decision-result").addEventListener("change", () => showMeasurements(decision === "modify"));
    const usable = study.results.length > 0;
    document.querySelectorAll(".decision-buttons button").forEach((b) => {
      b.disabled = !usable;
      b.addEventListener("click", () => choose(b.dataset.decision));
    });
    $("decision-form").addEventListener("submit", submit);
  }

  // Tools and keys ------------------------------------------------------------------------
  function bindTools() {
    $("preset").addEventListener("change", (e) => viewer.setPreset(e.target.value));
    $("zoom-in").addEventListener("click", () => viewer.zoomBy(1.25));
    $("zoom-out").addEventListener("click", () => viewer.zoomBy(0.8));
    $("zoom-reset").addEventListener("click", () => viewer.resetView());
    $("image-slider").addEventListener("input", (e) => viewer.go(Number(e.target.value) - 1));
    const toggles = { "show-heatmap": "heatmap", "show-boxes": "boxes", "show-contours": "contours" };
    for (const [id, name] of Object.entries(toggles)) {
      $(id).addEventListener("change", (e) => { viewer.show[name] = e.target.checked; viewer.draw(); });
    }
    $("heatmap-opacity").addEventListener("input", (e) => { viewer.opacity = Number(e.target.value) / 100; viewer.draw(); });
    const presets = ["default", "lung", "bone", "soft", "brain"];
    const flip = (id) => { const box = $(id); box.checked = !box.checked; box.dispatchEvent(new Event("change")); };
    document.addEventListener("keydown", (e) => {
      if (radpilot.typing(e)) return;
      const k = e.key;
      if (k === "ArrowDown" || k === "PageDown") { viewer.scroll(1); e.preventDefault(); }
      else if (k === "ArrowUp" || k === "PageUp") { viewer.scroll(-1); e.preventDefault(); }
      else if (k >= "1" && k <= "5") { $("preset").value = presets[Number(k) - 1]; viewer.setPreset(presets[Number(k) - 1]); }
      else if (k === "+" || k === "=") viewer.zoomBy(1.25);
      else if (k === "-") viewer.zoomBy(0.8);
      else if (k === "0") viewer.resetView();
      else if (k === "h" || k === "H") flip("show-heatmap");
      else if (k === "b" || k === "B") flip("show-boxes");
      else if (k === "c" || k === "C") flip("show-contours");
      else if (canDecide && (k === "a" || k === "A")) choose("accept");
      else if (canDecide && (k === "m" || k === "M")) { choose("modify"); $("corrected-label").focus(); e.preventDefault(); }
      else if (canDecide && (k === "r" || k === "R")) choose("reject");
      else if (canDecide && k === "Enter" && decision) submit(e);
    });
  }

  function bindIncident() {
    $("incident-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { kind: $("incident-kind").value, description: $("incident-text").value.trim() };
      if (study.results.length) body.result_id = study.results[0].id;
      try {
        const made = await json(`/api/studies/${studyId}/incidents`, { method: "POST", body });
        $("incident-status").textContent = `Reported as incident ${made.id}; governance reviews it.`;
        $("incident-status").className = "";
        $("incident-text").value = "";
      } catch (error) {
        $("incident-status").textContent = `Not reported: ${error.message}`;
        $("incident-status").className = "error";
      }
    });
  }

  async function start() {
    try {
      [study, series] = await Promise.all([json(`/api/studies/${studyId}`), json(`/api/viewer/studies/${studyId}/images`)]);
    } catch (error) {
      $("results").replaceChildren(el("p", { class: "error" }, `Could not load the study: ${error.message}`));
      return;
    }
    renderHeader();
    renderSeries();
    renderResults();
    renderDecisions();
    bindTools();
    bindDecisions();
    bindIncident();
    if (series.length) {
      const [index, sop, frame] = startAt();
      openSeries(index, sop, frame);
    }
    await loadOverlays();
    root.dataset.ready = "true";
  }

  start();
})();
