// The enrolment job page: follows a running job through its JSON, updating the progress and the counts in place,
// and reloads the page once the job has ended to show each photograph's outcome. Without it, the page refreshes.
"use strict";
(function () {
  const box = document.getElementById("job");
  if (!box || box.dataset.state !== "running") return;
  const progress = document.getElementById("job-progress");
  const done = document.getElementById("job-done");
  const workforce = document.getElementById("job-workforce");
  const INTERVAL_MS = 1500;

  function show(job) {
    progress.max = job.total || 1;
    progress.value = job.done;
    progress.textContent = job.done + " of " + job.total;
    done.textContent = job.done + " of " + job.total + " photograph(s) done";
    if (job.workforce) {
      workforce.hidden = false;
      document.getElementById("job-workforce-text").textContent = job.workforce.described;
    }
    for (const [status, count] of Object.entries(job.counts)) {
      const cell = document.querySelector('[data-count="' + status + '"]');
      if (cell) cell.textContent = String(count);
    }
  }

  async function poll() {
    try {
      const response = await fetch(box.dataset.source, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const job = await response.json();
        show(job);
        if (job.state !== "running") {
          window.location.reload();
          return;
        }
      }
    } catch (error) {
      // the server may be busy or restarting: try again later
    }
    window.setTimeout(poll, INTERVAL_MS);
  }

  window.setTimeout(poll, INTERVAL_MS);
})();
