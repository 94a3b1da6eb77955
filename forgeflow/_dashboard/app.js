// The forgeflow dashboard: plain DOM code over the JSON API, live through server-sent events.
"use strict";

(() => {
  const STATUSES = ["created", "running", "waiting", "completed", "compensating",
    "compensated", "failed"];
  const TERMINAL = new Set(["completed", "compensated", "failed"]);
  const DECISIONS = ["approve", "reject", "escalate"];
  const state = {
    token: sessionStorage.getItem("forgeflow.token") || "",
    status: "",
    workflow: "",
    runs: [],
    cursor: null,
    stream: null,
    poll: null,
    refreshTimer: null,
    runId: null,
    shown: null, // the run record on screen
    armed: null, // the run whose cancel button waits for its confirming click
    renders: 0, // bumped at each render, so a slower fetch cannot undo a newer event
    listRequests: 0,
  };
  const $ = (id) => document.getElementById(id);

  // -- small helpers ---------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    fill(el, children);
    return el;
  }

  // Appends children, flattening nested arrays and skipping null, undefined and false.
  function fill(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  function show(...children) {
    const view = $("view");
    view.replaceChildren();
    fill(view, children);
  }

  function endpoint(path, params) {
    // Relative to the page, so the app works wherever it is mounted.
    const url = new URL(path, window.location.href);
    url.hash = "";
    url.search = "";
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== "" && value !== null && value !== undefined) url.searchParams.set(key, value);
    }
    return url;
  }

  class ApiError extends Error {
    constructor(status, body) {
      const detail = body && body.detail;
      let message = body && body.error ? body.error : `HTTP ${status}`;
      if (typeof detail === "string") message = detail;
      else if (detail && detail.message) message = detail.message;
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, options = {}) {
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const init = { method, headers };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(endpoint(path, options.params), init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (response.status === 401) showLogin();
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  function closeStream() {
    if (state.stream) state.stream.close();
    state.stream = null;
    if (state.poll) clearInterval(state.poll);
    state.poll = null;
  }

  function openStream(path, handlers, onBroken) {
    const url = endpoint(path);
    if (state.token) url.searchParams.set("access_token", state.token);
    const source = new EventSource(url);
    source.onopen = () => setLive("on", "live");
    source.onerror = () => {
      // EventSource reconnects by itself unless the server refused the stream.
      setLive("off", source.readyState === EventSource.CLOSED ? "offline" : "reconnecting…");
      if (source.readyState === EventSource.CLOSED && onBroken) onBroken();
    };
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => fn(JSON.parse(event.data)));
    }
    state.stream = source;
  }

  function setLive(kind, text) {
    const el = $("live");
    el.className = `live ${kind}`;
    el.textContent = text;
  }

  function notice(message, isError) {
    const el = $("notice");
    el.textContent = message;
    el.className = isError ? "notice error" : "notice";
    el.hidden = false;
  }

  function clearNotice() {
    $("notice").hidden = true;
  }

  function showLogin() {
    $("login").hidden = false;
    notice("This dashboard needs the admin token.", true);
  }

  function badge(status, testid) {
    return h("span", { class: `badge ${status}`, "data-testid": testid }, status);
  }

  // ISO 8601 in UTC, as the CLI and the logs print them: one reading for everyone.
  function fmtTime(iso) {
    if (!iso) return "";
    return new Date(iso).toISOString().slice(11, 23);
  }

  function fmtDateTime(iso) {
    if (!iso) return "";
    return new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} m ${Math.round(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} m`;
    return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
  }

  function between(a, b) {
    if (!a) return null;
    return (b ? Date.parse(b) : Date.now()) - Date.parse(a);
  }

  function describeWait(run) {
    const wait = run.wait;
    if (wait && wait.kind === "no_worker" && !TERMINAL.has(run.status)) {
      return wait.detail || "no live worker can take this run";
    }
    // A run not started yet because its queue is at a limit, or because it starts later.
    if (wait && (wait.kind === "queue_limit" || wait.kind === "delayed")
        && run.status === "created") {
      return wait.detail || wait.kind;
    }
    if (!wait || run.status !== "waiting") return "";
    switch (wait.kind) {
      case "hook": return `decision on ${wait.step}`;
      case "sleep": return `timer until ${fmtDateTime(wait.wake_at || run.wake_at)}`;
      case "retry": return `retry of ${wait.step} at ${fmtDateTime(wait.wake_at || run.wake_at)}`;
      case "event": return `event ${wait.event_type}`;
      case "child": return `child run ${wait.child_run_id || ""}`;
      case "poll": return `polling ${wait.step}`;
      default: return wait.kind || "";
    }
  }

  // When a waiting run wakes by itself: its timer, or the timeout of what it waits for.
  function wakeLabel(wait, run) {
    const at = wait.wake_at || run.wake_at;
    if (!at) return "";
    const timer = wait.kind === "sleep" || wait.kind === "retry";
    return `${timer ? "until" : "times out"} ${fmtDateTime(at)}`;
  }

  function runLink(run) {
    return h("a", { href: `#/runs/${encodeURIComponent(run.run_id)}`, class: "mono",
      "data-testid": "run-link", title: run.run_id }, run.run_id.slice(0, 8));
  }

  // -- hooks (both views) ----------------------------------------------------------------

  function hookButtons(hook, after) {
    const open = (hook.status === "active" || hook.status === "pending") && !hook.is_expired;
    if (!open) return [];
    const buttons = DECISIONS.map((decision) => h("button", {
      class: `action ${decision}`, type: "button", "data-testid": `hook-${decision}`,
      "data-hook-id": hook.hook_id,
    }, decision.charAt(0).toUpperCase() + decision.slice(1)));
    buttons.forEach((button, i) => button.addEventListener("click", async () => {
      buttons.forEach((b) => { b.disabled = true; });
      try {
        await api("POST", `hooks/${encodeURIComponent(hook.hook_id)}`,
          { body: { decision: DECISIONS[i], data: { via: "dashboard" } } });
        notice(`${DECISIONS[i]}: sent for ${hook.name}`);
        if (after) after();
      } catch (error) {
        notice(error.message, true);
        buttons.forEach((b) => { b.disabled = false; });
      }
    }));
    return buttons;
  }

  function hooksTable(hooks, withRun, after) {
    if (!hooks.length) return h("p", { class: "empty" }, "Nothing is waiting for a decision.");
    return h("table", { "data-testid": withRun ? "active-hooks" : "run-hooks" },
      h("thead", {}, h("tr", {},
        withRun ? h("th", {}, "Run") : null, h("th", {}, "Hook"), h("th", {}, "Status"),
        h("th", {}, "Created"), h("th", {}, "Expires"), h("th", {}, "Decision"))),
      h("tbody", {}, hooks.map((hook) => h("tr", { "data-hook-id": hook.hook_id },
        withRun ? h("td", {}, runLink(hook), " ", hook.workflow) : null,
        h("td", {}, hook.name,
          Object.keys(hook.metadata || {}).length
            ? h("div", { class: "note mono" }, JSON.stringify(hook.metadata)) : null),
        h("td", {}, badge(hook.is_expired && hook.status === "active" ? "expired" : hook.status)),
        h("td", {}, fmtDateTime(hook.created_at)),
        h("td", {}, fmtDateTime(hook.expires_at)),
        h("td", {}, hook.decision ? badge(hook.decision) : hookButtons(hook, after))))));
  }

  // -- runs list -------------------------------------------------------------------------

  function filtersBar() {
    const buttons = ["", ...STATUSES].map((status) => h("button", {
      type: "button", class: state.status === status ? "active" : "",
      "data-status": status || "all",
      onclick: () => { state.status = status; showList(); },
    }, status || "all"));
    const search = h("input", { type: "search", placeholder: "workflow", value: state.workflow,
      "aria-label": "workflow" });
    search.addEventListener("change", () => { state.workflow = search.value.trim(); refreshList(); });
    return h("div", { class: "filters" }, buttons, search);
  }

  function runRow(run) {
    return h("tr", { "data-run-id": run.run_id },
      h("td", {}, runLink(run)),
      h("td", {}, `${run.workflow} v${run.version}`),
      h("td", {}, badge(run.status, "run-status")),
      h("td", {}, describeWait(run)),
      h("td", {}, fmtDateTime(run.created_at)),
      h("td", {}, fmtDuration(between(run.started_at, run.completed_at))));
  }

  function renderRuns() {
    const box = $("runs");
    if (!box) return;
    if (!state.runs.length) {
      box.replaceChildren(h("p", { class: "empty" }, "No runs."));
      return;
    }
    const more = state.cursor ? h("button", { type: "button", class: "more",
      onclick: loadMore }, "Load more") : null;
    box.replaceChildren();
    fill(box, [h("table", { "data-testid": "runs" },
      h("thead", {}, h("tr", {}, ["Run", "Workflow", "Status", "Waiting on", "Created",
        "Duration"].map((t) => h("th", {}, t)))),
      h("tbody", {}, state.runs.map(runRow))), more]);
  }

  function listParams(cursor) {
    return { status: state.status, workflow: state.workflow, limit: 50, cursor };
  }

  async function refreshList() {
    if (!$("runs")) return;
    const request = ++state.listRequests;
    try {
      const [runs, hooks] = await Promise.all([
        api("GET", "runs", { params: listParams(null) }),
        api("GET", "hooks", { params: { status: "active" } }),
      ]);
      if (request !== state.listRequests) return; // a later refresh is on its way
      state.runs = runs.runs;
      state.cursor = runs.next_cursor;
      renderRuns();
      const box = $("hooks");
      if (box) box.replaceChildren(hooksTable(hooks.hooks, true, scheduleRefresh));
    } catch (error) {
      notice(error.message, true);
    }
  }

  async function loadMore() {
    try {
      const page = await api("GET", "runs", { params: listParams(state.cursor) });
      state.runs = state.runs.concat(page.runs);
      state.cursor = page.next_cursor;
      renderRuns();
    } catch (error) {
      notice(error.message, true);
    }
  }

  function scheduleRefresh() {
    if (state.refreshTimer) return;
    state.refreshTimer = setTimeout(() => {
      state.refreshTimer = null;
      if (state.runId) refreshRun(state.runId);
      else refreshList();
    }, 100);
  }

  function showList() {
    closeStream();
    state.runId = null;
    // Decisions first: an approver opening the dashboard sees them without scrolling.
    show(
      h("h2", {}, "Waiting for a decision"),
      h("div", { id: "hooks" }),
      h("h1", {}, "Runs"),
      filtersBar(),
      h("div", { id: "runs" }, h("p", { class: "empty" }, "Loading…")),
    );
    refreshList();
    openStream("runs/changes", { change: scheduleRefresh });
    // A slow safety net for changes a lost stream could miss.
    state.poll = setInterval(refreshList, 30000);
  }

  // -- one run ---------------------------------------------------------------------------

  function cancelButton(run) {
    if (TERMINAL.has(run.status)) return null;
    if (run.cancel_requested) return h("span", { class: "note" }, "cancel requested");
    // The first click arms the button; the armed state outlives re-renders of the page.
    const armed = state.armed === run.run_id;
    const button = h("button", { class: "action cancel", type: "button",
      "data-testid": "cancel" }, armed ? "Confirm cancel" : "Cancel run");
    button.addEventListener("click", async () => {
      if (state.armed !== run.run_id) {
        state.armed = run.run_id;
        button.textContent = "Confirm cancel";
        return;
      }
      state.armed = null;
      button.disabled = true;
      try {
        await api("POST", `runs/${encodeURIComponent(run.run_id)}/cancel`);
        notice("cancel requested; compensations run in reverse");
        refreshRun(run.run_id);
      } catch (error) {
        notice(error.message, true);
        button.disabled = false;
      }
    });
    return button;
  }

  // Restart a finished run, or fork it from one of its steps: the new run opens.
  function repairButton(run, label, path, body, testid) {
    if (!TERMINAL.has(run.status)) return null;
    const button = h("button", { class: "action", type: "button", "data-testid": testid }, label);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const answer = await api("POST", `runs/${encodeURIComponent(run.run_id)}/${path}`,
          { body });
        notice(`new run ${answer.run_id}`);
        location.hash = `#/runs/${encodeURIComponent(answer.run_id)}`;
      } catch (error) {
        notice(error.message, true);
        button.disabled = false;
      }
    });
    return button;
  }

  function timeline(run) {
    const start = Date.parse(run.started_at || run.created_at);
    const times = [Date.parse(run.completed_at || "") || Date.now()];
    for (const step of run.steps) {
      for (const t of [step.completed_at, step.compensated_at]) if (t) times.push(Date.parse(t));
    }
    const span = Math.max(Math.max(...times) - start, 1);
    const bar = (from, to, status) => {
      const a = Date.parse(from);
      const b = to ? Date.parse(to) : Date.now();
      const left = Math.max(0, ((a - start) / span) * 100);
      const width = Math.max(((b - a) / span) * 100, 0.4);
      // Set through the CSSOM: the page's CSP forbids inline style attributes.
      const fill = h("span", { class: status });
      fill.style.left = `${left.toFixed(2)}%`;
      fill.style.width = `${Math.min(width, 100 - left).toFixed(2)}%`;
      return h("div", { class: "track" }, fill);
    };
    const rows = [];
    // A decision step is checkpointed when the decision arrives; its wait began when
    // the hook was activated.
    const waitedSince = (step) => {
      if (step.kind !== "wait") return null;
      const hook = run.hooks.find((x) => x.name === step.name.replace(/#\d+$/, ""));
      return hook ? hook.activated_at : null;
    };
    for (const step of run.steps) {
      const from = waitedSince(step) || step.started_at || step.completed_at;
      const status = step.status === "compensated" ? "completed" : step.status;
      // A running step has no end yet; a waiting sleep ends at its wake time.
      const ended = step.status === "running" ? "running…"
        : step.status === "waiting" ? `until ${fmtDateTime(step.wake_at)}`
          : fmtTime(step.completed_at);
      const fork = repairButton(run, "Fork from here", "fork", { from_step: step.name },
        "fork");
      rows.push(h("tr", { "data-step": step.name, "data-status": step.status },
        h("td", { class: "mono" }, step.name, fork ? " " : null, fork), h("td", {}, step.kind),
        h("td", {}, badge(status)),
        h("td", {}, fmtTime(from)), h("td", { class: step.completed_at ? "" : "note" }, ended),
        h("td", {}, step.kind === "hook" ? "" : fmtDuration(between(from, step.completed_at))),
        h("td", { "data-testid": "attempts" }, step.kind === "step" ? step.attempts : ""),
        h("td", { class: "bar" }, from ? bar(from, step.completed_at, status) : null)));
      if (step.error && step.status !== "completed") {
        rows.push(h("tr", {}, h("td", {}), h("td", { colspan: 7, class: "error" },
          step.error.message || JSON.stringify(step.error))));
      }
      if (step.compensated_at || step.compensation_error) {
        const failed = Boolean(step.compensation_error);
        rows.push(h("tr", { "data-compensation": step.name },
          h("td", { class: "mono" }, `↺ ${step.name}`), h("td", {}, "compensation"),
          h("td", {}, badge(failed ? "failed" : "compensated")),
          h("td", {}, fmtTime(step.compensated_at)), h("td", {}, ""), h("td", {}, ""),
          h("td", {}, ""),
          h("td", { class: failed ? "error" : "note" }, failed
            ? (step.compensation_error.message || JSON.stringify(step.compensation_error))
            : "undone")));
      }
    }
    if (run.status === "waiting") {
      const wait = run.wait || {};
      const hook = run.hooks.find((x) => x.hook_id === wait.hook_id);
      const last = run.steps.map((s) => s.completed_at).filter(Boolean).sort().pop();
      const since = (hook && hook.activated_at) || last || run.started_at;
      rows.push(h("tr", { "data-testid": "waiting-row" },
        h("td", { class: "mono" }, wait.step || "waiting"), h("td", {}, wait.kind || ""),
        h("td", {}, badge("waiting")), h("td", {}, fmtTime(since)),
        h("td", { class: "note" }, wakeLabel(wait, run)),
        h("td", {}, fmtDuration(between(since, null))), h("td", {}),
        h("td", { class: "bar" }, since ? bar(since, null, "running") : null)));
      rows.push(h("tr", {}, h("td", {}), h("td", { colspan: 7, class: "note" },
        `waiting for ${describeWait(run)}`)));
    }
    if (!rows.length) return h("p", { class: "empty" }, "No steps yet.");
    return h("table", { class: "timeline", "data-testid": "timeline" },
      h("thead", {}, h("tr", {}, ["Step", "Kind", "Status", "Started", "Ended", "Duration",
        "Attempts", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows));
  }

  function json(value) {
    return h("pre", {}, JSON.stringify(value, null, 2));
  }

  function renderRun(run) {
    if (state.runId !== run.run_id) return;
    // A terminal status is final: an older answer arriving late must not replace it.
    if (state.shown && state.shown.run_id === run.run_id && TERMINAL.has(state.shown.status) &&
        !TERMINAL.has(run.status)) return;
    state.shown = run;
    state.renders += 1;
    const meta = [
      ["Run", h("span", { class: "mono", "data-testid": "run-id" }, run.run_id)],
      ["Status", badge(run.status, "run-status")],
      ["Created", fmtDateTime(run.created_at)],
      ["Started", fmtDateTime(run.started_at)],
      ["Ended", fmtDateTime(run.completed_at)],
      ["Duration", fmtDuration(between(run.started_at, run.completed_at))],
      ["Current step", run.current_step || ""],
      ["Waiting on", describeWait(run)],
      ["Queue", run.queue],
      ["Executions", run.executions],
    ];
    if (run.end_reason) meta.push(["Ended because", run.end_reason]);
    if (run.cancel_requested && !TERMINAL.has(run.status)) {
      meta.push(["Cancel", "requested"]);
    }
    if (run.parent_run_id) {
      meta.push(["Parent", runLink({ run_id: run.parent_run_id })]);
    }
    if (run.restarted_from) {
      meta.push(["Restarted from", runLink({ run_id: run.restarted_from })]);
    }
    if (run.forked_from) {
      meta.push(["Forked from", h("span", { "data-testid": "lineage" },
        runLink({ run_id: run.forked_from }), ` at step ${run.forked_from_step}`)]);
    }
    show(
      h("h1", {}, `${run.workflow} v${run.version} `, badge(run.status)),
      h("div", { class: "card" },
        h("dl", { class: "meta" }, meta.filter(([, v]) => v !== "" && v !== null)
          .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        h("p", {}, cancelButton(run),
          repairButton(run, "Restart run", "restart", {}, "restart"))),
      run.hooks.length ? [h("h2", {}, "Hooks"),
        hooksTable(run.hooks, false, () => refreshRun(run.run_id))] : null,
      h("h2", {}, "Timeline"),
      timeline(run),
      h("h2", {}, "Input"), json(run.input),
      run.output !== null ? [h("h2", {}, "Output"), json(run.output)] : null,
      run.error ? [h("h2", {}, "Error"), json(run.error)] : null,
    );
  }

  async function refreshRun(id) {
    const before = state.renders;
    try {
      const run = await api("GET", `runs/${encodeURIComponent(id)}`);
      // An event rendered meanwhile may be newer than this answer: keep the event's.
      if (state.renders === before) renderRun(run);
    } catch (error) {
      notice(error.message, true);
    }
  }

  async function showRun(id) {
    closeStream();
    state.runId = id;
    state.shown = null;
    state.armed = null;
    show(h("p", { class: "empty" }, "Loading…"));
    try {
      renderRun(await api("GET", `runs/${encodeURIComponent(id)}`));
    } catch (error) {
      const text = error.status === 404 ? `No run ${id}.` : error.message;
      show(h("p", { class: "error" }, text));
      return;
    }
    openStream(`runs/${encodeURIComponent(id)}/events`, {
      run: renderRun,
      end: () => {
        closeStream();
        setLive("on", "finished");
      },
    }, () => {
      // No stream (a proxy without SSE support): fall back to polling.
      state.poll = setInterval(() => refreshRun(id), 3000);
    });
  }

  // -- schedules -------------------------------------------------------------------------

  function scheduleButtons(schedule) {
    const name = encodeURIComponent(schedule.name);
    const actions = [schedule.paused ? "resume" : "pause", "trigger"];
    return actions.map((action) => {
      const button = h("button", { class: `action ${action}`, type: "button",
        "data-testid": `schedule-${action}`, "data-schedule": schedule.name },
      action.charAt(0).toUpperCase() + action.slice(1));
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          const answer = await api("POST", `schedules/${name}/${action}`);
          notice(action === "trigger" ? `${schedule.name}: started run ${answer.run_id}`
            : `${schedule.name}: ${action === "pause" ? "paused" : "resumed"}`);
          refreshSchedules();
        } catch (error) {
          notice(error.message, true);
          button.disabled = false;
        }
      });
      return button;
    });
  }

  function scheduleRow(s) {
    const last = s.last_run_id
      ? [runLink({ run_id: s.last_run_id }), " ", badge(s.last_run_status || "created")]
      : ["—"];
    return h("tr", { "data-testid": "schedule-row", "data-schedule": s.name },
      h("td", { class: "mono" }, s.name),
      h("td", {}, s.workflow),
      h("td", { class: "mono" }, `${s.cron} (${s.timezone})`),
      h("td", {}, s.paused ? badge("paused", "schedule-state") : badge("active", "schedule-state")),
      h("td", { "data-testid": "schedule-next" }, s.paused ? "—" : fmtDateTime(s.next_fire_at)),
      h("td", {}, ...last),
      h("td", {}, ...scheduleButtons(s)));
  }

  async function refreshSchedules() {
    let answer;
    try {
      answer = await api("GET", "schedules");
    } catch (error) {
      notice(error.message, true);
      return;
    }
    const rows = answer.schedules;
    fill($("schedules"), rows.length ? [h("table", { "data-testid": "schedules" },
      h("thead", {}, h("tr", {}, ...["Name", "Workflow", "Cron", "State", "Next fire",
        "Last run", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, ...rows.map(scheduleRow)))]
      : [h("p", { class: "empty" }, "No schedules.")]);
  }

  function showSchedules() {
    closeStream();
    state.runId = null;
    show(h("h1", {}, "Schedules"), h("div", { id: "schedules" },
      h("p", { class: "empty" }, "Loading…")));
    refreshSchedules();
    // Last runs change as schedules fire: follow the runs feed, as the runs list does.
    openStream("runs/changes", { change: () => {
      clearTimeout(state.refreshTimer);
      state.refreshTimer = setTimeout(refreshSchedules, 200);
    } });
    state.poll = setInterval(refreshSchedules, 30000);
  }

  // -- queues ----------------------------------------------------------------------------

  function queueLimits(q) {
    const limits = [["concurrency", q.concurrency], ["key_concurrency", q.key_concurrency],
      ["rate", q.rate]].filter(([, value]) => value !== null && value !== undefined);
    return limits.length ? limits.map(([name, value]) => `${name}=${value}`).join(", ") : "—";
  }

  function queueRow(q) {
    const keys = (q.top_keys || []).map((k) => `${k.key} (${k.executing}+${k.claimable})`);
    return h("tr", { "data-testid": "queue-row", "data-queue": q.name },
      h("td", { class: "mono" }, q.name),
      h("td", { "data-testid": "queue-executing" },
        q.concurrency ? `${q.executing}/${q.concurrency}` : String(q.executing)),
      h("td", {}, String(q.claimable)),
      h("td", {}, String(q.delayed)),
      h("td", { "data-testid": "queue-limited" }, String(q.limited)),
      h("td", { class: "mono" }, queueLimits(q)),
      h("td", { class: "mono" }, keys.length ? keys.join(", ") : "—"));
  }

  async function refreshQueues() {
    let answer;
    try {
      answer = await api("GET", "queues");
    } catch (error) {
      notice(error.message, true);
      return;
    }
    const rows = answer.queues;
    fill($("queues"), rows.length ? [h("table", { "data-testid": "queues" },
      h("thead", {}, h("tr", {}, ...["Queue", "Executing", "Claimable", "Delayed",
        "Held by a limit", "Limits", "Busiest keys (executing+claimable)"]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, ...rows.map(queueRow)))]
      : [h("p", { class: "empty" }, "No queues.")]);
  }

  function showQueues() {
    closeStream();
    state.runId = null;
    show(h("h1", {}, "Queues"), h("div", { id: "queues" },
      h("p", { class: "empty" }, "Loading…")));
    refreshQueues();
    // Counts move as runs start and end: follow the runs feed, as the runs list does.
    openStream("runs/changes", { change: () => {
      clearTimeout(state.refreshTimer);
      state.refreshTimer = setTimeout(refreshQueues, 200);
    } });
    state.poll = setInterval(refreshQueues, 10000);
  }

  // -- routing ---------------------------------------------------------------------------

  function route() {
    clearNotice();
    const match = window.location.hash.match(/^#\/runs\/(.+)$/);
    if (match) showRun(decodeURIComponent(match[1]));
    else if (window.location.hash === "#/schedules") showSchedules();
    else if (window.location.hash === "#/queues") showQueues();
    else showList();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("token").value.trim();
      sessionStorage.setItem("forgeflow.token", state.token);
      $("login").hidden = true;
      route();
    });
    window.addEventListener("hashchange", route);
    route();
    loadFooter();
  });

  // The retention setting: how long finished runs stay before workers delete them.
  async function loadFooter() {
    try {
      const answer = await api("GET", "retention");
      $("footer").textContent = answer.retention
        ? `Finished runs are deleted ${answer.retention} after they end (retention).`
        : "Finished runs are kept forever (no retention set).";
    } catch (_) {
      $("footer").textContent = "";
    }
  }
})();
