/* Live progress of a background task on the admin's run page (templates/admin/jobs_run.html):
   polls GET /api/tasks/<id> with the session cookie and moves the <progress> bar; when the task
   ends, reloads the page once so it shows the run's final state. Without JavaScript the page's
   Refresh link does the same job. ES5 and XMLHttpRequest only, like static/progress.js. */
(function () {
  "use strict";
  var box = document.getElementById("task-progress");
  var bar = document.getElementById("task-progress-bar");
  var status = document.getElementById("task-progress-status");
  if (!box || !bar || !status || !window.XMLHttpRequest) {
    return;
  }
  var state = box.getAttribute("data-state");
  if (state !== "PENDING" && state !== "PROGRESS") {
    return; // already over: nothing to follow
  }
  var taskUrl = box.getAttribute("data-task-url");
  var delay = 1000;
  var started = new Date().getTime();
  var GIVE_UP_AFTER = 30 * 60 * 1000; // then the Refresh link remains

  function show(task) {
    if (task.total > 0) {
      bar.max = task.total;
      bar.value = Math.min(task.current, task.total);
      status.textContent = (task.status || task.state.toLowerCase()) + " (" + task.current +
        " of " + task.total + ")"; // textContent: the status is text, never markup
    } else {
      status.textContent = task.status || task.state.toLowerCase();
    }
    if (task.state === "SUCCESS" || task.state === "FAILURE") {
      window.setTimeout(function () { window.location.reload(); }, 1500);
      return false;
    }
    return true;
  }

  function poll() {
    var request = new XMLHttpRequest();
    request.open("GET", taskUrl, true);
    request.setRequestHeader("Accept", "application/json");
    request.onreadystatechange = function () {
      if (request.readyState !== 4 || request.status !== 200) {
        return; // signed out, or the server is away: leave it to the Refresh link
      }
      var task;
      try {
        task = JSON.parse(request.responseText);
      } catch (e) {
        return;
      }
      if (show(task) && new Date().getTime() - started < GIVE_UP_AFTER) {
        delay = Math.min(delay * 1.5, 10000);
        window.setTimeout(poll, delay);
      }
    };
    request.send();
  }

  window.setTimeout(poll, delay);
})();
