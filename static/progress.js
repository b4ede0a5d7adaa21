/* Progress of a background task on its page (templates/patient/export.html): polls
   GET /api/tasks/<id> with the session cookie, moves the <progress> bar, and shows the download
   link when the task is done. Without JavaScript the page's Refresh link does the same job.
   ES5 and XMLHttpRequest only: patients use old phones. */
(function () {
  "use strict";
  var box = document.getElementById("export");
  var bar = document.getElementById("export-bar");
  var status = document.getElementById("export-status");
  if (!box || !bar || !status || !window.XMLHttpRequest) {
    return;
  }
  var taskUrl = box.getAttribute("data-task-url");
  var downloadUrl = box.getAttribute("data-download-url");
  var delay = 1000;
  var started = new Date().getTime();
  var GIVE_UP_AFTER = 30 * 60 * 1000; // then the Refresh link and the email remain

  function text(node, value) {
    node.textContent = value; // never innerHTML: the status is text
  }

  function showDone(task) {
    bar.max = 1;
    bar.value = 1;
    var rows = task.result && typeof task.result.rows === "number" ? task.result.rows : null;
    text(status, task.status || "Ready");
    var p = document.createElement("p");
    var link = document.createElement("a");
    link.className = "button";
    link.href = downloadUrl;
    text(link, "Download (CSV)");
    p.appendChild(link);
    box.appendChild(p);
    var refresh = document.getElementById("export-refresh");
    if (refresh) {
      text(refresh, "The file was also emailed to you" +
        (rows === null ? "." : " (" + rows + (rows === 1 ? " visit)." : " visits).")));
    }
  }

  function show(task) {
    if (task.state === "SUCCESS") {
      showDone(task);
      return false;
    }
    if (task.state === "FAILURE") {
      window.location.reload(); // the page explains and offers to start again
      return false;
    }
    if (task.state === "PROGRESS" && task.total > 0) {
      bar.max = task.total;
      bar.value = Math.min(task.current, task.total);
      text(status, task.status + ": " + task.current + " of " + task.total + " visits");
    }
    return true;
  }

  function poll() {
    var request = new XMLHttpRequest();
    request.open("GET", taskUrl, true);
    request.setRequestHeader("Accept", "application/json");
    request.onreadystatechange = function () {
      if (request.readyState !== 4) {
        return;
      }
      if (request.status !== 200) {
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
