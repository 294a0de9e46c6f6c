// The one classic (non-module) script, run before the page's modules. Opened from disk (file://),
// a browser refuses ES modules and the model's files alike, and the page would wait on "Loading the
// model..." for ever; this says instead, in one line, how to serve the folder it was opened from.
if (location.protocol === "file:") {
  document.addEventListener("DOMContentLoaded", () => {
    let folder = decodeURIComponent(location.pathname.replace(/\/[^/]*$/, "")) || "/";
    if (/^\/[A-Za-z]:/.test(folder)) folder = folder.slice(1);  // file:///C:/site/index.html on Windows
    if (/\s/.test(folder)) folder = `"${folder}"`;
    const failure = document.getElementById("failure");
    failure.textContent = `This page must be served: python -m http.server -d ${folder}, ` +
      "then open http://localhost:8000";
    failure.hidden = false;
    for (const hide of document.querySelectorAll("#model-info, nav, main")) hide.hidden = true;
  });
}
