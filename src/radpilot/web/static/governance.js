"use strict";
// The audit trail, newest first, and whether its hash chain holds.
(() => {
  const { el, json } = radpilot;
  const rows = document.querySelector("#audit tbody");
  const verify = document.getElementById("verify-status");
  let oldest = null;

  async function more() {
    const query = oldest ? `?before=${oldest}` : "";
    const entries = await json(`/api/governance/audit${query}`);
    rows.append(...entries.map((e) => el("tr", {},
      el("td", {}, String(e.seq)), el("td", {}, radpilot.when(e.at)), el("td", {}, e.kind),
      el("td", {}, e.actor), el("td", {}, e.subject),
      el("td", { class: "meta" }, JSON.stringify(e.payload)))));
    if (entries.length) oldest = entries[entries.length - 1].seq;
    document.getElementById("older").disabled = entries.length < 100;
  }

  document.getElementById("older").addEventListener("click", () => more());
  json("/api/governance/audit/verify").then((r) => {
    verify.textContent = r.ok ? `The chain of ${r.entries} entries is intact.`
      : `BROKEN at entry ${r.first_broken_seq}: ${r.reason}`;
    verify.className = r.ok ? "" : "error";
  }).catch((error) => { verify.textContent = error.message; verify.className = "error"; });
  more().catch((error) => { verify.textContent = error.message; });
})();
