// Live progress of the queued and running refreshes on a dataset's operations page (portal/staff/dataset.html).
// Each unfinished run's <tbody> names its progress URL (staff_views.show_refresh_progress); every 1.5 s the
// fields are updated from it, and when a run finishes (or its URL answers 4xx or a redirect) the page reloads to show what is
// true now: the run's version and the history.
// Without this script the page reloads itself every 5 seconds (a <noscript> refresh) while a run is active.
(function () {
  "use strict";
  var runs = Array.prototype.slice.call(document.querySelectorAll("tbody.run[data-progress-url]"));
  if (!runs.length) return;

  function when(iso) {
    return iso ? iso.replace("T", " ").slice(0, 19) : "—";
  }

  function show(run, progress) {
    var fields = {
      status_label: progress.status_label,
      started_at: when(progress.started_at),
      finished_at: when(progress.finished_at),
      rows_processed: String(progress.rows_processed),
      duration_seconds: progress.duration_seconds === null ? "—" : progress.duration_seconds.toFixed(1) + " s",
      version: progress.version === null ? "—" : "v" + progress.version,
    };
    Object.keys(fields).forEach(function (name) {
      var cell = run.querySelector('[data-field="' + name + '"]');
      if (cell) cell.textContent = fields[name];
    });
    var status = run.querySelector('[data-field="status_label"]');
    if (status) status.className = "status run-" + progress.status;
  }

  function poll() {
    var pending = runs.map(function (run) {
      return fetch(run.dataset.progressUrl, { headers: { Accept: "application/json" }, credentials: "same-origin", redirect: "manual" })
        .then(function (response) {
          if (response.ok) return response.json();
          // Signed out (a redirect to the sign-in), gone or no longer allowed: the reload shows what is true now.
          var gone = response.type === "opaqueredirect" || (response.status >= 400 && response.status < 500);
          return gone ? { gone: true } : null;
        })
        .then(function (progress) {
          if (!progress) return false;
          if (progress.gone) return true;
          show(run, progress);
          return progress.finished;
        })
        .catch(function () { return false; });
    });
    Promise.all(pending).then(function (finished) {
      if (finished.some(Boolean)) {
        window.location.reload();
      } else {
        window.setTimeout(poll, 1500);
      }
    });
  }

  window.setTimeout(poll, 1500);
})();
