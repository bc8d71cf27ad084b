"use strict";
// Governance: alerts (acknowledge, resolve), transition requests (approve, reject),
// incidents (classify, suspend the model, close) and the audit trail with its check.
(() => {
  const { el, json } = radpilot;
  const status = document.getElementById("gov-status");
  const say = (text, error = false) => { status.textContent = text; status.className = error ? "error" : ""; };
  const post = async (path, body) => {
    try {
      await radpilot.api(path, { method: "POST", body: body || {} });
      say("Done.");
      await refresh();
    } catch (error) { say(error.message, true); }
  };
  const button = (label, onclick) => el("button", { type: "button", onclick }, label);

  async function alerts() {
    const rows = await json("/api/alerts");
    document.querySelector("#alerts tbody").replaceChildren(...rows.map((a) => el("tr", { dataset: { alertId: String(a.id), status: a.status } },
      el("td", {}, String(a.id)), el("td", {}, a.model), el("td", {}, a.cause), el("td", {}, a.message),
      el("td", {}, a.status + (a.acknowledged_by ? ` (${a.acknowledged_by})` : "")),
      el("td", {}, radpilot.when(a.opened_at)), el("td", {}, String(a.seen)),
      el("td", {}, a.status === "open" ? button("Acknowledge", () => post(`/api/alerts/${a.id}/acknowledge`)) : null,
        a.status !== "resolved" ? button("Resolve", () => post(`/api/alerts/${a.id}/resolve`)) : null))));
  }

  async function transitions() {
    const rows = await json("/api/governance/transitions");
    document.querySelector("#transitions tbody").replaceChildren(...rows.map((t) => el("tr", { dataset: { transitionId: String(t.id) } },
      el("td", {}, String(t.id)), el("td", {}, t.model), el("td", {}, `${t.from_state} → ${t.to_state}`),
      el("td", {}, t.reason), el("td", {}, t.requested_by), el("td", {}, t.status),
      el("td", {}, `${t.approvals.filter((a) => a.approved).map((a) => a.approver).join(", ") || "none"} of ${t.approvals_needed}`),
      el("td", {}, t.status === "pending" ? [
        button("Approve", () => post(`/api/governance/transitions/${t.id}/approve`)),
        button("Reject", () => post(`/api/governance/transitions/${t.id}/reject`))] : null))));
  }

  async function incidents() {
    const rows = await json("/api/governance/incidents");
    document.querySelector("#incidents tbody").replaceChildren(...rows.map((i) => {
      const severity = el("select", { "aria-label": "Severity" }, ...["low", "moderate", "high", "critical"].map((s) => el("option", { selected: s === i.severity }, s)));
      return el("tr", { dataset: { incidentId: String(i.id) } },
        el("td", {}, String(i.id)), el("td", {}, el("a", { href: `/studies/${i.study_pk}` }, `study ${i.study_pk}`)),
        el("td", {}, i.model || ""), el("td", {}, i.kind), el("td", {}, i.reported_by),
        el("td", {}, i.severity || "—"), el("td", {}, i.status),
        el("td", {}, i.actions.map((a) => a.action).join(", ")),
        el("td", {}, i.status !== "closed" ? [severity,
          button("Classify", () => post(`/api/governance/incidents/${i.id}/classify`, { severity: severity.value })),
          i.model ? button("Suspend model", () => post(`/api/governance/incidents/${i.id}/actions`, { action: "suspend_model", note: "from the governance page" })) : null,
          i.status === "reviewed" ? button("Close", () => post(`/api/governance/incidents/${i.id}/close`)) : null] : null));
    }));
  }

  let oldest = null;
  async function audit(more = false) {
    const query = more && oldest ? `?before=${oldest}` : "";
    const entries = await json(`/api/governance/audit${query}`);
    const body = document.querySelector("#audit tbody");
    const rows = entries.map((e) => el("tr", {},
      el("td", {}, String(e.seq)), el("td", {}, radpilot.when(e.at)), el("td", {}, e.kind),
      el("td", {}, e.actor), el("td", {}, e.subject),
      el("td", { class: "meta" }, JSON.stringify(e.payload))));
    if (more) body.append(...rows); else body.replaceChildren(...rows);
    if (entries.length) oldest = entries[entries.length - 1].seq;
    document.getElementById("older").disabled = entries.length < 100;
  }

  async function verify() {
    const verdict = document.getElementById("verify-status");
    try {
      const r = await json("/api/governance/audit/verify");
      verdict.textContent = r.ok ? `The chain of ${r.entries} entries is intact.` : `BROKEN at entry ${r.first_broken_seq}: ${r.reason}`;
      verdict.className = r.ok ? "" : "error";
    } catch (error) { verdict.textContent = error.message; verdict.className = "error"; }
  }

  async function refresh() {
    const parts = [alerts(), transitions(), incidents(), audit()];
    const results = await Promise.allSettled(parts);
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length) say(failed.map((r) => r.reason.message).join("; "), true);
  }

  document.getElementById("older").addEventListener("click", () => audit(true));
  verify();
  refresh();
})();
