"use strict";
// Users: list, add, disable/enable (administrators; the routes refuse everyone else).
(() => {
  const { el, json } = radpilot;
  const rows = document.querySelector("#users tbody");
  const status = document.getElementById("admin-status");
  const say = (text, error = false) => { status.textContent = text; status.className = error ? "error" : ""; };

  async function load() {
    const users = await json("/api/admin/users");
    rows.replaceChildren(...users.map((u) => el("tr", { dataset: { username: u.username } },
      el("td", {}, u.username), el("td", {}, u.display_name || ""), el("td", {}, u.role),
      el("td", {}, u.disabled ? "disabled" : "active"),
      el("td", {}, radpilot.when(u.last_sign_in_at)),
      el("td", {}, el("button", {
        type: "button",
        onclick: () => change(u.username, u.disabled ? "enable" : "disable"),
      }, u.disabled ? "Enable" : "Disable")))));
  }

  async function change(username, action) {
    try {
      await radpilot.api(`/api/admin/users/${encodeURIComponent(username)}/${action}`, { method: "POST" });
      say(`${username}: ${action}d.`);
      await load();
    } catch (error) { say(error.message, true); }
  }

  document.getElementById("add-user").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = Object.fromEntries(form.entries());
    if (!body.display_name) delete body.display_name;
    try {
      await radpilot.api("/api/admin/users", { method: "POST", body });
      say(`Added ${body.username}.`);
      event.target.reset();
      await load();
    } catch (error) { say(error.message, true); }
  });

  load().catch((error) => say(error.message, true));
})();
